"""Reading a savepoint: verified on open, then read split by split or as typed state.

:class:`Savepoint` is the read side of the state processor API: ``Savepoint.open(path)`` checks
``_metadata`` and every state file's size and SHA-256 before anything is read, then
:meth:`Savepoint.read_state` yields ``(key, value)`` of one operator's state through the state's
descriptor (its serializer, TTL), :meth:`Savepoint.timers` the pending timers, and
:meth:`Savepoint.to_dataframe` the same as a pandas DataFrame when pandas is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack

from eventapp.errors import SavepointError
from eventapp.functions import TimeDomain
from eventapp.savepoint.entries import EntryParser
from eventapp.savepoint.format import METADATA, SavepointMetadata, iter_state_file, verify_state_file
from eventapp.savepoint.native import read_snapshot_entries
from eventapp.savepoint.remote import fetch_savepoint, is_remote
from eventapp.state.descriptors import StateDescriptor
from eventapp.state.inspect import StateInspector
from eventapp.state.keys import decode_key, decode_timestamp, operator_state_prefix
from eventapp.state.store import KeyedStateStore

__all__ = ["Savepoint", "describe_value"]


class Savepoint:
    """A savepoint directory, verified (see the module docstring)."""

    def __init__(self, path: Path, metadata: SavepointMetadata, *, source: str | None = None) -> None:
        self.path = path
        self.metadata = metadata
        #: Where it was opened from: ``path``, or the ``s3://`` URI ``path`` is a local copy of.
        self.source = source or str(path)

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> Savepoint:
        """Open the savepoint at ``path`` (its directory or its ``_metadata`` file, or an ``s3://``
        URI: downloaded into a local cache and verified first, see :mod:`eventapp.savepoint.remote`).

        :raises SavepointError: missing, incomplete, damaged (checksums) or of another format.
        """
        if is_remote(path):
            local = fetch_savepoint(str(path))  # verified whole
            return cls(local, SavepointMetadata.read(local), source=str(path))
        directory = Path(path)
        if directory.name == METADATA and directory.is_file():
            directory = directory.parent
        metadata = SavepointMetadata.read(directory)
        if verify:
            for split, state in metadata.splits.items():
                verify_state_file(directory, split, state)
        return cls(directory, metadata)

    @property
    def job(self) -> str:
        return self.metadata.job

    def splits(self) -> list[str]:
        return sorted(self.metadata.splits)

    def operators(self) -> list[str]:
        return sorted(self.metadata.operators)

    def entries(self, split: str) -> Iterator[tuple[bytes, bytes]]:
        """The store entries of ``split``: in key-group order (canonical), or in key order (a native
        split, read through a scratch store opened from its files)."""
        state = self.metadata.splits.get(split)
        if state is None:
            raise SavepointError(f"savepoint {self.path} has no split {split!r}; it has {self.splits()}")
        if state.native is not None:
            with read_snapshot_entries(state.native, self.path / state.file) as store:
                yield from store.scan(b"")
            return
        yield from iter_state_file(self.path, split, state)

    def operator_store(self, uid: str) -> KeyedStateStore:
        """A memory store holding every entry of operator ``uid`` (of all splits)."""
        self.check_operator(uid)
        store: KeyedStateStore = importlib.import_module("eventapp.statebackends.memory").MemoryStateStore(
            f"savepoint:{uid}"
        )
        for split in self.splits():
            parse = EntryParser(split).parse
            store.put_all([(key, value) for key, value in self.entries(split) if parse(key).uid == uid])
        return store

    def read_state(self, uid: str, descriptor: StateDescriptor[Any]) -> Iterator[tuple[Any, Any]]:
        """``(key, value)`` of ``descriptor``'s state of operator ``uid``: values as the job sees
        them (lists, dicts, aggregate results), decoded with the descriptor's serializer. TTL'd
        values that expired are left out (against the wall clock)."""
        inspector = StateInspector(self.operator_store(uid), uid)
        for key, value in inspector.items(descriptor):
            if value is not None:
                yield key, value

    def timers(self, uid: str, domain: TimeDomain) -> list[tuple[int, Any]]:
        """Pending timers ``(timestamp, key)`` of operator ``uid`` in ``domain``, in firing order."""
        return StateInspector(self.operator_store(uid), uid).timers(domain)

    def to_dataframe(self, uid: str, descriptor: StateDescriptor[Any]) -> Any:
        """:meth:`read_state` as a pandas DataFrame with columns ``key`` and ``value``."""
        try:
            pandas = importlib.import_module("pandas")
        except ImportError as exc:
            raise SavepointError("Savepoint.to_dataframe needs pandas: pip install pandas") from exc
        return pandas.DataFrame(list(self.read_state(uid, descriptor)), columns=["key", "value"])

    def key_entries(self, uid: str, key: Any) -> list[dict[str, Any]]:
        """Every entry of operator ``uid`` for state key ``key`` (matched by value, or by its string
        form when ``key`` is a ``str``), values decoded as msgpack where they are (the default
        serializer) and shown as hex otherwise: for ``eventapp savepoint inspect --key``."""
        self.check_operator(uid)
        prefix = operator_state_prefix(uid)
        found: list[dict[str, Any]] = []
        for split in self.splits():
            parse = EntryParser(split).parse
            for entry, value in self.entries(split):
                parsed = parse(entry)
                if parsed.uid != uid:
                    continue
                state_key = decode_key(parsed.key)
                if state_key != key and not (isinstance(key, str) and str(state_key) == key):
                    continue
                item: dict[str, Any] = {"split": split, "kind": parsed.kind, "name": parsed.name}
                if parsed.kind == "timer":
                    item["timestamp"] = decode_timestamp(entry[len(prefix) + 1 : len(prefix) + 9])
                else:
                    rest = entry[len(prefix) + len(parsed.name.encode()) + 1 + 4 + len(parsed.key) :]
                    if rest:
                        item["map_key"] = describe_value(rest)
                    item["value"] = describe_value(value)
                found.append(item)
        return found

    def check_operator(self, uid: str) -> None:
        """:raises SavepointError: the savepoint holds no state of operator ``uid``."""
        if uid not in self.metadata.operators:
            raise SavepointError(
                f"savepoint {self.path} holds no state of operator {uid!r}; it has operators "
                f"{self.operators()}"
            )


def describe_value(data: bytes) -> Any:
    """A JSON-friendly view of stored bytes: msgpack-decoded if they are msgpack (the default
    serializer; a TTL'd value is an 8-byte timestamp then the value), else hex."""
    for offset in (0, 8):
        try:
            value = msgpack.unpackb(data[offset:], raw=False, strict_map_key=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            continue
        decoded = _jsonable(value)
        if offset:
            return {"ttl_stamp_ms": decode_timestamp(data[:8]), "value": decoded}
        return decoded
    return {"hex": data.hex()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
