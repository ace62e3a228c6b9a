"""Broadcast state (Flink's ``BroadcastProcessFunction`` pattern, keyed side): a low-volume stream
of rules or configuration reaches every parallel instance of a keyed operator, which keeps it in
*broadcast state* and reads it for every element.

    rules = MapStateDescriptor[str, Rule]("rules")
    (transactions.key_by(lambda t: t["account"])
        .connect(rule_updates.broadcast(rules))
        .process(FraudRules(), uid="fraud-rules")
        .sink_to(alerts))

How it runs: the two streams are one tagged union keyed by the element's key, and broadcast
elements by a reserved key that the shuffle (:mod:`eventapp.runtime.shuffle`) writes to *every*
partition, so every split of the keyed operator receives every broadcast element, in order,
exactly-once. Each split keeps its own copy of the broadcast state as the operator's map state
under that reserved key, so it is checkpointed, restored and savepointed like keyed state (Flink
checkpoints one copy per parallel instance the same way). ``process_broadcast_element`` runs once
per split (Flink: once per parallel instance) and may change the state; ``process_element`` reads
it (read-only). The operator's watermark is the minimum of both inputs' (as in Flink: give the
broadcast stream watermarks, or it holds event time back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eventapp.errors import ConfigurationError
from eventapp.functions import Collector, Context, OnTimerContext, OutputTag, RuntimeContext
from eventapp.state.descriptors import MapStateDescriptor
from eventapp.state.handles import MapState

if TYPE_CHECKING:
    from eventapp.stream import DataStream, KeyedStream, ProcessedStream

__all__ = [
    "BROADCAST_KEY",
    "BroadcastConnectedStream",
    "BroadcastContext",
    "BroadcastProcessFunction",
    "BroadcastStream",
    "KeyedBroadcastProcessFunction",
    "ReadOnlyBroadcastContext",
    "ReadOnlyBroadcastTimerContext",
]

K = TypeVar("K")
IN = TypeVar("IN")
B = TypeVar("B")
OUT = TypeVar("OUT")
MK = TypeVar("MK")
MV = TypeVar("MV")

#: The key broadcast state is kept under in each split (a user key cannot start with NUL).
BROADCAST_KEY = "\x00eventapp.broadcast"


class ReadOnlyBroadcastContext(Context):
    """``process_element``'s context: the keyed context, plus the broadcast state, read-only."""

    def get_broadcast_state(self, descriptor: MapStateDescriptor[MK, MV]) -> Mapping[MK, MV]:
        raise NotImplementedError


class ReadOnlyBroadcastTimerContext(OnTimerContext):
    """``on_timer``'s context in a keyed broadcast function: the timer's context, plus the broadcast
    state, read-only (Flink's ``KeyedBroadcastProcessFunction.OnTimerContext``)."""

    def get_broadcast_state(self, descriptor: MapStateDescriptor[MK, MV]) -> Mapping[MK, MV]:
        raise NotImplementedError


class BroadcastContext:
    """``process_broadcast_element``'s context: the broadcast state, read-write."""

    def get_broadcast_state(self, descriptor: MapStateDescriptor[MK, MV]) -> MapState[MK, MV]:
        raise NotImplementedError

    @property
    def timestamp(self) -> int | None:
        """The broadcast element's event time."""
        raise NotImplementedError

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        """Emit ``value`` to side output ``tag``."""
        raise NotImplementedError


class KeyedBroadcastProcessFunction(Generic[K, IN, B, OUT]):
    """A keyed function with broadcast state (Flink's ``KeyedBroadcastProcessFunction``):
    ``keyed.connect(stream.broadcast(descriptor, ...)).process(function, uid=...)``."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once before any element; obtain keyed state handles here."""

    def process_element(self, value: IN, ctx: ReadOnlyBroadcastContext, out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process_element()")

    def process_broadcast_element(self, value: B, ctx: BroadcastContext, out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process_broadcast_element()")

    def on_timer(self, timestamp: int, ctx: ReadOnlyBroadcastTimerContext, out: Collector[OUT]) -> None:
        """Called when a timer fires (``ctx`` reads the broadcast state too); the default does nothing."""

    def close(self) -> None:
        """Called once when the job stops."""


class BroadcastStream(Generic[B]):
    """``stream.broadcast(descriptor, ...)``: connect a keyed stream to it."""

    def __init__(self, stream: DataStream[B], descriptors: tuple[MapStateDescriptor[Any, Any], ...]) -> None:
        if not descriptors or not all(isinstance(d, MapStateDescriptor) for d in descriptors):
            raise ConfigurationError(
                "broadcast() needs one or more MapStateDescriptor: the broadcast state's maps, for "
                "example broadcast(MapStateDescriptor[str, Rule]('rules'))"
            )
        names = [d.name for d in descriptors]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"broadcast() got two state descriptors named alike: {names}")
        self.stream = stream
        self.descriptors = descriptors


class BroadcastProcessFunction(Generic[IN, B, OUT]):
    """A non-keyed function with broadcast state (Flink's ``BroadcastProcessFunction``):
    ``stream.connect(other.broadcast(descriptor, ...)).process(function, uid=...)``. No keyed state
    or timers; ``ctx.timestamp``, ``ctx.output`` and ``ctx.get_broadcast_state`` (read-only in
    ``process_element``, read-write in ``process_broadcast_element``)."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once before any element."""

    def process_element(self, value: IN, ctx: ReadOnlyBroadcastContext, out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process_element()")

    def process_broadcast_element(self, value: B, ctx: BroadcastContext, out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process_broadcast_element()")

    def close(self) -> None:
        """Called once when the job stops."""


class _NonKeyed(KeyedBroadcastProcessFunction[Any, Any, Any, Any]):
    """A non-keyed broadcast function run as a keyed one over round-robin keys."""

    def __init__(self, function: BroadcastProcessFunction[Any, Any, Any]) -> None:
        self.function = function

    def open(self, ctx: RuntimeContext) -> None:
        self.function.open(ctx)

    def process_element(self, value: Any, ctx: ReadOnlyBroadcastContext, out: Collector[Any]) -> None:
        self.function.process_element(value, _UnkeyedContext(ctx), out)

    def process_broadcast_element(self, value: Any, ctx: BroadcastContext, out: Collector[Any]) -> None:
        self.function.process_broadcast_element(value, ctx, out)

    def close(self) -> None:
        self.function.close()


class _UnkeyedContext(ReadOnlyBroadcastContext):
    """``process_element``'s context of a non-keyed broadcast function: no keyed state or timers."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: ReadOnlyBroadcastContext) -> None:
        self._ctx = ctx

    def get_state(self, descriptor: Any) -> Any:
        raise ConfigurationError(
            "a BroadcastProcessFunction has no keyed state: key_by the stream and use a "
            "KeyedBroadcastProcessFunction"
        )

    @property
    def timestamp(self) -> int | None:
        return self._ctx.timestamp

    @property
    def current_key(self) -> Any:
        raise ConfigurationError("a BroadcastProcessFunction's stream has no key")

    @property
    def timer_service(self) -> Any:
        raise ConfigurationError(
            "a BroadcastProcessFunction has no timers (Flink's neither): key_by the stream and use a "
            "KeyedBroadcastProcessFunction"
        )

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        self._ctx.output(tag, value)

    def get_broadcast_state(self, descriptor: MapStateDescriptor[MK, MV]) -> Mapping[MK, MV]:
        return self._ctx.get_broadcast_state(descriptor)


def round_robin_key() -> _RoundRobin:
    """The key selector a non-keyed stream connected to a broadcast stream is shuffled by."""
    return _RoundRobin()


class _RoundRobin:
    """Spreads a non-keyed stream's elements over the shuffle's partitions (the keys 0..1023 in
    turn)."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self, value: Any) -> int:
        self._next = (self._next + 1) % 1024
        return self._next


class BroadcastConnectedStream(Generic[K, IN, B]):
    """A stream connected to a broadcast stream: ``process`` it (keyed or not)."""

    def __init__(
        self, keyed: KeyedStream[K, IN], broadcast: BroadcastStream[B], *, non_keyed: bool = False
    ) -> None:
        self._keyed, self._broadcast, self._non_keyed = keyed, broadcast, non_keyed

    def process(
        self,
        function: KeyedBroadcastProcessFunction[K, IN, B, OUT] | BroadcastProcessFunction[IN, B, OUT],
        *,
        uid: str,
    ) -> ProcessedStream[OUT]:
        if self._non_keyed:
            if not isinstance(function, BroadcastProcessFunction):
                raise ConfigurationError(
                    f"process() on a non-keyed stream connected to a broadcast stream needs a "
                    f"BroadcastProcessFunction instance, got {function!r}"
                )
            return self._keyed.broadcast_process(_NonKeyed(function), self._broadcast, uid=uid)
        if not isinstance(function, KeyedBroadcastProcessFunction):
            raise ConfigurationError(
                f"process() needs a KeyedBroadcastProcessFunction instance, got {function!r}"
            )
        return self._keyed.broadcast_process(function, self._broadcast, uid=uid)
