"""Deletes the snapshots that fell out of retention, in one background thread (off the checkpoint's
pause: listing a split's snapshots and deleting the oldest cost ~3.5 ms per split and checkpoint).

After a split's checkpoint committed, its snapshots of the split's own lineage with an id ``<=
committed id - retained`` are deleted (default: the last 2 are kept). Only the committed
checkpoint's owner prunes, after its commit, which a fenced zombie never makes; another lineage's
snapshots are never touched (see ``docs/exactly-once.md``, "Refusal rules"). A prune that fails
is logged (``checkpoint.prune_failed``) and retried with the next checkpoint: it costs disk space,
never state.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import structlog

from eventapp.checkpoint.meta import SnapshotMeta
from eventapp.checkpoint.storage import CheckpointStorage
from eventapp.errors import EventAppError, RestoreError
from eventapp.runtime.faults import fault_point
from eventapp.runtime.split_task import SplitTask

__all__ = ["SnapshotPruner"]

log = structlog.get_logger("eventapp.runtime")


@dataclass(frozen=True, slots=True)
class _Committed:
    task: SplitTask
    name: str
    checkpoint_id: int


class SnapshotPruner:
    """Prunes the snapshots of a worker's splits (see the module docstring)."""

    def __init__(self, storage: CheckpointStorage, job: str, retained: int) -> None:
        self._storage = storage
        self._job = job
        self._retained = retained
        self._queue: queue.SimpleQueue[_Committed | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def committed(self, task: SplitTask, name: str, checkpoint_id: int) -> None:
        """Snapshot ``name`` of ``task`` was committed: prune behind it (soon, in the background)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"eventapp-prune-{self._job}", daemon=True
                )
                self._thread.start()
        self._queue.put(_Committed(task, name, checkpoint_id))

    def close(self) -> None:
        """Finish the prunes asked for so far and stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._prune(item)
            except (OSError, EventAppError) as exc:
                log.warning(
                    "checkpoint.prune_failed",
                    split=item.task.id,
                    checkpoint_id=item.checkpoint_id,
                    error=f"{type(exc).__name__}: {exc}",
                )
            fault_point("checkpoint.after_prune")

    def _prune(self, item: _Committed) -> None:
        task = item.task
        task.lineages[item.name] = task.lineage
        for info in self._storage.list_snapshots(self._job, task.id):
            if info.checkpoint_id <= item.checkpoint_id - self._retained and (
                self._lineage(task, info.name) == task.lineage
            ):
                self._storage.delete(self._job, task.id, info.name)
                task.lineages.pop(info.name, None)

    def _lineage(self, task: SplitTask, name: str) -> str | None:
        """The lineage of snapshot ``name`` (from its metadata, read once); ``None`` if unreadable,
        which keeps it from being pruned."""
        lineage = task.lineages.get(name)
        if lineage is None:
            try:
                path, data = self._storage.open(self._job, task.id, name)
                lineage = task.lineages[name] = SnapshotMeta.from_json(path, data).lineage
            except RestoreError:
                return None
        return lineage
