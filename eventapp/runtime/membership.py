"""A worker in a consumer group (``eventapp run JOB --group``): splits come and go at runtime.

The runner's :class:`~eventapp.source.SplitListener`. The group reader
(:class:`~eventapp.connectors.kafka.group_reader.KafkaGroupReader`) calls it from inside its
``poll``, in the worker's thread, between two steps (no record is half processed):

* **assigned**: the splits are remembered; after ``poll`` returns, :meth:`start_assigned` restores
  them (their commit points fence the previous owners, their state is read from the committed
  checkpoint, their schemas are reconciled with the running operators), then the reader starts
  them at their restored positions. Their partitions stay paused until then;
* **revoked**: the splits are checkpointed now (flush, snapshot, commit: their next owner restores
  exactly this), then closed. A failed checkpoint closes them without committing: the next owner
  restores the previous checkpoint, and what this worker wrote since is aborted with the
  transaction (Quix's fix for the same case). A revoke while the runner is closing (the consumer
  leaves the group in ``close()``) commits nothing: the final checkpoint, if any, is already taken;
* **lost**: the splits are closed without committing (another member may own them already).

The time a revoke takes is logged (``group.splits_released``); it must stay well under
``max.poll.interval.ms``, which is why a revoke checkpoints only the revoked splits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from eventapp.errors import ConfigurationError, EventAppError
from eventapp.source import GroupReader, GroupSource, SourceReader

if TYPE_CHECKING:
    from eventapp.runtime.local import LocalRunner

__all__ = ["GroupMembership"]

log = structlog.get_logger("eventapp.runtime")


class GroupMembership:
    """See the module docstring."""

    def __init__(self, runner: LocalRunner, instance_id: str | None = None) -> None:
        self._runner = runner
        self._instance_id = instance_id
        self._assigned: list[str] = []
        self._reader: GroupReader[Any] | None = None
        #: Rebalances seen (assigned, revoked or lost calls), for the job manager's metrics.
        self.rebalances = 0

    def create_reader(self, source: object) -> SourceReader[Any]:
        if not isinstance(source, GroupSource):
            raise ConfigurationError(
                f"--group: source {getattr(source, 'name', source)!r} does not let a consumer group assign "
                f"its splits; use a KafkaSource with KafkaSourceConfig(group_assignment=True)"
            )
        self._reader = source.create_group_reader(self, self._instance_id)
        return self._reader

    # --- SplitListener ---------------------------------------------------------------------------
    def splits_assigned(self, splits: Sequence[str]) -> None:
        self.rebalances += 1
        self._assigned.extend(s for s in splits if s not in self._assigned)

    def splits_revoked(self, splits: Sequence[str]) -> None:
        self.rebalances += 1
        self._release(splits, commit=self._runner._opened)

    def splits_lost(self, splits: Sequence[str]) -> None:
        self.rebalances += 1
        self._release(splits, commit=False)

    # --- the runner's side -------------------------------------------------------------------------
    def start_assigned(self) -> None:
        """Restore the splits assigned during the last poll and start reading them."""
        if not self._assigned:
            return
        splits, self._assigned = self._assigned, []
        runner = self._runner
        began = time.perf_counter()
        tasks = runner.start_splits(0, splits)
        runner._log.info(
            "group.splits_started",
            splits=splits,
            positions={t.id: t.position for t in tasks},
            restore_ms=round((time.perf_counter() - began) * 1000, 3),
        )

    def _release(self, splits: Sequence[str], *, commit: bool) -> None:
        runner = self._runner
        self._assigned = [s for s in self._assigned if s not in splits]  # never started: nothing held
        tasks = [runner._tasks[s] for s in splits if s in runner._tasks]
        if not tasks:
            return
        began = time.perf_counter()
        committed = False
        if runner._coordinator is not None:
            runner._coordinator.settle()  # fails the job if it fails: it was every split's checkpoint
        if commit:
            try:
                if runner._coordinator is not None:
                    runner._coordinator.checkpoint(tasks)
                else:
                    for task in tasks:
                        task.flush_writers()
                committed = True
            except EventAppError as exc:
                runner._log.warning(
                    "group.release_checkpoint_failed",
                    splits=[t.id for t in tasks],
                    error=f"{type(exc).__name__}: {exc}",
                    hint="released without committing: the next owner restores the previous checkpoint",
                )
        for task in tasks:
            del runner._tasks[task.id]
            for op in runner._chain.operators:
                op.forget_split(task.id)
            if runner._pacer is not None:
                runner._pacer.paused.discard(task.id)
            task.close()
        runner._log.info(
            "group.splits_released",
            splits=[t.id for t in tasks],
            committed=committed,
            checkpoint_ids={t.id: t.checkpoint_id for t in tasks},
            duration_ms=round((time.perf_counter() - began) * 1000, 3),
        )
