"""The whole contents of one key's state as one value (read and written by the savepoint API and
the test harness), and the payloads inside a stored entry (rewritten by schema migrations)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from eventapp.state.handles import (
    AggregatingState,
    KeyedState,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)

__all__ = ["read_state", "rewrite_payloads", "write_state"]

_PACKER = msgpack.Packer(use_bin_type=True)


def read_state(handle: KeyedState) -> Any:
    """The current key's contents of any state: a value, a list, a dict or an aggregate result."""
    if isinstance(handle, ValueState):
        return handle.value()
    if isinstance(handle, ListState):
        return handle.get()
    if isinstance(handle, MapState):
        return dict(handle.items())
    if isinstance(handle, ReducingState | AggregatingState):
        return handle.get()
    raise TypeError(f"unsupported state handle {handle!r}")


def write_state(handle: KeyedState, value: Any) -> None:
    """Set the current key's contents of any state (the inverse of :func:`read_state`): a value, a
    list, a dict, or the stored value of a reducing state / accumulator of an aggregating state."""
    if isinstance(handle, ValueState | ListState):
        handle.update(value)
    elif isinstance(handle, MapState):
        handle.clear()
        handle.put_all(value)
    elif isinstance(handle, ReducingState | AggregatingState):
        handle._write(handle._store(), handle._entry(), handle._ser.dumps(value))
    else:
        raise TypeError(f"unsupported state handle {handle!r}")


def rewrite_payloads(kind: str, ttl: bool, data: bytes, rewrite: Callable[[bytes], bytes]) -> bytes:
    """``data`` (one stored entry of a state of ``kind``) with each serialized value in it passed
    through ``rewrite``; TTL stamps are kept. For schema migrations."""
    if kind == "list":
        items = list(msgpack.unpackb(data, raw=False))
        if ttl:
            return _PACKER.pack([[stamp, rewrite(payload)] for stamp, payload in items])
        return _PACKER.pack([rewrite(payload) for payload in items])
    if ttl:
        return data[:8] + rewrite(data[8:])
    return rewrite(data)
