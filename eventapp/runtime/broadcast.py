"""Broadcast state at run time (the API and the model are in :mod:`eventapp.broadcast`).

The keyed broadcast function runs inside a keyed process operator over the tagged union
``("e", element)`` / ``("b", broadcast element)``; broadcast elements are keyed by
:data:`~eventapp.broadcast.BROADCAST_KEY`, which the shuffle writes to every partition. The
broadcast state is the operator's map state under that key, per split.
:class:`KeyedBroadcastOperator` keeps a read-only copy of each split's broadcast state in memory
for ``process_element`` (read from the store the first time a split needs it, and again after every
broadcast element of that split).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from eventapp.broadcast import (
    BROADCAST_KEY,
    BroadcastContext,
    KeyedBroadcastProcessFunction,
    ReadOnlyBroadcastContext,
    ReadOnlyBroadcastTimerContext,
)
from eventapp.errors import ConfigurationError
from eventapp.functions import (
    Collector,
    Context,
    KeyedProcessFunction,
    OnTimerContext,
    OutputTag,
    RuntimeContext,
    TimeDomain,
)
from eventapp.runtime.keyed_process import KeyedProcessOperator
from eventapp.state.descriptors import MapStateDescriptor
from eventapp.state.handles import MapState
from eventapp.state.registry import adopt_declared_descriptors

__all__ = [
    "KeyedBroadcastAdapter",
    "KeyedBroadcastOperator",
    "broadcast_key_selector",
    "tag_broadcast_element",
    "tag_element",
]


def tag_element(value: Any) -> tuple[str, Any]:
    return ("e", value)


def tag_broadcast_element(value: Any) -> tuple[str, Any]:
    return ("b", value)


def broadcast_key_selector(selector: Callable[[Any], Any]) -> Callable[[tuple[str, Any]], Any]:
    """The key of a tagged record: the element's key, or the broadcast key."""

    def key(tagged: tuple[str, Any]) -> Any:
        return selector(tagged[1]) if tagged[0] == "e" else BROADCAST_KEY

    return key


class KeyedBroadcastOperator(KeyedProcessOperator):
    """A keyed process operator whose function is a :class:`KeyedBroadcastAdapter`."""

    def __init__(self, *, broadcast: tuple[MapStateDescriptor[Any, Any], ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        adapter = self.function
        if not isinstance(adapter, KeyedBroadcastAdapter):
            raise ConfigurationError(
                f"operator '{self.uid}': broadcast state needs a keyed broadcast function"
            )
        adapter.operator = self
        self.broadcast = {d.name: d for d in broadcast}
        self._views: dict[str, dict[str, Mapping[Any, Any]]] = {}

    def check_broadcast(self, descriptor: MapStateDescriptor[Any, Any]) -> None:
        """Refuse a descriptor that was not passed to ``broadcast(...)``."""
        if descriptor.name not in self.broadcast:
            raise ConfigurationError(
                f"operator '{self.uid}': {descriptor.name!r} is not a broadcast state of this operator "
                f"(it has {sorted(self.broadcast)}); pass it to broadcast(...)"
            )

    def broadcast_view(self, descriptor: MapStateDescriptor[Any, Any]) -> Mapping[Any, Any]:
        """The current split's broadcast state ``descriptor``, read-only."""
        self.check_broadcast(descriptor)
        ctx = self.key_context
        split = ctx.split or ""
        views = self._views.setdefault(split, {})
        view = views.get(descriptor.name)
        if view is None:
            saved = (ctx.key, ctx.key_bytes, ctx.key_part)
            ctx.key = BROADCAST_KEY
            ctx.key_bytes, ctx.key_part = self._keys.encode(BROADCAST_KEY)
            try:
                state: Any = self.states.get(descriptor)
                view = MappingProxyType(dict(state.items()))
            finally:
                ctx.key, ctx.key_bytes, ctx.key_part = saved
            views[descriptor.name] = view
        return view

    def broadcast_changed(self) -> None:
        """The current split's broadcast state may have changed: read it again when needed."""
        self._views.pop(self.key_context.split or "", None)

    def forget_split(self, split: str) -> None:
        super().forget_split(split)
        self._views.pop(split, None)


class _ReadOnlyContext(ReadOnlyBroadcastContext):
    __slots__ = ("_ctx", "_op")

    def __init__(self, op: KeyedBroadcastOperator, ctx: Context) -> None:
        self._op, self._ctx = op, ctx

    def get_state(self, descriptor: Any) -> Any:
        return self._ctx.get_state(descriptor)

    @property
    def timestamp(self) -> int | None:
        return self._ctx.timestamp

    @property
    def current_key(self) -> Any:
        return self._ctx.current_key

    @property
    def timer_service(self) -> Any:
        return self._ctx.timer_service

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        self._ctx.output(tag, value)

    def get_broadcast_state(self, descriptor: MapStateDescriptor[Any, Any]) -> Mapping[Any, Any]:
        return self._op.broadcast_view(descriptor)


class _ReadOnlyTimerContext(_ReadOnlyContext, ReadOnlyBroadcastTimerContext):
    """``on_timer``'s context: the read-only context, plus the firing timer's time domain."""

    __slots__ = ()
    _ctx: OnTimerContext

    @property
    def time_domain(self) -> TimeDomain:
        return self._ctx.time_domain


class _BroadcastContext(BroadcastContext):
    __slots__ = ("_ctx", "_op")

    def __init__(self, op: KeyedBroadcastOperator, ctx: Context) -> None:
        self._op, self._ctx = op, ctx

    def get_broadcast_state(self, descriptor: MapStateDescriptor[Any, Any]) -> MapState[Any, Any]:
        self._op.check_broadcast(descriptor)
        state: MapState[Any, Any] = self._ctx.get_state(descriptor)
        return state

    @property
    def timestamp(self) -> int | None:
        return self._ctx.timestamp

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        self._ctx.output(tag, value)


class KeyedBroadcastAdapter(KeyedProcessFunction[Any, tuple[str, Any], Any]):
    """Calls the keyed broadcast function's method of the record's tag."""

    def __init__(
        self,
        function: KeyedBroadcastProcessFunction[Any, Any, Any, Any],
        broadcast: tuple[MapStateDescriptor[Any, Any], ...],
    ) -> None:
        self.function = function
        self.operator: KeyedBroadcastOperator | None = None
        adopt_declared_descriptors(self, function)  # the function's state is the operator's
        for descriptor in broadcast:
            self.__dict__[f"broadcast:{descriptor.name}"] = descriptor

    def open(self, ctx: RuntimeContext) -> None:
        self.function.open(ctx)

    def process_element(self, value: tuple[str, Any], ctx: Context, out: Collector[Any]) -> None:
        op = self.operator
        assert op is not None
        tag, element = value
        if tag == "e":
            self.function.process_element(element, _ReadOnlyContext(op, ctx), out)
            return
        try:
            self.function.process_broadcast_element(element, _BroadcastContext(op, ctx), out)
        finally:
            op.broadcast_changed()

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Any]) -> None:
        op = self.operator
        assert op is not None
        self.function.on_timer(timestamp, _ReadOnlyTimerContext(op, ctx), out)

    def close(self) -> None:
        self.function.close()
