"""Two streams of one job connected into one keyed operator (Flink's ``connect`` with a
``KeyedCoProcessFunction``): state and timers per key across both inputs.

``a.connect(b).key_by(key_a, key_b).process(function, uid=...)`` runs ``function`` on the union of
the two streams, each record tagged with its input, keyed by its input's key selector; the adapter
below calls ``process_element1`` or ``process_element2``. The operator's watermark is the minimum
of its inputs' (they may come from separate sources). ``a.connect(b).process(function)`` runs a
non-keyed ``CoProcessFunction`` the same way, without keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eventapp.errors import ConfigurationError
from eventapp.functions import (
    Collector,
    Context,
    CoProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OnTimerContext,
    RuntimeContext,
)
from eventapp.state.registry import adopt_declared_descriptors

if TYPE_CHECKING:
    from eventapp.stream import DataStream, ProcessedStream

__all__ = ["ConnectedStreams", "KeyedConnectedStreams"]

K = TypeVar("K")
IN1 = TypeVar("IN1")
IN2 = TypeVar("IN2")
R = TypeVar("R")


class ConnectedStreams(Generic[IN1, IN2]):
    """``first.connect(second)``: key both with :meth:`key_by`, or :meth:`process` them unkeyed."""

    def __init__(self, first: DataStream[IN1], second: DataStream[IN2]) -> None:
        self.first, self.second = first, second

    def process(self, function: CoProcessFunction[IN1, IN2, R], *, name: str | None = None) -> DataStream[R]:
        """Run ``function`` on both inputs without keys (Flink's ``CoProcessFunction``): one
        instance per task, no keyed state or timers. Its watermark is the minimum of both inputs'."""
        if not isinstance(function, CoProcessFunction):
            raise ConfigurationError(f"process() needs a CoProcessFunction instance, got {function!r}")
        first: DataStream[tuple[int, Any]] = self.first.map(_tag_first)
        second: DataStream[tuple[int, Any]] = self.second.map(_tag_second)
        return first.union(second).co_process(function, name=name)

    def key_by(
        self, first_key: Callable[[IN1], K], second_key: Callable[[IN2], K]
    ) -> KeyedConnectedStreams[K, IN1, IN2]:
        """Key the first input by ``first_key`` and the second by ``second_key`` (the same keys)."""
        if not callable(first_key) or not callable(second_key):
            raise ConfigurationError("ConnectedStreams.key_by needs a key selector for each input")
        return KeyedConnectedStreams(self, first_key, second_key)


class KeyedConnectedStreams(Generic[K, IN1, IN2]):
    def __init__(
        self,
        streams: ConnectedStreams[IN1, IN2],
        first_key: Callable[[IN1], K],
        second_key: Callable[[IN2], K],
    ) -> None:
        self._streams, self._first_key, self._second_key = streams, first_key, second_key

    def process(self, function: KeyedCoProcessFunction[K, IN1, IN2, R], *, uid: str) -> ProcessedStream[R]:
        """Run ``function`` per key over both inputs; ``uid`` names its state, as ``process``."""
        if not isinstance(function, KeyedCoProcessFunction):
            raise ConfigurationError(f"process() needs a KeyedCoProcessFunction instance, got {function!r}")
        first: DataStream[tuple[int, Any]] = self._streams.first.map(lambda value: (1, value))
        second: DataStream[tuple[int, Any]] = self._streams.second.map(lambda value: (2, value))
        first_key, second_key = self._first_key, self._second_key
        keyed = first.union(second).key_by(
            lambda tagged: first_key(tagged[1]) if tagged[0] == 1 else second_key(tagged[1])
        )
        return keyed.process(_CoProcess(function), uid=uid)


def _tag_first(value: Any) -> tuple[int, Any]:
    return (1, value)


def _tag_second(value: Any) -> tuple[int, Any]:
    return (2, value)


class _CoProcess(KeyedProcessFunction[Any, tuple[int, Any], Any]):
    """Calls the co-process function's method of the record's input."""

    def __init__(self, function: KeyedCoProcessFunction[Any, Any, Any, Any]) -> None:
        self.function = function
        adopt_declared_descriptors(self, function)  # the function's state is the operator's

    def open(self, ctx: RuntimeContext) -> None:
        self.function.open(ctx)

    def process_element(self, value: tuple[int, Any], ctx: Context, out: Collector[Any]) -> None:
        if value[0] == 1:
            self.function.process_element1(value[1], ctx, out)
        else:
            self.function.process_element2(value[1], ctx, out)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Any]) -> None:
        self.function.on_timer(timestamp, ctx, out)

    def close(self) -> None:
        self.function.close()
