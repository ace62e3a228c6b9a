"""Triggers a worker's checkpoints and sees them through (Flink's ``CheckpointCoordinator``, for the
split tasks of one worker).

Every ``interval_ms`` (from the start of one checkpoint to the start of the next, as in Flink) the
coordinator checkpoints every split of the worker: the synchronous part of each split's
checkpoint runs in the worker's thread (:meth:`Checkpointer.begin`), the rest in a thread pool, one
split per thread (the splits are independent, and their checkpoints wait mostly on I/O that
releases the GIL: fsync, uploads, broker round trips). Then each split's checkpoint is finished in
the worker's thread. If a split's checkpoint fails, every other split's still ends, and the most
telling error is raised (:func:`~eventapp.runtime.task_setup.raise_most_telling`).

Two ways to wait for the rest (``CheckpointConfig.asynchronous``):

* **Synchronous**: the worker waits. Measured on the card workload of ``benchmarks.bench_kafka``
  (local disk, Kafka exactly-once), overlapping made the checkpoint threads and the processing
  thread fight for the GIL and cost 10-25 % of the throughput (``docs/design.md``, "Checkpoints").
* **Asynchronous** (Flink's asynchronous snapshot phase; the default on object storage, whose
  uploads are long and wait on the network): the worker goes on processing while the rest
  completes; each split holds its outputs meanwhile (:meth:`SplitTask.hold_outputs`) and writes
  them once its checkpoint committed. At most one checkpoint is in flight (Flink's
  ``max-concurrent-checkpoints: 1``): the next one is due only after it settled, and an explicit
  :meth:`CheckpointCoordinator.checkpoint` or :meth:`close` waits for it first. Once the splits
  hold ``CheckpointConfig.max_held_outputs`` outputs, :meth:`poll` waits for it too
  (back-pressure, logged as ``checkpoint.backpressure``). A failure is raised from :meth:`poll` in
  the worker's thread, as if it had waited.

``checkpoint.completed`` carries ``pause_ms``: how long the splits stopped processing (for an
asynchronous checkpoint: its synchronous part, any wait for it to complete, and writing the held
outputs). The last
:data:`HISTORY` checkpoints are kept as :class:`~eventapp.runtime.stats.CheckpointStats` (the
job manager's checkpoint history).
"""

from __future__ import annotations

import contextvars
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventapp.clock import Clock
from eventapp.runtime.checkpointer import Checkpointer, PendingCheckpoint
from eventapp.runtime.faults import fault_point
from eventapp.runtime.split_task import SplitTask
from eventapp.runtime.stats import CheckpointStats
from eventapp.runtime.task_setup import raise_most_telling

if TYPE_CHECKING:
    from eventapp.config import JobConfig

__all__ = ["CheckpointCoordinator"]

#: At most this many splits of a worker are checkpointed at the same time.
MAX_PARALLEL_SPLITS = 16
#: Completed checkpoints kept in :attr:`CheckpointCoordinator.history`.
HISTORY = 32


@dataclass(slots=True)
class _InFlight:
    """An asynchronous checkpoint between its synchronous part and its settlement."""

    pending: list[PendingCheckpoint]
    futures: list[Future[PendingCheckpoint]]
    started: float
    triggered_ms: int
    #: Time the splits stopped for the synchronous part (ms).
    begin_ms: float


class CheckpointCoordinator:
    """Checkpoints of one worker's split tasks (see the module docstring)."""

    def __init__(
        self,
        job: str,
        checkpointer: Checkpointer,
        interval_ms: int,
        clock: Clock,
        log: Any,
        *,
        asynchronous: bool = False,
        max_held_outputs: int = 100_000,
    ) -> None:
        self._job = job
        self.checkpointer = self._checkpointer = checkpointer
        self._interval_ms = interval_ms
        self._clock = clock
        self._log = log
        self.asynchronous = asynchronous
        self._max_held_outputs = max_held_outputs
        self._pool: ThreadPoolExecutor | None = None
        self._last_trigger_ms = clock.now_ms()
        self._in_flight: _InFlight | None = None
        #: Checkpoints completed so far.
        self.completed = 0
        #: The last HISTORY completed checkpoints, oldest first.
        self.history: deque[CheckpointStats] = deque(maxlen=HISTORY)

    @classmethod
    def for_job(
        cls, job: str, config: JobConfig, operators: Sequence[str], incarnation: str, log: Any
    ) -> CheckpointCoordinator:
        """The coordinator (and checkpointer) of ``job`` under ``config`` (checkpointing on)."""
        checkpoint = config.checkpoint
        assert checkpoint is not None
        checkpointer = Checkpointer.for_job(job, config, operators, incarnation)
        asynchronous = checkpoint.resolved_asynchronous(checkpointer.storage)
        return cls(
            job,
            checkpointer,
            checkpoint.interval_ms,
            config.clock,
            log,
            asynchronous=asynchronous,
            max_held_outputs=checkpoint.max_held_outputs,
        )

    def restart_interval(self) -> None:
        """Count the interval from now (the worker just opened)."""
        self._last_trigger_ms = self._clock.now_ms()

    def due(self, now_ms: int) -> bool:
        """A checkpoint is due: the interval passed and none is in flight."""
        return self._in_flight is None and now_ms - self._last_trigger_ms >= self._interval_ms

    @property
    def in_flight(self) -> bool:
        """An asynchronous checkpoint has begun and not settled yet."""
        return self._in_flight is not None

    def trigger(self, tasks: Sequence[SplitTask]) -> bool:
        """Begin a checkpoint of ``tasks``: asynchronous if so configured (returns ``False``, it
        settles in a later :meth:`poll`), else like :meth:`checkpoint` (returns ``True``)."""
        if not self.asynchronous or not tasks:
            self.checkpoint(tasks)
            return True
        self.settle()
        started = time.perf_counter()
        triggered_ms = int(time.time() * 1000)
        self._last_trigger_ms = self._clock.now_ms()
        pending = self._begin(tasks)
        for p in pending:
            p.task.hold_outputs()
        futures = self._submit(pending)
        begin_ms = (time.perf_counter() - started) * 1000
        self._in_flight = _InFlight(pending, futures, started, triggered_ms, begin_ms)
        return False

    def poll(self) -> bool:
        """Settle the checkpoint in flight if it has completed, or wait for it if the splits hold
        ``max_held_outputs`` outputs or more (back-pressure). Returns whether one settled.

        :raises EventAppError: it failed (the splits must be restored from their committed ones).
        """
        flight = self._in_flight
        if flight is None:
            return False
        if not all(f.done() for f in flight.futures):
            held = sum(p.task.holding_outputs or 0 for p in flight.pending)
            if held < self._max_held_outputs:
                fault_point("async_checkpoint.in_flight")  # the splits process, their outputs held
                return False
            self._log.info(
                "checkpoint.backpressure",
                held_outputs=held,
                max_held_outputs=self._max_held_outputs,
                checkpoint_ids=sorted({p.checkpoint_id for p in flight.pending}),
            )
        self.settle()
        return True

    def settle(self) -> None:
        """Wait for the checkpoint in flight, if any, and settle it: finish each split's checkpoint
        and write its held outputs, or raise the failure (the held outputs are dropped: they belong
        to what the splits redo from their committed checkpoints)."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return
        waiting = time.perf_counter()
        wait(flight.futures)
        waited_ms = (time.perf_counter() - waiting) * 1000  # the splits stopped for it
        errors = [future.exception() for future in flight.futures]
        if any(errors):
            for p in flight.pending:
                self._checkpointer.abandon(p)
                p.task.release_outputs(write=False)
            raise_most_telling(errors)
        fault_point("async_checkpoint.before_release")  # committed; the held outputs not written
        released = time.perf_counter()
        held = 0
        for p in flight.pending:
            self._checkpointer.finish(p)
            held += p.task.release_outputs()
        release_ms = (time.perf_counter() - released) * 1000
        duration_ms = round((time.perf_counter() - flight.started) * 1000, 3)
        parts = {"begin_ms": round(flight.begin_ms, 3), "waited_ms": round(waited_ms, 3)}
        parts |= {"release_ms": round(release_ms, 3), "held_outputs": held}
        pause_ms = flight.begin_ms + waited_ms + release_ms
        self._completed(flight.pending, flight.triggered_ms, duration_ms, pause_ms, parts)

    def checkpoint(self, tasks: Sequence[SplitTask]) -> None:
        """Checkpoint every split in ``tasks`` and wait until each committed (after settling the
        checkpoint in flight, if any)."""
        self.settle()
        started = time.perf_counter()
        triggered_ms = int(time.time() * 1000)
        self._last_trigger_ms = self._clock.now_ms()
        if not tasks:  # a group member that owns no split right now: nothing to write
            self.completed += 1
            return
        checkpointer = self._checkpointer
        pending = self._begin(tasks)
        if len(pending) == 1:
            checkpointer.complete(pending[0])
        else:
            futures = self._submit(pending)
            wait(futures)
            errors = [future.exception() for future in futures]
            if any(errors):
                for p in pending:
                    checkpointer.abandon(p)
                raise_most_telling(errors)
        for p in pending:
            checkpointer.finish(p)
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        self._completed(pending, triggered_ms, duration_ms, duration_ms, None)

    def _begin(self, tasks: Sequence[SplitTask]) -> list[PendingCheckpoint]:
        return [self._checkpointer.begin(task) for task in tasks]

    def _submit(self, pending: Sequence[PendingCheckpoint]) -> list[Future[PendingCheckpoint]]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=MAX_PARALLEL_SPLITS, thread_name_prefix=f"eventapp-checkpoint-{self._job}"
            )
        # Each runs in a copy of this thread's context, so its log lines keep the bound context.
        complete = self._checkpointer.complete
        return [self._pool.submit(contextvars.copy_context().run, complete, p) for p in pending]

    def _completed(
        self,
        pending: Sequence[PendingCheckpoint],
        triggered_ms: int,
        duration_ms: float,
        pause_ms: float,
        asynchronous: dict[str, float] | None,
    ) -> None:
        """Count and log a settled checkpoint (``asynchronous``: its parts, if it was)."""
        self.completed += 1
        pause_ms = round(pause_ms, 3)
        self.history.append(
            CheckpointStats(
                checkpoint_ids={p.task.id: p.checkpoint_id for p in pending},
                triggered_ms=triggered_ms,
                duration_ms=duration_ms,
                pause_ms=pause_ms,
                size_bytes=sum(p.size_bytes for p in pending),
                asynchronous=asynchronous is not None,
            )
        )
        extra = {} if asynchronous is None else {"asynchronous": True, **asynchronous}
        self._log.info(
            "checkpoint.completed",
            splits=len(pending),
            checkpoint_ids=sorted({p.checkpoint_id for p in pending}),
            pause_ms=pause_ms,
            duration_ms=duration_ms,
            **extra,
        )

    def close(self) -> None:
        """Wait for the checkpoint in flight (a failure is logged: the splits close, and restart
        from their committed checkpoints), then stop the pool."""
        try:
            self.settle()
        except Exception as exc:  # noqa: BLE001 - closing anyway; the failure is logged
            self._log.warning(
                "checkpoint.failed_at_close", error=f"{type(exc).__name__}: {exc}",
                hint="the splits restart from their last committed checkpoints",
            )  # fmt: skip
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
