"""The whole contents of one key's state as one value (read and written by the savepoint API and
the test harness)."""

from __future__ import annotations

from typing import Any

from eventapp.state.handles import (
    AggregatingState,
    KeyedState,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)

__all__ = ["read_state", "write_state"]


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
