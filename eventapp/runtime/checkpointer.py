"""Checkpoints and restores of split tasks: snapshot, commit, prune; open from a snapshot.

A split's checkpoint, in order (each step is a fault point the crash tests kill at):

1. flush the split's writers (outputs are durable, or inside the split's open transaction);
2. snapshot the split's state store into a new snapshot directory and complete it with its
   :class:`~eventapp.checkpoint.meta.SnapshotMeta` (position, max timestamp, lineage);
3. commit it through the split's commit point (for Kafka exactly-once: one transaction with the
   outputs, the offset and the checkpoint marker), then mark it committed in storage;
4. prune snapshots older than ``retained`` of the split's own lineage.

Until step 3 completes the previous checkpoint stays the committed one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.checkpoint.meta import SnapshotMeta
from eventapp.checkpoint.storage import CheckpointStorage, snapshot_name
from eventapp.errors import RestoreError
from eventapp.runtime.faults import fault_point
from eventapp.runtime.split_task import SplitTask

__all__ = ["Checkpointer", "RestoredSnapshot"]

log = structlog.get_logger("eventapp.runtime")


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

    # --- checkpoint ----------------------------------------------------------------------------------
    def checkpoint(self, task: SplitTask) -> None:
        """Checkpoint ``task`` (see the module docstring)."""
        storage = self.storage
        assert task.commit_point is not None
        fault_point("checkpoint.before_flush")
        task.flush_writers()
        fault_point("checkpoint.after_flush")
        checkpoint_id = task.checkpoint_id + 1
        name = snapshot_name(checkpoint_id, self.incarnation)
        directory = storage.begin(self.job, task.id, name)
        state_dir = directory / "state"
        state_dir.mkdir()
        task.raw_store.snapshot(state_dir)
        fault_point("checkpoint.after_state_snapshot")
        meta = SnapshotMeta(
            snapshot=name,
            job=self.job,
            split=task.id,
            checkpoint_id=checkpoint_id,
            position=task.position,
            max_timestamp=task.watermark.max_timestamp,
            backend=self.backend,
            lineage=task.lineage,
            operators=self.operators,
            created_ms=int(time.time() * 1000),
        )
        storage.complete(self.job, task.id, name, meta.to_json())
        fault_point("checkpoint.after_snapshot_complete")
        fault_point("checkpoint.before_commit")
        task.commit_point.commit(CommittedCheckpoint(checkpoint_id, name, task.position))
        storage.mark_committed(self.job, task.id, name)
        task.lineages[name] = task.lineage
        fault_point("checkpoint.after_commit")
        task.checkpoint_id = checkpoint_id
        log.debug(
            "checkpoint.split_committed",
            split=task.id,
            checkpoint_id=checkpoint_id,
            snapshot=name,
            position=task.position,
        )
        self._prune(task, checkpoint_id)
        fault_point("checkpoint.after_prune")

    def _prune(self, task: SplitTask, checkpoint_id: int) -> None:
        for info in self.storage.list_snapshots(self.job, task.id):
            if info.checkpoint_id <= checkpoint_id - self.retained and self._lineage(task, info.name) == (
                task.lineage
            ):
                self.storage.delete(self.job, task.id, info.name)
                task.lineages.pop(info.name, None)

    def _lineage(self, task: SplitTask, name: str) -> str | None:
        """The lineage of snapshot ``name`` (from its metadata, read once); ``None`` if unreadable,
        which keeps it from being pruned."""
        lineage = task.lineages.get(name)
        if lineage is None:
            try:
                path, data = self.storage.open(self.job, task.id, name)
                lineage = task.lineages[name] = SnapshotMeta.from_json(path, data).lineage
            except RestoreError:
                return None
        return lineage

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
