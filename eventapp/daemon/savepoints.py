"""The job manager's savepoint operations (internal): a savepoint of the running job (every worker
checkpoints now, then the savepoint is made from those committed checkpoints) and the savepoint of a
stop-with-savepoint, each an asynchronous operation with a trigger id (Flink's)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventapp.daemon import messages
from eventapp.daemon.job_state import JobState
from eventapp.daemon.slots import Slot
from eventapp.daemon.status import SlotStatus, Trigger
from eventapp.errors import EventAppError
from eventapp.savepoint.create import create_savepoint
from eventapp.savepoint.remote import create_savepoint_at, is_remote
from eventapp.source import discovers_splits
from eventapp.stream import Job

__all__ = ["SavepointOperations"]


class SavepointOperations:
    """The savepoint operations of one job manager."""

    def __init__(
        self, job: Job, splits: Sequence[str], state: JobState, slots: Sequence[Slot], log: Any
    ) -> None:
        self._job = job
        self._splits = list(splits)
        self._state = state
        self._slots = slots
        self._log = log

    def begin(self, trigger: Trigger, *, stopping: bool) -> None:
        """Ask every worker for a checkpoint now (fails the operation unless every slot runs)."""
        with self._state.lock:
            not_running = [s.index for s in self._state.slots if s.status is not SlotStatus.RUNNING]
        if not_running or stopping:
            self.finish(
                trigger,
                failure=f"not every task slot is running (slots {not_running} are not); try again once the "
                f"job is ready (GET /readyz)",
            )
            return
        with self._state.lock:
            trigger.waiting = {slot.index for slot in self._slots}
            trigger.armed = True
        for slot in self._slots:
            slot.send(messages.TRIGGER_CHECKPOINT, trigger=trigger.id)

    def check(self) -> None:
        """Write, in a thread each, the savepoints whose checkpoints every worker acknowledged."""
        with self._state.lock:
            ready = [
                t
                for t in self._state.triggers.values()
                if t.kind == "savepoint"
                and t.armed
                and t.status == "IN_PROGRESS"
                and not t.waiting
                and t.location is None
            ]
            for t in ready:
                t.location = ""  # claimed: being written
        for trigger in ready:
            threading.Thread(
                target=self.write, args=(trigger,), name="eventapp-savepoint", daemon=True
            ).start()

    def fail_waiting_on(self, index: int, error: str) -> None:
        """Worker ``index`` failed: the operations waiting for its checkpoint fail."""
        with self._state.lock:
            waiting = [
                t for t in self._state.triggers.values() if t.status == "IN_PROGRESS" and index in t.waiting
            ]
        for trigger in waiting:
            self.finish(trigger, failure=f"worker {index} failed during the savepoint: {error}")

    def _current_splits(self) -> list[str]:
        """The job's splits: those at start, or, for a source that discovers splits while running,
        those it has now (a savepoint must hold every split's state)."""
        if any(discovers_splits(node.source) for node in self._job.source_nodes):
            return self._job.splits()
        return self._splits

    def write(self, trigger: Trigger) -> None:
        """Make the savepoint from every split's newest committed checkpoint."""
        checkpoint = self._job.config.checkpoint
        assert checkpoint is not None
        storage, splits = checkpoint.resolved_storage(), self._current_splits()
        target = trigger.target if is_remote(trigger.target) else Path(trigger.target)
        try:
            # An s3:// target: written locally, then uploaded (_metadata last), then removed locally.
            location, _ = create_savepoint_at(
                target,
                lambda directory: create_savepoint(
                    storage,
                    self._job.name,
                    splits,
                    directory,
                    max_parallelism=self._job.config.max_parallelism,
                    partitioner=self._job.config.partitioner.describe(),
                    native=trigger.native,
                ),
            )
        except (EventAppError, OSError) as exc:
            self.finish(trigger, failure=f"{type(exc).__name__}: {exc}")
            return
        self.finish(trigger, location=location)

    def finish(self, trigger: Trigger, *, location: str | None = None, failure: str | None = None) -> None:
        with self._state.lock:
            trigger.status = "FAILED" if failure is not None else "COMPLETED"
            trigger.location = location
            trigger.failure = failure
            trigger.waiting.clear()
        self._log.info(
            "savepoint.completed" if failure is None else "savepoint.failed",
            trigger=trigger.id,
            kind=trigger.kind,
            location=location,
            error=failure,
        )
