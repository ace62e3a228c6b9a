"""Checkpoints and restores of split tasks: snapshot, commit, prune; open from a snapshot.

A split's checkpoint has three parts (the phases of a Flink snapshot):

* :meth:`Checkpointer.begin`, in the split's thread: fix the checkpoint's position and maximum
  timestamp and begin the state snapshot
  (:meth:`~eventapp.state.store.KeyedStateStore.begin_snapshot`: the state as it is now);
* :meth:`Checkpointer.complete`, in any thread (the splits of a worker complete in parallel; each
  step is a fault point the crash tests kill at):

  1. flush the split's writers: every output so far is durable, or inside the split's open
     transaction;
  2. write the state snapshot into a new snapshot directory and complete it with its
     :class:`~eventapp.checkpoint.meta.SnapshotMeta` (position, max timestamp, lineage);
  3. commit it through the split's commit point (for Kafka exactly-once: one transaction with those
     outputs, the offset and the checkpoint marker), then mark it committed in storage;
  4. hand the pruning of snapshots older than ``retained`` of the split's own lineage to the
     background :class:`~eventapp.runtime.pruner.SnapshotPruner`;

* :meth:`Checkpointer.finish`, in the split's thread: the checkpoint is the split's committed one.

The split does not process records between begin and finish (see
:mod:`eventapp.runtime.checkpoint_coordinator`). Until step 3 completes the previous checkpoint
stays the committed one; if any step fails, the split must restart from it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from eventapp._fs import tree_size
from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.checkpoint.meta import SnapshotMeta
from eventapp.checkpoint.storage import CheckpointStorage, snapshot_name
from eventapp.runtime.faults import fault_point
from eventapp.runtime.pruner import SnapshotPruner
from eventapp.runtime.split_task import SplitTask
from eventapp.runtime.two_phase import Prepared, TwoPhaseWriters
from eventapp.state.store import StateSnapshot

if TYPE_CHECKING:
    from eventapp.config import JobConfig

__all__ = ["Checkpointer", "PendingCheckpoint", "RestoredSnapshot"]

log = structlog.get_logger("eventapp.runtime")


class _Steps:
    """Durations (ms) of a checkpoint's steps, for its log line."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.durations[step] = round((now - self._last) * 1000, 3)
        self._last = now


@dataclass(slots=True)
class PendingCheckpoint:
    """A split's checkpoint from :meth:`Checkpointer.begin` to :meth:`Checkpointer.finish`."""

    task: SplitTask
    checkpoint_id: int
    name: str
    #: The split's position and largest timestamp when the checkpoint began.
    position: int | None
    max_timestamp: int
    state: StateSnapshot
    #: The split's state schemas when the checkpoint began (see SplitTask.schemas).
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    committed: bool = False
    #: What the split's two-phase writers wrote since the previous checkpoint (applied after commit).
    prepared: list[Prepared] = field(default_factory=list)
    #: Bytes of the snapshot's state files, once written.
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class RestoredSnapshot:
    """A snapshot a split opens from."""

    path: Path
    meta: SnapshotMeta


class Checkpointer:
    """Checkpoints split tasks of one job into checkpoint storage."""

    def __init__(
        self,
        storage: CheckpointStorage,
        job: str,
        *,
        backend: str,
        operators: Sequence[str],
        incarnation: str,
        retained: int,
    ) -> None:
        self.storage = storage
        self.job = job
        self.backend = backend
        self.operators = tuple(operators)
        self.incarnation = incarnation
        self.retained = retained
        #: Deletes what falls out of retention, off the checkpoint's pause.
        self.pruner = SnapshotPruner(storage, job, retained)

    @classmethod
    def for_job(cls, job: str, config: JobConfig, operators: Sequence[str], incarnation: str) -> Checkpointer:
        """The checkpointer of ``job`` under ``config`` (which has checkpointing on)."""
        checkpoint = config.checkpoint
        assert checkpoint is not None
        return cls(
            checkpoint.resolved_storage(),
            job,
            backend=config.state_backend.name,
            operators=operators,
            incarnation=incarnation,
            retained=checkpoint.retained,
        )

    # --- checkpoint ----------------------------------------------------------------------------------
    def checkpoint(self, task: SplitTask) -> None:
        """Checkpoint ``task`` at once (begin, complete and finish in this thread)."""
        self.finish(self.complete(self.begin(task)))

    def begin(self, task: SplitTask) -> PendingCheckpoint:
        """The synchronous part (see the module docstring)."""
        checkpoint_id = task.checkpoint_id + 1
        pending = PendingCheckpoint(
            task=task,
            checkpoint_id=checkpoint_id,
            name=snapshot_name(checkpoint_id, self.incarnation),
            position=task.position,
            max_timestamp=task.watermark.max_timestamp,
            state=task.raw_store.begin_snapshot(),
            schemas={uid: dict(states) for uid, states in task.schemas.items()},
        )
        if task.two_phase is not None:
            pending.prepared = task.two_phase.prepare(checkpoint_id)
        return pending

    def complete(self, pending: PendingCheckpoint) -> PendingCheckpoint:
        """Flush, snapshot, commit, prune (any thread). On failure the state snapshot is released and
        the error raised; the split must be restored. The duration of each step is logged with
        ``checkpoint.split_committed`` (debug)."""
        task = pending.task
        storage = self.storage
        assert task.commit_point is not None
        steps = _Steps()
        try:
            fault_point("checkpoint.before_flush")
            task.flush_writers()
            steps.done("flush_ms")
            fault_point("checkpoint.after_flush")
            name = pending.name
            directory = storage.begin(self.job, task.id, name)
            state_dir = directory / "state"
            state_dir.mkdir()
            pending.state.write(state_dir)
            TwoPhaseWriters.store(pending.prepared, directory)
            steps.done("state_ms")
            fault_point("checkpoint.after_state_snapshot")
            meta = SnapshotMeta(
                snapshot=name,
                job=self.job,
                split=task.id,
                checkpoint_id=pending.checkpoint_id,
                position=pending.position,
                max_timestamp=pending.max_timestamp,
                backend=self.backend,
                lineage=task.lineage,
                operators=self.operators,
                created_ms=int(time.time() * 1000),
                savepoint=task.savepoint,
                schemas=pending.schemas,
            )
            stored = storage.complete(self.job, task.id, name, meta.to_json())
            pending.state.stored_at(stored / "state")
            pending.size_bytes = tree_size(stored / "state")
            steps.done("complete_ms")
            fault_point("checkpoint.after_snapshot_complete")
            fault_point("checkpoint.before_commit")
            task.commit_point.commit(CommittedCheckpoint(pending.checkpoint_id, name, pending.position))
            steps.done("commit_ms")
        finally:
            pending.state.release()
        storage.mark_committed(self.job, task.id, name)
        steps.done("mark_ms")
        fault_point("checkpoint.after_commit")
        pending.committed = True
        self.pruner.committed(task, name, pending.checkpoint_id)
        if pending.prepared:
            fault_point("sink.before_commit")
            TwoPhaseWriters.commit(pending.prepared, pending.checkpoint_id)
            steps.done("sink_commit_ms")
            fault_point("sink.after_commit")
        log.debug(
            "checkpoint.split_committed",
            split=task.id,
            checkpoint_id=pending.checkpoint_id,
            snapshot=name,
            position=pending.position,
            **steps.durations,
        )
        return pending

    @staticmethod
    def finish(pending: PendingCheckpoint) -> None:
        """The checkpoint committed: make it the split's (in the split's thread)."""
        assert pending.committed, "finish() of a checkpoint that did not commit"
        pending.task.checkpoint_id = pending.checkpoint_id
        pending.task.state_bytes = pending.size_bytes

    @staticmethod
    def abandon(pending: PendingCheckpoint) -> None:
        """The checkpoint will not complete (the job stops on a failure): release its snapshot."""
        pending.state.release()

    # --- restore -------------------------------------------------------------------------------------
    def committed_snapshot(self, split: str, committed: CommittedCheckpoint) -> RestoredSnapshot:
        """The snapshot that ``committed`` names.

        :raises RestoreError: it is missing, unreadable or written by another state backend.
        """
        path, data = self.storage.open(self.job, split, committed.snapshot)
        return self._checked(path, data)

    def explicit_snapshot(self, path: Path, data: dict[str, object]) -> RestoredSnapshot:
        """A snapshot the user named with ``--from-checkpoint``."""
        return self._checked(path, data)

    def _checked(self, path: Path, data: dict[str, object]) -> RestoredSnapshot:
        meta = SnapshotMeta.from_json(path, data)
        meta.check_backend(path, self.backend)
        return RestoredSnapshot(path, meta)
