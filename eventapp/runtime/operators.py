"""Operators: the nodes of a task's chain (Flink's ``StreamOperator``), all behind one interface.

An operator processes records, advances its watermark and forwards it downstream. An operator that
holds timers fires the due ones *before* forwarding the watermark that made them due (Flink's
``AbstractStreamOperator.processWatermark``): what a timer emits reaches the next operator while
that operator's watermark is still the previous one, so chained event-time operators (windows of
windows) see their inputs on time.

The stateless operators here wrap the user's function and name it in errors; the keyed process
operator is in :mod:`eventapp.runtime.keyed_process`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventapp.clock import Clock
from eventapp.functions import CoContext, CoProcessFunction
from eventapp.runtime.record import SplitContext, StreamRecord
from eventapp.state.keys import MIN_TIMESTAMP

__all__ = [
    "Broadcast",
    "CoProcessOperator",
    "Discard",
    "FilterOperator",
    "FlatMapOperator",
    "MapOperator",
    "Operator",
    "OperatorRuntime",
    "SinkOperator",
]


@dataclass(frozen=True)
class OperatorRuntime:
    """What an operator gets when it opens: where it runs and the splits its task owns."""

    job: str
    clock: Clock
    #: The task's split contexts by split id (timers fire split by split over them).
    splits: Mapping[str, SplitContext] = field(default_factory=dict)


class Operator(ABC):
    """A node of the chain. ``output`` is the downstream operator (a :class:`Broadcast` when there
    are several, :class:`Discard` when there is none)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.output: Operator = DISCARD
        self.watermark = MIN_TIMESTAMP

    def open(self, runtime: OperatorRuntime) -> None:
        """Called once before the first record."""
        del runtime

    def close(self) -> None:  # noqa: B027 - most operators have nothing to close
        """Called once when the task stops."""

    def split_added(self, split: SplitContext) -> None:  # noqa: B027 - most operators keep nothing per split
        """A split joined the running task (a consumer group assigned it)."""

    def forget_split(self, split: str) -> None:  # noqa: B027
        """A split left the running task: drop what is kept for it."""

    @abstractmethod
    def process(self, record: StreamRecord) -> None:
        """Process one record (and emit to ``output``)."""

    def process_watermark(self, watermark: int) -> int:
        """Advance this operator's watermark, fire what became due, then forward the watermark.
        Returns the number of timers fired here and downstream."""
        if watermark <= self.watermark:
            return 0
        self.watermark = watermark
        return self.output.process_watermark(watermark)

    def on_processing_time(self, now_ms: int) -> int:
        """Fire this operator's processing-time timers due at ``now_ms`` (not forwarded: every
        operator is called by the task). Returns the number fired."""
        del now_ms
        return 0

    def downstream(self) -> Sequence[Operator]:
        """The operators this one emits to."""
        return [] if self.output is DISCARD else [self.output]


class Discard(Operator):
    """The output of an operator that has no downstream."""

    def __init__(self, name: str) -> None:
        # Not super().__init__: that would point output at DISCARD, which is this object.
        self.name = name
        self.output = self
        self.watermark = MIN_TIMESTAMP

    def process(self, record: StreamRecord) -> None:
        return None

    def process_watermark(self, watermark: int) -> int:
        return 0


DISCARD = Discard("discard")


class Broadcast(Operator):
    """Emits every record and watermark to several operators, each seeing the record as it arrived
    (an operator may replace a record's value before passing it on)."""

    def __init__(self, name: str, targets: Sequence[Operator]) -> None:
        super().__init__(name)
        self.targets = list(targets)

    def process(self, record: StreamRecord) -> None:
        value, timestamp = record.value, record.timestamp
        for target in self.targets:
            record.value = value
            record.timestamp = timestamp
            target.process(record)

    def process_watermark(self, watermark: int) -> int:
        return sum(target.process_watermark(watermark) for target in self.targets)

    def downstream(self) -> Sequence[Operator]:
        return self.targets


class MapOperator(Operator):
    def __init__(self, name: str, fn: Callable[[Any], Any]) -> None:
        super().__init__(name)
        self.fn = fn

    def process(self, record: StreamRecord) -> None:
        try:
            record.value = self.fn(record.value)
        except Exception as exc:
            raise record.failure(self.name, exc) from exc
        self.output.process(record)


class FilterOperator(Operator):
    def __init__(self, name: str, fn: Callable[[Any], bool]) -> None:
        super().__init__(name)
        self.fn = fn

    def process(self, record: StreamRecord) -> None:
        try:
            keep = self.fn(record.value)
        except Exception as exc:
            raise record.failure(self.name, exc) from exc
        if keep:
            self.output.process(record)


class FlatMapOperator(Operator):
    def __init__(self, name: str, fn: Callable[[Any], Iterable[Any]]) -> None:
        super().__init__(name)
        self.fn = fn

    def process(self, record: StreamRecord) -> None:
        try:
            values = list(self.fn(record.value))
        except Exception as exc:
            raise record.failure(self.name, exc) from exc
        timestamp = record.timestamp
        for value in values:
            record.value = value
            record.timestamp = timestamp
            self.output.process(record)


class CoProcessOperator(Operator):
    """Runs a :class:`~eventapp.functions.CoProcessFunction` on a tagged union of its two inputs
    (``(1, value)`` or ``(2, value)``, see :mod:`eventapp.connected`)."""

    def __init__(self, name: str, function: CoProcessFunction[Any, Any, Any]) -> None:
        super().__init__(name)
        self.function = function
        self._context = _CoContext()
        self._out: list[Any] = []

    def open(self, runtime: OperatorRuntime) -> None:
        self.function.open()

    def close(self) -> None:
        self.function.close()

    def process(self, record: StreamRecord) -> None:
        tag, value = record.value
        context, out = self._context, self._out
        context.current = record.timestamp
        out.clear()
        collector = _ListCollector(out)
        try:
            if tag == 1:
                self.function.process_element1(value, context, collector)
            else:
                self.function.process_element2(value, context, collector)
        except Exception as exc:
            raise record.failure(self.name, exc) from exc
        timestamp = record.timestamp
        for result in list(out):
            record.value = result
            record.timestamp = timestamp
            self.output.process(record)


class _CoContext(CoContext):
    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: int | None = None

    @property
    def timestamp(self) -> int | None:
        return self.current


class _ListCollector:
    __slots__ = ("_values",)

    def __init__(self, values: list[Any]) -> None:
        self._values = values

    def collect(self, value: Any) -> None:
        self._values.append(value)


class SinkOperator(Operator):
    """Hands records to the split's writer of one sink (the split task owns the writers)."""

    def __init__(self, name: str, index: int) -> None:
        super().__init__(name)
        self.index = index

    def process(self, record: StreamRecord) -> None:
        split = record.split
        writers = split.direct_writers
        if writers is not None:
            writers[self.index](record.value, record.timestamp)
        else:
            split.write(self.index, record.value, record.timestamp)
