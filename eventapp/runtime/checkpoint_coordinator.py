"""Triggers a worker's checkpoints and sees them through (Flink's ``CheckpointCoordinator``, for the
split tasks of one worker).

Every ``interval_ms`` (from the start of one checkpoint to the start of the next, as in Flink) the
coordinator checkpoints every split of the worker: the synchronous part of each split's
checkpoint runs in the worker's thread (:meth:`Checkpointer.begin`), the rest in a thread pool, one
split per thread (the splits are independent, and their checkpoints wait mostly on I/O that
releases the GIL: fsync, broker round trips), while the worker waits. Then each split's checkpoint
is finished in the worker's thread. If a split's checkpoint fails, every other split's still ends,
and the most telling error is raised (:func:`~eventapp.runtime.task_setup.raise_most_telling`).

The worker waits rather than processing on while the checkpoint completes: measured on the card
workload of ``benchmarks.bench_kafka``, overlapping them (outputs held back until the commit) made
the checkpoint threads and the processing thread fight for the GIL, and cost 10-25 % of the
throughput for a shorter stop (``docs/design.md``, "Checkpoints").

``checkpoint.completed`` carries ``pause_ms``: how long the splits stopped processing. The last
:data:`HISTORY` checkpoints are kept as :class:`~eventapp.runtime.stats.CheckpointStats` (the
job manager's checkpoint history).
"""

from __future__ import annotations

import contextvars
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from eventapp.clock import Clock
from eventapp.runtime.checkpointer import Checkpointer
from eventapp.runtime.split_task import SplitTask
from eventapp.runtime.stats import CheckpointStats
from eventapp.runtime.task_setup import raise_most_telling

__all__ = ["CheckpointCoordinator"]

#: At most this many splits of a worker are checkpointed at the same time.
MAX_PARALLEL_SPLITS = 16
#: Completed checkpoints kept in :attr:`CheckpointCoordinator.history`.
HISTORY = 32


class CheckpointCoordinator:
    """Checkpoints of one worker's split tasks (see the module docstring)."""

    def __init__(
        self, job: str, checkpointer: Checkpointer, interval_ms: int, clock: Clock, log: Any
    ) -> None:
        self._job = job
        self._checkpointer = checkpointer
        self._interval_ms = interval_ms
        self._clock = clock
        self._log = log
        self._pool: ThreadPoolExecutor | None = None
        self._last_trigger_ms = clock.now_ms()
        #: Checkpoints completed so far.
        self.completed = 0
        #: The last HISTORY completed checkpoints, oldest first.
        self.history: deque[CheckpointStats] = deque(maxlen=HISTORY)

    def restart_interval(self) -> None:
        """Count the interval from now (the worker just opened)."""
        self._last_trigger_ms = self._clock.now_ms()

    def due(self, now_ms: int) -> bool:
        return now_ms - self._last_trigger_ms >= self._interval_ms

    def checkpoint(self, tasks: Sequence[SplitTask]) -> None:
        """Checkpoint every split in ``tasks`` and wait until each committed."""
        started = time.perf_counter()
        triggered_ms = int(time.time() * 1000)
        self._last_trigger_ms = self._clock.now_ms()
        if not tasks:  # a group member that owns no split right now: nothing to write
            self.completed += 1
            return
        checkpointer = self._checkpointer
        pending = [checkpointer.begin(task) for task in tasks]
        if len(pending) == 1:
            checkpointer.complete(pending[0])
        elif pending:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=min(len(pending), MAX_PARALLEL_SPLITS),
                    thread_name_prefix=f"eventapp-checkpoint-{self._job}",
                )
            # Each runs in a copy of this thread's context, so its log lines keep the bound context.
            futures = [
                self._pool.submit(contextvars.copy_context().run, checkpointer.complete, p) for p in pending
            ]
            wait(futures)
            errors = [future.exception() for future in futures]
            if any(errors):
                for p in pending:
                    checkpointer.abandon(p)
                raise_most_telling(errors)
        for p in pending:
            checkpointer.finish(p)
        self.completed += 1
        pause_ms = round((time.perf_counter() - started) * 1000, 3)
        self.history.append(
            CheckpointStats(
                checkpoint_ids={p.task.id: p.checkpoint_id for p in pending},
                triggered_ms=triggered_ms,
                duration_ms=pause_ms,
                pause_ms=pause_ms,
                size_bytes=sum(p.size_bytes for p in pending),
            )
        )
        self._log.info(
            "checkpoint.completed",
            splits=len(pending),
            checkpoint_ids=sorted({p.checkpoint_id for p in pending}),
            pause_ms=pause_ms,
            duration_ms=pause_ms,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
