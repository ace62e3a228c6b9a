"""The key layout of keyed state and timers in a :class:`~eventapp.state.store.KeyedStateStore`.

State entries: ``b"s" + uid + 0x00 + state name + 0x00 + len(key) (4 bytes) + key [+ map key]``.
Timers: ``b"t" + uid + 0x00 + domain (b"e" | b"p") + timestamp (8 bytes, sign-flipped) + key``.
Timer keys sort by timestamp within an operator and domain, which is what makes timers fire in
timestamp order without holding them in memory; one entry per (key, timestamp, domain) is the
deduplication. The layout is part of the snapshot format: change it only with a format version bump.
"""

from __future__ import annotations

from typing import Any

import msgpack

from eventapp.errors import ConfigurationError, SerializationError

__all__ = [
    "STATE_TAG",
    "TIMER_TAG",
    "KeyEncoder",
    "decode_key",
    "decode_timestamp",
    "encode_key",
    "encode_timestamp",
    "key_part",
    "state_prefix",
    "timer_prefix",
]

STATE_TAG = b"s"
TIMER_TAG = b"t"
EVENT_TIME = b"e"
PROCESSING_TIME = b"p"
_SIGN = 1 << 63
MIN_TIMESTAMP = -(1 << 63)
MAX_TIMESTAMP = (1 << 63) - 1


def _check_uid(uid: str) -> bytes:
    if not uid or "\x00" in uid:
        raise ConfigurationError(f"operator uid must be a non-empty string without NUL, got {uid!r}")
    return uid.encode()


def state_prefix(uid: str, state_name: str) -> bytes:
    return STATE_TAG + _check_uid(uid) + b"\x00" + state_name.encode() + b"\x00"


def operator_state_prefix(uid: str) -> bytes:
    return STATE_TAG + _check_uid(uid) + b"\x00"


def operator_timer_prefix(uid: str) -> bytes:
    """Common prefix of every timer (both domains) of operator ``uid``."""
    return TIMER_TAG + _check_uid(uid) + b"\x00"


def timer_prefix(uid: str, domain: bytes) -> bytes:
    return operator_timer_prefix(uid) + domain


def encode_timestamp(ts: int) -> bytes:
    return (ts + _SIGN).to_bytes(8, "big")


def decode_timestamp(data: bytes) -> int:
    return int.from_bytes(data, "big") - _SIGN


def key_part(key_bytes: bytes) -> bytes:
    """The length-prefixed key, so that one key is never a prefix of another."""
    return len(key_bytes).to_bytes(4, "big") + key_bytes


_KEY_PACKER = msgpack.Packer(use_bin_type=True)  # reused: packb builds a Packer per call


def encode_key(key: Any) -> bytes:
    """Deterministic bytes of a partitioning key (str, int, bytes, bool, None, float or tuples)."""
    try:
        return _KEY_PACKER.pack(key)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"key {key!r} of type {type(key).__name__} cannot be used as a state key; key_by must "
            f"return str, int, bytes, bool, float, None or a tuple of those"
        ) from exc


class KeyEncoder:
    """:func:`encode_key` and :func:`key_part` of keys, remembered for str and int keys (a keyed
    operator sees the same keys over and over; encoding one costs more than the lookup). Keys of
    other types are encoded every time: ``1``, ``1.0`` and ``True`` are one dict key but three state
    keys. At most ``capacity`` keys are remembered (then the memory starts over)."""

    __slots__ = ("_capacity", "_ints", "_strs")

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._strs: dict[str, tuple[bytes, bytes]] = {}
        self._ints: dict[int, tuple[bytes, bytes]] = {}

    def encode(self, key: Any) -> tuple[bytes, bytes]:
        """``(encode_key(key), key_part(encode_key(key)))``."""
        cls = type(key)
        cache = self._strs if cls is str else self._ints if cls is int else None
        if cache is None:
            kb = encode_key(key)
            return kb, key_part(kb)
        found = cache.get(key)
        if found is None:
            kb = encode_key(key)
            found = (kb, key_part(kb))
            if len(cache) >= self._capacity:
                cache.clear()
            cache[key] = found
        return found


def decode_key(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=False)
