"""The store entries a savepoint holds, parsed: which operator, state or timer domain, and key.

A savepoint keeps a split's store entries as they are (``bytes -> bytes``, the layout of
:mod:`eventapp.state.keys`, the same in every backend): that is what makes it portable across
backends. This module reads the parts of an entry's key a savepoint needs: the operator uid (to drop
or rename an operator), the state name or timer domain (to count and inspect), and the state key
(for key groups and re-sharding).
"""

from __future__ import annotations

from dataclasses import dataclass

from eventapp.errors import SavepointError
from eventapp.state.keys import STATE_TAG, TIMER_TAG

__all__ = [
    "EntryParser",
    "ParsedEntry",
    "entry_key",
    "entry_state_keys",
    "parse_entry",
    "parse_prefix",
    "with_uid",
]

#: Timer domains as their one-byte tags.
TIMER_DOMAINS = {b"e": "event_time", b"p": "processing_time"}


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """The parts of a store entry's key."""

    #: ``"state"`` or ``"timer"``.
    kind: str
    uid: str
    #: The state's name, or the timer domain (``"event_time"`` / ``"processing_time"``).
    name: str
    #: The state key as stored (:func:`eventapp.state.keys.encode_key`).
    key: bytes


def parse_entry(entry: bytes, where: str) -> ParsedEntry:
    """Parse the key of a store entry; ``where`` names it in the error.

    :raises SavepointError: the key is not one eventapp writes.
    """
    tag = entry[:1]
    end_uid = entry.find(b"\x00", 1)
    if tag not in (STATE_TAG, TIMER_TAG) or end_uid <= 1:
        raise SavepointError(f"{where}: entry {entry[:40]!r} is not an eventapp state or timer entry")
    uid = entry[1:end_uid].decode("utf-8", "replace")
    if tag == STATE_TAG:
        end_name = entry.find(b"\x00", end_uid + 1)
        if end_name < 0:
            raise SavepointError(f"{where}: state entry {entry[:40]!r} is truncated")
        name = entry[end_uid + 1 : end_name].decode("utf-8", "replace")
        return ParsedEntry("state", uid, name, entry_key(entry, end_name + 1, True, where))
    domain = TIMER_DOMAINS.get(entry[end_uid + 1 : end_uid + 2])
    if domain is None:
        raise SavepointError(f"{where}: timer entry {entry[:40]!r} is not one eventapp writes")
    return ParsedEntry("timer", uid, domain, entry_key(entry, end_uid + 2, False, where))


def entry_key(entry: bytes, start: int, is_state: bool, where: str) -> bytes:
    """The state key (as stored, :func:`eventapp.state.keys.encode_key`) of ``entry``, whose prefix
    (of its state, or of its timer domain: see :func:`parse_prefix`) is ``start`` bytes long.

    :raises SavepointError: the entry is truncated.
    """
    if is_state:
        size = int.from_bytes(entry[start : start + 4], "big")
        key = entry[start + 4 : start + 4 + size]
        if len(entry) < start + 4 or len(key) != size:
            raise SavepointError(f"{where}: state entry {entry[:40]!r} is truncated")
        return key
    if len(entry) < start + 8:
        raise SavepointError(f"{where}: timer entry {entry[:40]!r} is not one eventapp writes")
    return entry[start + 8 :]


def parse_prefix(entry: bytes, where: str) -> tuple[bytes, ParsedEntry]:
    """:func:`parse_entry`, and the prefix ``entry`` shares with every entry of its state (or timer
    domain): after it, a state entry holds ``len(key)`` (4 bytes) and the key, a timer entry its
    timestamp (8 bytes) and the key. For loops over runs of entries in key order."""
    parsed = parse_entry(entry, where)
    end_uid = entry.find(b"\x00", 1)
    if parsed.kind == "state":
        return entry[: entry.find(b"\x00", end_uid + 1) + 1], parsed
    return entry[: end_uid + 2], parsed


def entry_state_keys(run: list[bytes], start: int, is_state: bool, where: str) -> list[bytes]:
    """The state keys of entries whose common prefix (:func:`parse_prefix`) is ``start`` bytes
    long, in one pass of list comprehensions (for loops over many entries): after the prefix, a
    state entry holds ``len(key)`` (4 bytes) and the key, a timer entry its timestamp (8 bytes) and
    the key.

    :raises SavepointError: an entry is truncated; ``where`` names its split.
    """
    if not is_state:
        if min(map(len, run)) < start + 8:
            short = next(entry for entry in run if len(entry) < start + 8)
            raise SavepointError(f"{where}: timer entry {short[:40]!r} is not one eventapp writes")
        return [entry[start + 8 :] for entry in run]
    from_bytes = int.from_bytes
    sizes = [from_bytes(entry[start : start + 4], "big") for entry in run]
    keys = [entry[start + 4 : start + 4 + size] for entry, size in zip(run, sizes, strict=True)]
    if min(map(len, run)) < start + 4 or sum(map(len, keys)) != sum(sizes):
        truncated = next(
            entry
            for entry, key, size in zip(run, keys, sizes, strict=True)
            if len(entry) < start + 4 or len(key) != size
        )
        raise SavepointError(f"{where}: state entry {truncated[:40]!r} is truncated")
    return keys


def with_uid(entry: bytes, uid: str) -> bytes:
    """``entry`` moved to operator ``uid`` (a renamed operator)."""
    end_uid = entry.find(b"\x00", 1)
    return entry[:1] + uid.encode() + entry[end_uid:]


class EntryParser:
    """:func:`parse_entry` for a stream of entries in key order: consecutive entries share their
    operator/state prefix, so the prefix is parsed once and later entries only check it
    (``bytes.startswith``) and slice out their key."""

    __slots__ = ("_kind", "_name", "_prefix", "_uid", "_where")

    def __init__(self, where: str) -> None:
        self._where = where
        self._prefix = b"\xff"  # matches no entry (tags are b"s" and b"t")
        self._kind = self._uid = self._name = ""

    def parse(self, entry: bytes) -> ParsedEntry:
        prefix = self._prefix
        if entry.startswith(prefix):
            key = entry_key(entry, len(prefix), self._kind == "state", self._where)
            return ParsedEntry(self._kind, self._uid, self._name, key)
        self._prefix, parsed = parse_prefix(entry, self._where)
        self._kind, self._uid, self._name = parsed.kind, parsed.uid, parsed.name
        return parsed
