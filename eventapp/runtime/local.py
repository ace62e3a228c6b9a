"""Runs a job in this process: schedules its split tasks, drives watermarks, timers and checkpoints.

A job's inputs (its sources, and the shuffles of its ``key_by`` nodes read back, see
:mod:`eventapp.runtime.plan`) are polled in turn; each has its own watermark
(:mod:`eventapp.runtime.inputs`).

The runner owns no per-split state: each split is a :class:`~eventapp.runtime.split_task.SplitTask`
(store, position, watermark, writers, transaction), checkpointed by a
:class:`~eventapp.runtime.checkpointer.Checkpointer`. One operator chain
(:mod:`eventapp.runtime.chain`) serves every split; records carry their split through it. Splits
are fixed, come and go as a consumer group assigns them (:mod:`eventapp.runtime.membership`), or
are added as the source discovers them (:mod:`eventapp.runtime.discovery`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from eventapp.assignment import Subtask
from eventapp.checkpoint.restore import RestoreRequest
from eventapp.config import CheckpointingMode
from eventapp.errors import ConfigurationError, EventAppError
from eventapp.runtime.checkpoint_coordinator import CheckpointCoordinator
from eventapp.runtime.discovery import SplitDiscovery, plan_discovery
from eventapp.runtime.inputs import TaskInput, TaskPlan, purge_shuffles
from eventapp.runtime.membership import GroupMembership
from eventapp.runtime.operators import OperatorRuntime
from eventapp.runtime.runner_view import RunnerView
from eventapp.runtime.split_task import SplitTask
from eventapp.runtime.stats import JobResult
from eventapp.runtime.task_setup import apply_start_positions, attach_writers, open_split_tasks
from eventapp.source import CommittingSource, GroupReader
from eventapp.watermarks import MAX_WATERMARK, MIN_WATERMARK

if TYPE_CHECKING:
    from eventapp.runtime.checkpointer import Checkpointer
    from eventapp.stream import Job

__all__ = ["LocalRunner"]


log = structlog.get_logger("eventapp.runtime")


class LocalRunner(RunnerView):
    """Executes a :class:`~eventapp.Job` over some (default: all) of its source's splits."""

    def __init__(
        self,
        job: Job,
        splits: Sequence[str] | None = None,
        restore: RestoreRequest | None = None,
        *,
        group: bool = False,
        group_instance_id: str | None = None,
        subtask: Subtask | None = None,
    ) -> None:
        if not job.source_nodes:
            raise ConfigurationError(f"job {job.name!r} has no source; call job.from_source(...) first")
        self.job = job
        self.config = job.config
        self._group = group
        self._planned: TaskPlan | None = None  # planned at open: planning reads the sources' splits
        self._requested = None if splits is None else list(splits)
        self._restore = restore or RestoreRequest()
        self._membership = GroupMembership(self, group_instance_id) if group else None
        self._subtask = subtask
        #: Per input index: the discovery of its source's new splits (eventapp.runtime.discovery).
        self._discoveries: dict[int, SplitDiscovery] = {}
        self._tasks: dict[str, SplitTask] = {}
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

    # --- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        if self._opened:
            return
        self._started = time.monotonic()
        checkpoint = self.config.checkpoint
        for node in self.job.source_nodes:  # before planning contacts any broker
            if checkpoint is not None and isinstance(node.source, CommittingSource):
                node.source.validate_checkpointing(
                    checkpoint.interval_ms, checkpoint.mode is CheckpointingMode.EXACTLY_ONCE
                )
        available = self.plan.all_splits()
        assigned = available if self._requested is None else self._requested
        if self._membership is not None:
            assigned = []  # the consumer group assigns splits as it goes
        unknown = [s for s in assigned if s not in available]
        if unknown:
            raise ConfigurationError(
                f"splits {unknown} are not splits of job {self.job.name!r} (it has {available})"
            )
        if checkpoint is not None:
            keyed = [op.uid for op in self._chain.keyed]
            coordinator = CheckpointCoordinator.for_job(
                self.job.name, self.config, keyed, self._incarnation, self._log
            )
            self._coordinator, self._checkpointer = coordinator, coordinator.checkpointer
        restore_started = time.monotonic()
        try:
            self._open_tasks(assigned)
            self._restore_s = time.monotonic() - restore_started
            runtime = OperatorRuntime(self.job.name, self.config.clock, self._tasks)
            for op in self._chain.operators:
                op.open(runtime)
            if self._membership is not None:
                self._inputs[0].use_reader(self._membership.create_reader(self._inputs[0].source))
            else:
                self._discoveries = plan_discovery(
                    self._inputs, self.plan, self._subtask, explicit=self._requested is not None,
                    now_ms=self.config.clock.now_ms(), job=self.job.name, log=self._log,
                )  # fmt: skip
                for index, put in enumerate(self._inputs):
                    if put.splits or index in self._discoveries:
                        put.open_reader(self._tasks)
                    else:
                        put.finished = True  # this worker reads none of its splits
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

    def _discover(self, now: int) -> None:
        for index, discovery in self._discoveries.items():
            if new := discovery.new_splits(self._inputs[index], now):
                self.start_splits(index, new)

    def start_splits(self, index: int, splits: list[str]) -> list[SplitTask]:
        """Open ``splits`` of input ``index`` while running (a consumer group assigned them, or the
        source discovered them): restore each from its committed checkpoint, then start reading
        it there (or where its reader says)."""
        put = self._inputs[index]
        reader = put.reader
        if not isinstance(reader, GroupReader):
            raise ConfigurationError(
                f"source {put.source.name!r} gained splits {splits} while running, but its reader "
                f"{type(reader).__name__} cannot take new splits (it is not a GroupReader)"
            )
        tasks = self._open_tasks(splits, index)
        for task in tasks:
            for op in self._chain.operators:
                op.split_added(task)
        positions = reader.start_splits({t.id: t.position for t in tasks})
        apply_start_positions(self._tasks, positions, put.source.name)
        return tasks

    def _open_tasks(self, splits: list[str], into: int | None = None) -> list[SplitTask]:
        """Restore ``splits`` (fencing their previous owners) and give each its writers: at open,
        and for the splits added while running (:meth:`start_splits`; ``into``: their input, for
        splits the plan did not list)."""
        keyed = [op.uid for op in self._chain.keyed]
        now = self.config.clock.now_ms()
        tasks: list[SplitTask] = []
        for index, put in enumerate(self._inputs):
            own = [s for s in splits if (into if into is not None else self.plan.input_of(s)) == index]
            if not own:
                continue
            opened = open_split_tasks(
                self.job.name, self.config, put.source, own, self._checkpointer,
                self._restore, now, self._log, operators=keyed,
            )  # fmt: skip
            put.splits.extend(s for s in own if s not in put.splits)
            for task in opened:
                self._tasks[task.id] = task
                attach_writers(task, put.head, self.job.name, self.config, self.plan.sinks)
            tasks.extend(opened)
        return tasks

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
        for put in self._inputs:
            put.close()
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
        """One poll of each input plus watermark, timer and checkpoint work. Returns the number of
        records and timers handled."""
        if not self._opened:
            self.open()
        if self._finished:
            return 0
        tasks = self._tasks
        handled = 0
        polled_any = False
        exhausted: list[TaskInput] = []
        inputs = self._inputs
        last = len(inputs) - 1
        for index, put in enumerate(inputs):
            if put.finished:
                continue
            # Wait for records only on the last input, and only if no other had any.
            timeout = self.config.poll_timeout_s if index == last and not polled_any else 0.0
            polled = time.perf_counter()
            records = put.poll(self.config.max_batch_records, timeout)
            if not records:
                if timeout:
                    self._idle_s += time.perf_counter() - polled
                if put.is_exhausted():
                    exhausted.append(put)
                continue
            polled_any = True
            handled += len(records)
            put.process(records, tasks, self.config.clock)
        now = self.config.clock.now_ms()
        for put in inputs:
            handled += self._advance_watermark(put, now)
        for op in self._chain.operators:
            handled += op.on_processing_time(now)
        self._cleanup_ttl()
        if (coordinator := self._coordinator) is not None:
            completed = coordinator.completed
            coordinator.poll()  # settles an asynchronous checkpoint that completed meanwhile
            if self._checkpoint_requested or coordinator.due(now):
                self._checkpoint_requested = False
                coordinator.trigger(list(tasks.values()))
            if coordinator.completed != completed:  # shuffles drop what their splits committed as read
                purge_shuffles(self._inputs, self._tasks)
        if self._membership is not None:
            self._membership.start_assigned()
        if self._discoveries:
            self._discover(now)
        for put in exhausted:
            self._finish_input(put)
        if all(put.finished for put in inputs) and not self._finished:
            self._finish()
        return handled

    def run_until_idle(self) -> int:
        """Step until a step handles nothing. Returns the total handled."""
        total = n = self.step()
        while n:
            total += (n := self.step())
        return total

    def _finish_input(self, put: TaskInput) -> None:
        """End of a bounded input: its watermark goes to +inf (every event-time timer it feeds fires,
        operator by operator; a shuffle it writes is told), then its splits take a checkpoint if
        checkpointing is on (so what they wrote into a shuffle becomes readable), else flush."""
        put.emit_watermark(MAX_WATERMARK)
        put.finished = True
        own = [self._tasks[s] for s in put.splits if s in self._tasks]
        if len(self._inputs) == 1:
            return  # the job's final checkpoint follows
        if self._coordinator is not None:
            self._checkpoint_tasks(self._coordinator, own)
        else:
            for task in own:
                task.flush_writers()
        self._log.info("job.input_finished", input=put.name, splits=put.splits)

    def _finish(self) -> None:
        """Every input is finished: a final checkpoint is taken if checkpointing is on.
        Processing-time timers do not fire."""
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
    def _advance_watermark(self, put: TaskInput, now: int) -> int:
        combined = put.combined_watermark(self._tasks, now)
        if combined is not None and combined > put.watermark:
            return put.emit_watermark(combined)
        return 0

    def _emit_watermark(self, watermark: int) -> int:
        """Every input's watermark to ``watermark`` (a drain's +inf)."""
        self._watermark = watermark
        return sum(put.emit_watermark(watermark) for put in self._inputs if watermark > put.watermark)

    def _cleanup_ttl(self) -> None:
        for op in self._chain.keyed:
            if op.states.ttl_states():
                for task in self._tasks.values():
                    op.cleanup_expired_state(task)

    # --- checkpoints ---------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Checkpoint every split now and wait for it (see :mod:`eventapp.runtime.checkpointer`)."""
        if (coordinator := self._coordinator) is None:
            raise ConfigurationError("checkpoint() needs JobConfig(checkpoint=CheckpointConfig(...))")
        self._checkpoint_tasks(coordinator, list(self._tasks.values()))

    def _checkpoint_tasks(self, coordinator: CheckpointCoordinator, tasks: list[SplitTask]) -> None:
        """Checkpoint ``tasks``, then let the shuffles drop what their splits committed as read."""
        coordinator.checkpoint(tasks)
        purge_shuffles(self._inputs, self._tasks)
