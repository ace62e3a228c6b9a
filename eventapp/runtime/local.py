"""Runs a job in this process: schedules its split tasks, drives watermarks, timers and checkpoints.

The runner owns no per-split state: each split is a :class:`~eventapp.runtime.split_task.SplitTask`
(store, position, watermark, writers, transaction), checkpointed by a
:class:`~eventapp.runtime.checkpointer.Checkpointer`. One operator chain
(:mod:`eventapp.runtime.chain`) serves every split; records carry their split through it. Splits
are fixed, or come and go as a consumer group assigns them (:mod:`eventapp.runtime.membership`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from eventapp.checkpoint.restore import RestoreRequest
from eventapp.config import CheckpointingMode
from eventapp.errors import ConfigurationError, EventAppError
from eventapp.runtime.chain import Chain, build_chain
from eventapp.runtime.checkpoint_coordinator import CheckpointCoordinator
from eventapp.runtime.checkpointer import Checkpointer
from eventapp.runtime.keyed_process import KeyedProcessOperator
from eventapp.runtime.membership import GroupMembership
from eventapp.runtime.operators import OperatorRuntime
from eventapp.runtime.split_task import SplitTask
from eventapp.runtime.stats import CheckpointStats, JobResult, RunnerStats, split_stats
from eventapp.runtime.task_setup import apply_start_positions, open_split_tasks
from eventapp.runtime.watermark_alignment import SplitPacer
from eventapp.sink import SinkContext
from eventapp.source import CommittingSource, SourceReader
from eventapp.state.store import KeyedStateStore
from eventapp.watermarks import MAX_WATERMARK, MIN_WATERMARK

if TYPE_CHECKING:
    from eventapp.stream import Job

__all__ = ["LocalRunner"]

log = structlog.get_logger("eventapp.runtime")


class LocalRunner:
    """Executes a :class:`~eventapp.Job` over some (default: all) of its source's splits."""

    def __init__(
        self,
        job: Job,
        splits: Sequence[str] | None = None,
        restore: RestoreRequest | None = None,
        *,
        group: bool = False,
        group_instance_id: str | None = None,
    ) -> None:
        if job.source_node is None:
            raise ConfigurationError(f"job {job.name!r} has no source; call job.from_source(...) first")
        self.job = job
        self.config = job.config
        self._source_node = job.source_node
        self._requested = None if splits is None else list(splits)
        self._restore = restore or RestoreRequest()
        self._strategy = self._source_node.watermarks
        self._bound = self._strategy.max_out_of_orderness_ms or 0
        self._chain: Chain = build_chain(self._source_node)
        self._membership = GroupMembership(self, group_instance_id) if group else None
        self._tasks: dict[str, SplitTask] = {}
        self._reader: SourceReader[Any] | None = None
        self._pacer: SplitPacer | None = None
        self._checkpointer: Checkpointer | None = None
        self._coordinator: CheckpointCoordinator | None = None
        self._incarnation = secrets.token_hex(4)
        self._log = log.bind(job=job.name)
        self._watermark = MIN_WATERMARK
        self._opened = False
        self._finished = False
        self._stop_requested = False
        self._stop_reason = ""
        self._drain = self._cancelled = self._checkpoint_requested = False
        self._started = 0.0
        self._restore_s = self._idle_s = 0.0  # restoring at open; waiting for input

    # --- what tests and tools read -------------------------------------------------------------------
    @property
    def splits(self) -> list[str]:
        return list(self._tasks)

    @property
    def watermark(self) -> int:
        """The task's watermark: the minimum over its active splits (what the first operator got)."""
        return self._watermark

    @property
    def finished(self) -> bool:
        return self._finished

    def store(self, split: str) -> KeyedStateStore:
        return self._tasks[split].raw_store

    def task(self, split: str) -> SplitTask:
        return self._tasks[split]

    def operator(self, uid: str) -> KeyedProcessOperator:
        for op in self._chain.keyed:
            if op.uid == uid:
                return op
        raise KeyError(uid)

    def committed_checkpoint_id(self, split: str) -> int:
        return self._tasks[split].checkpoint_id

    @property
    def checkpoints_completed(self) -> int:
        return 0 if self._coordinator is None else self._coordinator.completed

    @property
    def checkpoint_history(self) -> list[CheckpointStats]:
        """The last completed checkpoints, oldest first (bounded, see CheckpointCoordinator)."""
        return [] if self._coordinator is None else list(self._coordinator.history)

    def stats(self) -> RunnerStats:
        """What this worker reports about itself now (read in the worker's thread)."""
        elapsed = 0.0 if not self._started else time.monotonic() - self._started - self._restore_s
        watermark = None if self._watermark <= MIN_WATERMARK else self._watermark
        membership, splits = self._membership, split_stats(self._tasks.values(), self._reader)
        return RunnerStats(
            splits, watermark, max(0.0, elapsed - self._idle_s), self._idle_s, self._restore_s,
            self.checkpoints_completed, 0 if membership is None else membership.rebalances,
        )  # fmt: skip

    # --- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        if self._opened:
            return
        self._started = time.monotonic()
        source = self._source_node.source
        checkpoint = self.config.checkpoint
        if checkpoint is not None and isinstance(source, CommittingSource):
            source.validate_checkpointing(
                checkpoint.interval_ms, checkpoint.mode is CheckpointingMode.EXACTLY_ONCE
            )
        available = list(source.splits())
        assigned = available if self._requested is None else self._requested
        if self._membership is not None:
            assigned = []  # the consumer group assigns splits as it goes
        unknown = [s for s in assigned if s not in available]
        if unknown:
            raise ConfigurationError(
                f"splits {unknown} are not splits of source {source.name!r} (it has {available})"
            )
        if checkpoint is not None:
            keyed = [op.uid for op in self._chain.keyed]
            self._checkpointer = Checkpointer.for_job(self.job.name, self.config, keyed, self._incarnation)
            self._coordinator = CheckpointCoordinator(
                self.job.name, self._checkpointer, checkpoint.interval_ms, self.config.clock, self._log
            )
        restore_started = time.monotonic()
        try:
            tasks = self._open_tasks(assigned)
            self._restore_s = time.monotonic() - restore_started
            runtime = OperatorRuntime(self.job.name, self.config.clock, self._tasks)
            for op in self._chain.operators:
                op.open(runtime)
            if self._membership is not None:
                self._reader = self._membership.create_reader(source)
            else:
                start_positions = {t.id: t.position for t in tasks if t.position is not None}
                self._reader = source.create_reader(assigned, start_positions)
                apply_start_positions(self._tasks, self._reader.start_positions(), source.name)
            self._pacer = SplitPacer.create(self._strategy, self._reader, source.name)
        except BaseException:
            self._close_resources()
            raise
        self._opened = True
        if self._coordinator is not None:
            self._coordinator.restart_interval()
        self._log.info(
            "job.started",
            splits=assigned,
            backend=self.config.state_backend.name,
            checkpointing=None if checkpoint is None else checkpoint.mode.value,
            incarnation=self._incarnation,
        )

    def _open_tasks(self, splits: list[str]) -> list[SplitTask]:
        """Restore ``splits`` (fencing their previous owners) and give each its writers: at open, and
        for the splits a consumer group assigns (eventapp.runtime.membership)."""
        keyed = [op.uid for op in self._chain.keyed]
        now = self.config.clock.now_ms()
        tasks = open_split_tasks(
            self.job.name, self.config, self._source_node.source, splits, self._checkpointer,
            self._restore, now, self._log, operators=keyed,
        )  # fmt: skip
        for task in tasks:
            self._tasks[task.id] = task
            self._attach(task)
        return tasks

    def _attach(self, task: SplitTask) -> None:
        """Give ``task`` the chain head and its writers, inside its commit point's transaction."""
        transaction = None if task.commit_point is None else task.commit_point.transaction
        ctx = SinkContext(job=self.job.name, split=task.id, transaction=transaction)
        writers = [node.sink.create_writer(ctx) for node in self.job.sinks]
        dead_letter_sink = self.config.error_policy.dead_letter_sink
        dead_letter_writer = None if dead_letter_sink is None else dead_letter_sink.create_writer(ctx)
        task.attach(self._chain.head, writers, dead_letter_writer)

    def close(self) -> None:
        """Stop: close functions, writers, stores and the reader. Does not checkpoint."""
        if not self._opened:
            return
        self._opened = False
        for op in self._chain.operators:
            op.close()
        self._close_resources()
        result = self.result()
        self._log.info(
            "job.stopped",
            records=result.records_read,
            checkpoints=result.checkpoints,
            dead_letters=result.dead_letters,
        )

    def _close_resources(self) -> None:
        if self._coordinator is not None:
            self._coordinator.close()
        if self._checkpointer is not None:
            self._checkpointer.pruner.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        for task in self._tasks.values():
            task.close()

    def result(self) -> JobResult:
        return JobResult(
            records_read=sum(t.records for t in self._tasks.values()),
            dead_letters=sum(t.dead_letters for t in self._tasks.values()),
            checkpoints=self.checkpoints_completed,
            duration_s=time.monotonic() - self._started,
        )

    # --- driving -------------------------------------------------------------------------------------
    def request_stop(self, reason: str = "requested", *, drain: bool = False) -> None:
        """Ask :meth:`run` to stop after the current step, with a final checkpoint. With ``drain``
        (Flink's ``stop --drain``) the watermark first goes to +inf, so every event-time timer fires
        and its output is in that checkpoint. Safe to call from a signal handler or another thread:
        it only sets attributes (``run`` logs ``job.stop_requested``)."""
        self._stop_reason = reason
        self._drain = self._drain or drain
        self._stop_requested = True

    def request_cancel(self, reason: str = "cancelled") -> None:
        """Ask :meth:`run` to stop after the current step *without* a final checkpoint (Flink's
        cancel): what was not committed is aborted and replayed by the next run."""
        self._cancelled = True
        self.request_stop(reason)

    def request_checkpoint(self) -> None:
        """Checkpoint at the next step instead of waiting for the interval (from any thread)."""
        self._checkpoint_requested = True

    def run(
        self, max_duration_s: float | None = None, on_step: Callable[[], None] | None = None
    ) -> JobResult:
        """Run until the source is finished, :meth:`request_stop` is called or ``max_duration_s``
        passed. A stopped (not finished) job takes a final checkpoint when checkpointing is on, so
        a redeploy resumes exactly there (not when cancelled). Then close. ``on_step`` is called
        after every step (the job manager's link reports from it)."""
        self.open()
        deadline = None if max_duration_s is None else time.monotonic() + max_duration_s
        try:
            while not self._finished and not self._stop_requested:
                self.step()
                if on_step is not None:
                    on_step()
                if deadline is not None and time.monotonic() >= deadline:
                    break
            if self._stop_requested:
                self._log.info(
                    "job.stop_requested", reason=self._stop_reason, drain=self._drain, cancel=self._cancelled
                )
            if self._drain and not self._finished and not self._cancelled:
                self._emit_watermark(MAX_WATERMARK)
            if not self._finished and not self._cancelled:
                if self.config.checkpoint is not None:
                    self.checkpoint()
                else:
                    self._flush_writers()
        except EventAppError as exc:
            self._log.error("job.failed", error=str(exc), error_type=type(exc).__name__)
            raise
        finally:
            self.close()
        return self.result()

    def step(self) -> int:
        """One poll of the source plus watermark, timer and checkpoint work. Returns the number of
        records and timers handled."""
        if not self._opened:
            self.open()
        if self._finished:
            return 0
        reader = self._reader
        assert reader is not None
        polled = time.perf_counter()
        records = reader.poll(self.config.max_batch_records, self.config.poll_timeout_s)
        if not records:
            self._idle_s += time.perf_counter() - polled
        tasks = self._tasks
        assigner = self._strategy.timestamp_assigner
        source = self._source_node.name
        # Readers hand out a split's records together: process them run by run.
        start, count = 0, len(records)
        while start < count:
            split = records[start].split
            end = start + 1
            while end < count and records[end].split == split:
                end += 1
            tasks[split].process_many(
                records[start:end] if start or end < count else records, assigner, source
            )
            start = end
        now = self.config.clock.now_ms()
        handled = len(records)
        if records and self._strategy.idleness_ms is not None:
            for split in {r.split for r in records}:
                tasks[split].watermark.last_active_ms = now
        handled += self._advance_watermark(now)
        for op in self._chain.operators:
            handled += op.on_processing_time(now)
        self._cleanup_ttl()
        coordinator = self._coordinator
        if coordinator is not None and (self._checkpoint_requested or coordinator.due(now)):
            self._checkpoint_requested = False
            coordinator.checkpoint(list(tasks.values()))
        if self._membership is not None:
            self._membership.start_assigned()
        if reader.is_finished() and not records:
            self._finish()
        return handled

    def run_until_idle(self) -> int:
        """Step until a step handles nothing. Returns the total handled."""
        total = 0
        while True:
            n = self.step()
            total += n
            if n == 0:
                return total

    def _finish(self) -> None:
        """End of a bounded input: the watermark goes to +inf (every event-time timer fires, operator
        by operator), then a final checkpoint is taken if checkpointing is on. Processing-time
        timers do not fire."""
        self._emit_watermark(MAX_WATERMARK)
        if self.config.checkpoint is not None:
            self.checkpoint()
        else:
            self._flush_writers()
        self._finished = True
        self._log.info("job.finished", records=self.result().records_read)

    def _flush_writers(self) -> None:
        for task in self._tasks.values():
            task.flush_writers()

    # --- watermarks and state cleanup ----------------------------------------------------------------
    def _advance_watermark(self, now: int) -> int:
        if not self._strategy.emits_watermarks or not self._tasks:
            return 0
        reader = self._reader
        assert reader is not None
        for split in reader.finished_splits():
            self._tasks[split].watermark.finished = True
        pacer = self._pacer
        combined = pacer.combine(self._tasks.values(), now) if pacer is not None else None
        if combined is not None and combined > self._watermark:
            return self._emit_watermark(combined)
        return 0

    def _emit_watermark(self, watermark: int) -> int:
        self._watermark = watermark
        return self._chain.head.process_watermark(watermark)

    def _cleanup_ttl(self) -> None:
        for op in self._chain.keyed:
            if op.states.ttl_states():
                for task in self._tasks.values():
                    op.cleanup_expired_state(task)

    # --- checkpoints ---------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Checkpoint every split now: flush, snapshot, commit, prune (see
        :mod:`eventapp.runtime.checkpointer`)."""
        coordinator = self._coordinator
        if coordinator is None:
            raise ConfigurationError("checkpoint() needs JobConfig(checkpoint=CheckpointConfig(...))")
        coordinator.checkpoint(list(self._tasks.values()))
