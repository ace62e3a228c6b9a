"""The state handles of one keyed operator, created on first use."""

from __future__ import annotations

from collections.abc import Callable
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

__all__ = ["StateRegistry", "adopt_declared_descriptors", "declared_descriptors"]


class StateRegistry:
    """Creates state handles on first use and checks that a name is used with one descriptor."""

    def __init__(
        self,
        uid: str,
        context: KeyContext,
        on_register: Callable[[StateDescriptor[Any]], None] | None = None,
    ) -> None:
        self._uid = uid
        self._ctx = context
        self._states: dict[str, KeyedState] = {}
        #: Called once per state, before its first handle is returned (the schema check).
        self._on_register = on_register

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
        if self._on_register is not None:
            self._on_register(descriptor)
        self._states[descriptor.name] = handle
        return handle

    def registered(self, name: str) -> bool:
        return name in self._states

    def descriptors(self) -> list[StateDescriptor[Any]]:
        """The descriptors of the states registered so far."""
        return [state.descriptor for state in self._states.values()]

    def ttl_states(self) -> list[KeyedState]:
        return [s for s in self._states.values() if s.descriptor.ttl is not None]


def declared_descriptors(function: object) -> list[StateDescriptor[Any]]:
    """The state descriptors ``function`` holds as attributes (its own, or its classes' where it
    does not shadow them), one per state name; a name held by two different descriptors is left to
    registration (which refuses it when both are used)."""
    attributes: dict[str, object] = {}
    for namespace in [getattr(function, "__dict__", {})] + [vars(c) for c in type(function).__mro__]:
        for name, value in namespace.items():
            attributes.setdefault(name, value)  # the first one found shadows the others
    found: dict[str, list[StateDescriptor[Any]]] = {}
    for value in attributes.values():
        if isinstance(value, StateDescriptor):
            same = found.setdefault(value.name, [])
            if value not in same:
                same.append(value)
    return [d[0] for d in found.values() if len(d) == 1]


def adopt_declared_descriptors(owner: object, inner: object) -> None:
    """Declare ``inner``'s state descriptors (:func:`declared_descriptors`) as ``owner``'s: for a
    user function eventapp wraps in a function of its own (a window function, a co-process
    function), whose state is the wrapping operator's.

    :raises ConfigurationError: ``inner`` declares a state name that ``owner`` declares itself.
    """
    own = {descriptor.name for descriptor in declared_descriptors(owner)}
    for descriptor in declared_descriptors(inner):
        if descriptor.name in own:
            raise ConfigurationError(
                f"state name {descriptor.name!r} of {type(inner).__name__} is {type(owner).__name__}'s "
                f"own: give the state another name"
            )
        owner.__dict__[f"state:{descriptor.name}"] = descriptor
