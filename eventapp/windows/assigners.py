"""Window assigners (Flink's ``WindowAssigner``): which windows a record belongs to.

Sizes, slides, offsets and gaps are milliseconds. Windows are aligned to the epoch plus
``offset`` as in Flink: a record with timestamp ``t`` is in the tumbling window starting at
``t - (t - offset + size) % size``.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventapp.errors import ConfigurationError
from eventapp.windows.triggers import (
    EventTimeTrigger,
    NeverTrigger,
    ProcessingTimeTrigger,
    Trigger,
)
from eventapp.windows.window import GlobalWindow, TimeWindow, Window

__all__ = [
    "EventTimeSessionWindows",
    "GlobalWindows",
    "ProcessingTimeSessionWindows",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "WindowAssigner",
    "window_start",
]


def window_start(timestamp: int, offset: int, size: int) -> int:
    """Flink's ``TimeWindow.getWindowStartWithOffset``."""
    remainder = (timestamp - offset) % size
    return timestamp - remainder


class WindowAssigner:
    """Assigns each record to windows. ``event_time``: its windows follow the record's timestamp and
    the watermark (else the processing time). ``merging``: its windows merge (sessions)."""

    event_time = True
    merging = False

    def assign(self, timestamp: int) -> list[Window]:
        """The windows of a record with ``timestamp`` (its event time, or the processing time)."""
        raise NotImplementedError

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger() if self.event_time else ProcessingTimeTrigger()


def _positive(kind: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigurationError(
                f"{kind}: {name} must be a positive number of milliseconds, got {value!r}"
            )


@dataclass(frozen=True)
class TumblingEventTimeWindows(WindowAssigner):
    """Fixed-size, non-overlapping windows ``[start, start + size)`` in event time."""

    size: int
    offset: int = 0

    def __post_init__(self) -> None:
        _positive(type(self).__name__, size=self.size)
        if not isinstance(self.offset, int) or abs(self.offset) >= self.size:
            raise ConfigurationError(
                f"{type(self).__name__}: offset must be an int with |offset| < size ({self.size}), "
                f"got {self.offset!r}"
            )

    @classmethod
    def of(cls, size: int, offset: int = 0) -> TumblingEventTimeWindows:
        return cls(size, offset)

    def assign(self, timestamp: int) -> list[Window]:
        start = window_start(timestamp, self.offset, self.size)
        return [TimeWindow(start, start + self.size)]


@dataclass(frozen=True)
class TumblingProcessingTimeWindows(TumblingEventTimeWindows):
    """:class:`TumblingEventTimeWindows` on the processing time."""

    event_time = False


@dataclass(frozen=True)
class SlidingEventTimeWindows(WindowAssigner):
    """Windows of ``size`` starting every ``slide``; a record is in ``ceil(size / slide)`` of them."""

    size: int
    slide: int
    offset: int = 0

    def __post_init__(self) -> None:
        _positive(type(self).__name__, size=self.size, slide=self.slide)
        if not isinstance(self.offset, int) or abs(self.offset) >= self.slide:
            raise ConfigurationError(
                f"{type(self).__name__}: offset must be an int with |offset| < slide ({self.slide}), "
                f"got {self.offset!r}"
            )

    @classmethod
    def of(cls, size: int, slide: int, offset: int = 0) -> SlidingEventTimeWindows:
        return cls(size, slide, offset)

    def assign(self, timestamp: int) -> list[Window]:
        last_start = window_start(timestamp, self.offset, self.slide)
        windows: list[Window] = []
        start = last_start
        while start > timestamp - self.size:  # Flink's order: the latest window first
            windows.append(TimeWindow(start, start + self.size))
            start -= self.slide
        return windows


@dataclass(frozen=True)
class SlidingProcessingTimeWindows(SlidingEventTimeWindows):
    """:class:`SlidingEventTimeWindows` on the processing time."""

    event_time = False


@dataclass(frozen=True)
class EventTimeSessionWindows(WindowAssigner):
    """A window per burst of records of a key: records less than ``gap`` apart are in one window
    (each record starts ``[t, t + gap)``; overlapping or adjacent windows merge)."""

    gap: int
    merging = True

    def __post_init__(self) -> None:
        _positive(type(self).__name__, gap=self.gap)

    @classmethod
    def with_gap(cls, gap: int) -> EventTimeSessionWindows:
        return cls(gap)

    def assign(self, timestamp: int) -> list[Window]:
        return [TimeWindow(timestamp, timestamp + self.gap)]


@dataclass(frozen=True)
class ProcessingTimeSessionWindows(EventTimeSessionWindows):
    """:class:`EventTimeSessionWindows` on the processing time."""

    event_time = False


@dataclass(frozen=True)
class GlobalWindows(WindowAssigner):
    """One window per key holding every record; it fires only by a trigger (default: never)."""

    @classmethod
    def create(cls) -> GlobalWindows:
        return cls()

    def assign(self, timestamp: int) -> list[Window]:
        return [GlobalWindow()]

    def default_trigger(self) -> Trigger:
        return NeverTrigger()
