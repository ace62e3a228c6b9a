"""``KeyedStream.window(assigner)``: a windowed stream, configured Flink's way and ended by
``reduce``, ``aggregate`` or ``process`` (each needs the operator's ``uid``, as ``process`` does)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eventapp.errors import ConfigurationError
from eventapp.functions import OutputTag
from eventapp.serialization import Serializer
from eventapp.state.descriptors import AggregateFunction
from eventapp.windows.aggregation import Aggregation
from eventapp.windows.assigners import WindowAssigner
from eventapp.windows.evictors import Evictor
from eventapp.windows.functions import ProcessWindowFunction
from eventapp.windows.operator import WindowOperator
from eventapp.windows.triggers import Trigger

if TYPE_CHECKING:
    from eventapp.stream import KeyedStream, ProcessedStream

__all__ = ["WindowedStream"]

K = TypeVar("K")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class WindowedStream(Generic[K, T]):
    """Windows of a keyed stream. Each setter returns a new ``WindowedStream``."""

    keyed: KeyedStream[K, T]
    assigner: WindowAssigner
    trigger_: Trigger | None = None
    allowed_lateness_ms: int = 0
    late_tag: OutputTag[Any] | None = None
    evictor_: Evictor | None = None
    contents_serializer: Serializer[Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.assigner, WindowAssigner):
            raise ConfigurationError(
                f"window() needs a window assigner (eventapp.windows.TumblingEventTimeWindows.of(size), "
                f"...), got {self.assigner!r}"
            )

    def trigger(self, trigger: Trigger) -> WindowedStream[K, T]:
        """Replace the assigner's default trigger."""
        if not isinstance(trigger, Trigger):
            raise ConfigurationError(f"trigger() needs an eventapp.windows.Trigger, got {trigger!r}")
        return replace(self, trigger_=trigger)

    def allowed_lateness(self, milliseconds: int) -> WindowedStream[K, T]:
        """Keep event-time windows for ``milliseconds`` after their end: a late record within it
        fires the window again (a late firing); later ones are dropped or go to the late side
        output (Flink's ``allowedLateness``; default 0)."""
        if not isinstance(milliseconds, int) or milliseconds < 0:
            raise ConfigurationError(f"allowed_lateness needs milliseconds >= 0, got {milliseconds!r}")
        if milliseconds and not self.assigner.event_time:
            raise ConfigurationError("allowed_lateness applies to event-time windows only")
        return replace(self, allowed_lateness_ms=milliseconds)

    def side_output_late_data(self, tag: OutputTag[Any]) -> WindowedStream[K, T]:
        """Records too late for every window they belong to go to side output ``tag``
        (``.side_output(tag)`` of the result) instead of being dropped."""
        if not isinstance(tag, OutputTag):
            raise ConfigurationError(f"side_output_late_data needs an OutputTag, got {tag!r}")
        return replace(self, late_tag=tag)

    def evictor(self, evictor: Evictor) -> WindowedStream[K, T]:
        if not isinstance(evictor, Evictor):
            raise ConfigurationError(f"evictor() needs an eventapp.windows.Evictor, got {evictor!r}")
        return replace(self, evictor_=evictor)

    def state_serializer(self, serializer: Serializer[Any]) -> WindowedStream[K, T]:
        """How windows' contents (aggregates, accumulators, elements) are stored; default msgpack
        (lists come back as lists: pass ``MsgpackSerializer(tuples=True)`` for tuples)."""
        return replace(self, contents_serializer=serializer)

    def reduce(
        self,
        function: Callable[[T, T], T],
        window_function: ProcessWindowFunction[T, R, K, Any] | None = None,
        *,
        uid: str,
    ) -> ProcessedStream[Any]:
        """Combine each window's records with ``function(a, b)`` as they arrive; emit the result
        (or pass it to ``window_function``) when the window fires."""
        if not callable(function):
            raise ConfigurationError(f"reduce() needs a callable(a, b) -> value, got {function!r}")
        return self._build(Aggregation("reduce", reduce=function), window_function, uid)

    def aggregate(
        self,
        function: AggregateFunction[T, Any, Any],
        window_function: ProcessWindowFunction[Any, R, K, Any] | None = None,
        *,
        uid: str,
    ) -> ProcessedStream[Any]:
        """Fold each window's records into ``function``'s accumulator; emit ``get_result`` (or pass
        it to ``window_function``) when the window fires."""
        if not isinstance(function, AggregateFunction):
            raise ConfigurationError(f"aggregate() needs an eventapp.AggregateFunction, got {function!r}")
        return self._build(Aggregation("aggregate", aggregate=function), window_function, uid)

    def process(self, function: ProcessWindowFunction[T, R, K, Any], *, uid: str) -> ProcessedStream[R]:
        """Call ``function`` with all the records of a window when it fires."""
        if not isinstance(function, ProcessWindowFunction):
            raise ConfigurationError(f"process() needs a ProcessWindowFunction, got {function!r}")
        return self._build(Aggregation("process"), function, uid)

    def _build(
        self,
        aggregation: Aggregation,
        window_function: ProcessWindowFunction[Any, Any, Any, Any] | None,
        uid: str,
    ) -> ProcessedStream[Any]:
        if window_function is not None and not isinstance(window_function, ProcessWindowFunction):
            raise ConfigurationError(
                f"window_function must be a ProcessWindowFunction, got {window_function!r}"
            )
        operator = WindowOperator(
            self.assigner,
            aggregation,
            trigger=self.trigger_,
            allowed_lateness=self.allowed_lateness_ms,
            late_tag=self.late_tag,
            evictor=self.evictor_,
            window_function=window_function,
            contents_serializer=self.contents_serializer,
        )
        stream = self.keyed.process(operator, uid=uid)
        if self.late_tag is not None:
            stream.side_output(self.late_tag)  # registered, so late records reach it
        return stream
