"""Watermark strategies (Flink's ``WatermarkStrategy``) and the per-split watermark generator.

A split's watermark is ``max timestamp seen - max_out_of_orderness - 1`` (Flink's
``BoundedOutOfOrdernessWatermarks``). A task's watermark is the minimum over its non-idle splits;
a split is idle when it produced no record for ``idleness_ms`` of processing time. A task whose
splits are all idle keeps its watermark. It never goes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from eventapp.errors import ConfigurationError
from eventapp.state.keys import MAX_TIMESTAMP, MIN_TIMESTAMP

__all__ = ["MAX_WATERMARK", "MIN_WATERMARK", "SplitWatermark", "WatermarkStrategy"]

T = TypeVar("T")
MIN_WATERMARK = MIN_TIMESTAMP
MAX_WATERMARK = MAX_TIMESTAMP

TimestampAssigner = Callable[[T, "int | None"], int]


@dataclass(frozen=True, slots=True)
class WatermarkStrategy(Generic[T]):
    """How event time and watermarks are derived from a source's records.

    Use the constructors: ``WatermarkStrategy.for_bounded_out_of_orderness(5_000)``,
    ``for_monotonous_timestamps()`` or ``no_watermarks()``, then ``with_timestamp_assigner(fn)``
    (``fn(value, source_timestamp) -> epoch ms``) and ``with_idleness(ms)``.
    """

    max_out_of_orderness_ms: int | None = None
    timestamp_assigner: TimestampAssigner[T] | None = None
    idleness_ms: int | None = None
    #: Split-level watermark alignment (Flink FLIP-182/217): pause splits whose watermark is more
    #: than this ahead of the slowest active split of the worker.
    alignment_max_drift_ms: int | None = None

    def __post_init__(self) -> None:
        if self.max_out_of_orderness_ms is not None and self.max_out_of_orderness_ms < 0:
            raise ConfigurationError(
                f"max out-of-orderness must be >= 0 ms, got {self.max_out_of_orderness_ms}"
            )
        if self.idleness_ms is not None and self.idleness_ms <= 0:
            raise ConfigurationError(
                f"idleness timeout must be a positive number of ms, got {self.idleness_ms}; "
                f"omit with_idleness() to never mark splits idle"
            )
        if self.alignment_max_drift_ms is not None and self.alignment_max_drift_ms < 0:
            raise ConfigurationError(
                f"watermark alignment max drift must be >= 0 ms, got {self.alignment_max_drift_ms}"
            )

    @staticmethod
    def for_bounded_out_of_orderness(max_out_of_orderness_ms: int) -> WatermarkStrategy[Any]:
        return WatermarkStrategy(max_out_of_orderness_ms=max_out_of_orderness_ms)

    @staticmethod
    def for_monotonous_timestamps() -> WatermarkStrategy[Any]:
        return WatermarkStrategy(max_out_of_orderness_ms=0)

    @staticmethod
    def no_watermarks() -> WatermarkStrategy[Any]:
        return WatermarkStrategy()

    def with_timestamp_assigner(self, assigner: TimestampAssigner[T]) -> WatermarkStrategy[T]:
        if not callable(assigner):
            raise ConfigurationError("with_timestamp_assigner needs a callable(value, source_ts) -> int")
        return replace(self, timestamp_assigner=assigner)

    def with_idleness(self, idleness_ms: int) -> WatermarkStrategy[T]:
        return replace(self, idleness_ms=idleness_ms)

    def with_watermark_alignment(self, max_drift_ms: int) -> WatermarkStrategy[T]:
        """Pause reading splits whose watermark is more than ``max_drift_ms`` ahead of the slowest
        active split of this worker, until it catches up (Flink's split-level watermark alignment,
        FLIP-182/217, within one worker). A split that never produces records holds the others
        back unless :meth:`with_idleness` is set, as in Flink. The source's reader must support
        pausing splits (:class:`eventapp.source.PausableReader`)."""
        if self.max_out_of_orderness_ms is None:
            raise ConfigurationError(
                "watermark alignment needs watermarks: start from for_bounded_out_of_orderness(ms) or "
                "for_monotonous_timestamps()"
            )
        return replace(self, alignment_max_drift_ms=max_drift_ms)

    @property
    def emits_watermarks(self) -> bool:
        return self.max_out_of_orderness_ms is not None


class SplitWatermark:
    """Watermark state of one split: the largest timestamp seen, and when it was last active."""

    __slots__ = ("announced", "finished", "idle", "last_active_ms", "max_timestamp")

    def __init__(self, max_timestamp: int = MIN_TIMESTAMP, now_ms: int = 0) -> None:
        self.max_timestamp = max_timestamp
        self.last_active_ms = now_ms
        self.idle = False
        #: The split returned its last record (a bounded source): it no longer holds others back.
        self.finished = False
        #: The watermark the split's source announces (a shuffle's markers); overrides the one
        #: derived from ``max_timestamp`` when set.
        self.announced: int | None = None

    def watermark(self, bound_ms: int) -> int:
        if self.announced is not None:
            return self.announced
        if self.max_timestamp == MIN_TIMESTAMP:
            return MIN_TIMESTAMP
        return self.max_timestamp - bound_ms - 1


def combine(
    splits: Iterable[SplitWatermark], bound_ms: int, idleness_ms: int | None, now_ms: int
) -> int | None:
    """The minimum watermark over splits that are neither idle nor finished, or ``None`` when there
    is none."""
    lowest: int | None = None
    for state in splits:
        if state.finished:
            continue
        if idleness_ms is not None:
            state.idle = now_ms - state.last_active_ms >= idleness_ms
            if state.idle:
                continue
        wm = state.watermark(bound_ms)
        if lowest is None or wm < lowest:
            lowest = wm
    return lowest
