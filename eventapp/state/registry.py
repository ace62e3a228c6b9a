"""The state handles of one keyed operator, created on first use."""

from __future__ import annotations

from typing import Any

from eventapp.errors import ConfigurationError
from eventapp.state.context import KeyContext
from eventapp.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from eventapp.state.handles import (
    AggregatingState,
    KeyedState,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)

__all__ = ["StateRegistry"]


class StateRegistry:
    """Creates state handles on first use and checks that a name is used with one descriptor."""

    def __init__(self, uid: str, context: KeyContext) -> None:
        self._uid = uid
        self._ctx = context
        self._states: dict[str, KeyedState] = {}

    def get(self, descriptor: StateDescriptor[Any]) -> KeyedState:
        existing = self._states.get(descriptor.name)
        if existing is not None:
            if existing.descriptor != descriptor:
                raise ConfigurationError(
                    f"operator '{self._uid}' asked for state {descriptor.name!r} with two different "
                    f"descriptors ({existing.descriptor!r} and {descriptor!r}); give each state its "
                    f"own name"
                )
            return existing
        handle: KeyedState
        if isinstance(descriptor, ValueStateDescriptor):
            handle = ValueState(self._uid, descriptor, self._ctx)
        elif isinstance(descriptor, ListStateDescriptor):
            handle = ListState(self._uid, descriptor, self._ctx)
        elif isinstance(descriptor, MapStateDescriptor):
            handle = MapState(self._uid, descriptor, self._ctx)
        elif isinstance(descriptor, ReducingStateDescriptor):
            handle = ReducingState(self._uid, descriptor, self._ctx)
        elif isinstance(descriptor, AggregatingStateDescriptor):
            handle = AggregatingState(self._uid, descriptor, self._ctx)
        else:
            raise ConfigurationError(f"unknown state descriptor type {type(descriptor).__name__}")
        self._states[descriptor.name] = handle
        return handle

    def ttl_states(self) -> list[KeyedState]:
        return [s for s in self._states.values() if s.descriptor.ttl is not None]
