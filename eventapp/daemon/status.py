"""The records of the job manager's view of a job: job and slot states (Flink's), task slots,
exception entries and savepoint triggers (internal; see :mod:`eventapp.daemon.job_state`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXIT_STOPPED_ALONE", "ExceptionEntry", "JobStatus", "SlotState", "SlotStatus", "Trigger"]

#: The exit code the job manager records for a worker that exited 0 on its own while its source
#: had not finished (someone signalled the worker itself): restarted as a failure.
EXIT_STOPPED_ALONE = -1000


class JobStatus(enum.StrEnum):
    """Flink's job states that a job manager here goes through."""

    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILING = "FAILING"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELED = "CANCELED"
    #: Stopped with final checkpoints but no savepoint (SIGTERM, a plain stop), or taken over by
    #: another job manager (its workers superseded this one's; exit code 3).
    SUSPENDED = "SUSPENDED"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SUSPENDED)


class SlotStatus(enum.StrEnum):
    DEPLOYING = "DEPLOYING"  # process started, splits restoring
    RUNNING = "RUNNING"  # restored and processing
    RESTARTING = "RESTARTING"  # failed, waiting for its restart
    STOPPING = "STOPPING"
    FINISHED = "FINISHED"  # exited 0
    FAILED = "FAILED"
    CANCELED = "CANCELED"


@dataclass(slots=True)
class ExceptionEntry:
    timestamp_ms: int
    subtask: int
    attempt: int
    exit_code: int | None
    error_type: str
    error: str
    split: str | None = None
    operator: str | None = None
    position: int | None = None
    record: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp_ms,
            "subtask": self.subtask,
            "attempt": self.attempt,
            "exitCode": self.exit_code,
            "exceptionName": self.error_type,
            "stacktrace": self.error,
            "split": self.split,
            "operator": self.operator,
            "position": self.position,
            "record": self.record,
        }


@dataclass(slots=True)
class Trigger:
    """An asynchronous savepoint or stop-with-savepoint operation (Flink's trigger id)."""

    id: str
    kind: str  # "savepoint" | "stop"
    target: str
    native: bool
    drain: bool = False
    status: str = "IN_PROGRESS"  # IN_PROGRESS | COMPLETED | FAILED
    location: str | None = None
    failure: str | None = None
    #: Subtasks whose checkpoint for it is still to come (savepoints of a running job).
    waiting: set[int] = field(default_factory=set)
    #: Set once every worker was asked to checkpoint for it (until then it cannot be written).
    armed: bool = False
    fetched: bool = False

    def to_json(self) -> dict[str, Any]:
        # Flink's shape: status COMPLETED once done, the operation holding a location or a failure.
        status = {"id": "IN_PROGRESS" if self.status == "IN_PROGRESS" else "COMPLETED"}
        if self.status == "IN_PROGRESS":
            return {"status": status}
        operation: dict[str, Any] = (
            {"location": self.location} if self.failure is None else {"failure-cause": self.failure}
        )
        return {"status": status, "operation": operation}


@dataclass(slots=True)
class SlotState:
    index: int
    splits: list[str]
    status: SlotStatus = SlotStatus.DEPLOYING
    attempt: int = 0
    pid: int | None = None
    started_ms: int = 0
    restore_s: float | None = None
    #: The worker's last status report (RunnerStats as JSON).
    stats: dict[str, Any] = field(default_factory=dict)
    #: The last error it reported before exiting (the ``failed`` message).
    failure: dict[str, Any] | None = None
    checkpointed: bool = False
    #: The worker said its source finished (a bounded input's end) before it exited.
    source_finished: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "subtask": self.index,
            "status": self.status.value,
            "attempt": self.attempt,
            "pid": self.pid,
            "start-time": self.started_ms,
            "splits": self.splits,
            "restore_s": self.restore_s,
            "busy_s": self.stats.get("busy_s"),
            "idle_s": self.stats.get("idle_s"),
        }
