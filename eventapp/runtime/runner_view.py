"""What tests and tools read from a running :class:`~eventapp.runtime.local.LocalRunner`: its
splits, stores, operators, checkpoints and stats (the runner's read side; it changes nothing)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from eventapp.graph import SourceNode
from eventapp.runtime.chain import Chain
from eventapp.runtime.checkpoint_coordinator import CheckpointCoordinator
from eventapp.runtime.inputs import TaskInput, TaskPlan
from eventapp.runtime.keyed_process import KeyedProcessOperator
from eventapp.runtime.membership import GroupMembership
from eventapp.runtime.plan import JobPlan
from eventapp.runtime.split_task import SplitTask
from eventapp.runtime.stats import CheckpointStats, RunnerStats, split_stats
from eventapp.runtime.watermark_alignment import SplitPacer
from eventapp.source import SourceReader
from eventapp.state.store import KeyedStateStore
from eventapp.watermarks import MIN_WATERMARK

if TYPE_CHECKING:
    from eventapp.stream import Job

__all__ = ["RunnerView"]


class RunnerView:
    """The read side of a runner; the runner sets these attributes."""

    job: Job
    _group: bool
    _planned: TaskPlan | None
    _tasks: dict[str, SplitTask]
    _coordinator: CheckpointCoordinator | None
    _membership: GroupMembership | None
    _watermark: int
    _finished: bool
    _started: float
    _restore_s: float
    _idle_s: float

    # --- what tests and tools read -------------------------------------------------------------------
    @property
    def splits(self) -> list[str]:
        return list(self._tasks)

    @property
    def watermark(self) -> int:
        """The task's watermark: the minimum over its inputs that have splits (for one input, the
        minimum over its active splits: what the first operator got)."""
        marks = [i.watermark for i in self._inputs if i.splits]
        return min(marks) if marks else self._watermark

    @property
    def plan(self) -> JobPlan:
        return self._plan_job().plan

    @property
    def _chain(self) -> Chain:
        return self._plan_job().chain

    @property
    def _inputs(self) -> list[TaskInput]:
        return self._plan_job().inputs

    @property
    def _source_node(self) -> SourceNode:
        return self._plan_job().plan.inputs[0]

    def _plan_job(self) -> TaskPlan:
        planned = self._planned
        if planned is None:
            planned = self._planned = TaskPlan.create(self.job, group=self._group)
        return planned

    @property
    def _reader(self) -> SourceReader[Any] | None:
        return self._inputs[0].reader

    @property
    def _pacer(self) -> SplitPacer | None:
        return self._inputs[0].pacer

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
    def checkpoint_in_flight(self) -> bool:
        """An asynchronous checkpoint has begun and not settled yet."""
        return self._coordinator is not None and self._coordinator.in_flight

    @property
    def checkpoint_history(self) -> list[CheckpointStats]:
        """The last completed checkpoints, oldest first (bounded, see CheckpointCoordinator)."""
        return [] if self._coordinator is None else list(self._coordinator.history)

    def stats(self) -> RunnerStats:
        """What this worker reports about itself now (read in the worker's thread)."""
        elapsed = 0.0 if not self._started else time.monotonic() - self._started - self._restore_s
        watermark = None if self.watermark <= MIN_WATERMARK else self.watermark
        membership = self._membership
        splits = tuple(
            row
            for put in self._inputs
            for row in split_stats((self._tasks[s] for s in put.splits if s in self._tasks), put.reader)
        )
        return RunnerStats(
            splits, watermark, max(0.0, elapsed - self._idle_s), self._idle_s, self._restore_s,
            self.checkpoints_completed, 0 if membership is None else membership.rebalances,
        )  # fmt: skip
