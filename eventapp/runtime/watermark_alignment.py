"""The worker's watermark over its splits, and split-level watermark alignment.

The combined watermark is the minimum over the splits that are not idle (see
:mod:`eventapp.watermarks`). With ``WatermarkStrategy.with_watermark_alignment(max_drift_ms)`` a
split whose watermark is more than ``max_drift_ms`` ahead of the combined watermark is paused at
the reader until the others catch up (Flink FLIP-182/217, here among one worker's splits; aligning
across workers needs the job manager of issue 9). A paused split is never counted as idle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from eventapp.errors import ConfigurationError
from eventapp.runtime.split_task import SplitTask
from eventapp.source import PausableReader, SourceReader
from eventapp.watermarks import WatermarkStrategy, combine

__all__ = ["SplitPacer"]

log = structlog.get_logger("eventapp.runtime")


class SplitPacer:
    """Computes the combined watermark and pauses/resumes splits that drift ahead of it."""

    def __init__(self, strategy: WatermarkStrategy[Any], reader: PausableReader | None) -> None:
        self._bound = strategy.max_out_of_orderness_ms or 0
        self._idleness = strategy.idleness_ms
        self._max_drift = strategy.alignment_max_drift_ms
        self._reader = reader
        self.paused: set[str] = set()

    @classmethod
    def create(cls, strategy: WatermarkStrategy[Any], reader: SourceReader[Any], source: str) -> SplitPacer:
        if strategy.alignment_max_drift_ms is None:
            return cls(strategy, None)
        if not isinstance(reader, PausableReader):
            raise ConfigurationError(
                f"watermark alignment needs a source whose reader can pause splits; the reader of "
                f"source {source!r} ({type(reader).__name__}) cannot: remove with_watermark_alignment()"
            )
        return cls(strategy, reader)

    def combine(self, tasks: Iterable[SplitTask], now_ms: int) -> int | None:
        """The combined watermark (``None`` when every split is idle); pauses or resumes splits."""
        tasks = list(tasks)
        if self.paused:
            for task in tasks:
                if task.id in self.paused:
                    task.watermark.last_active_ms = now_ms  # waiting, not idle
        combined = combine((t.watermark for t in tasks), self._bound, self._idleness, now_ms)
        if self._reader is not None and self._max_drift is not None and combined is not None:
            self._align(tasks, combined + self._max_drift)
        return combined

    def _align(self, tasks: list[SplitTask], limit: int) -> None:
        ahead = {
            t.id
            for t in tasks
            if not (t.watermark.idle or t.watermark.finished) and t.watermark.watermark(self._bound) > limit
        }
        pause = ahead - self.paused
        resume = self.paused - ahead
        if pause or resume:
            assert self._reader is not None
            self._reader.pause_or_resume(sorted(pause), sorted(resume))
            self.paused = ahead
            log.debug("watermark.alignment", paused=sorted(pause), resumed=sorted(resume), limit=limit)
