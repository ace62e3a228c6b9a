"""What the job manager knows about its job: status, slots, splits, checkpoints, exceptions,
savepoint triggers, and the running totals behind the metrics (internal).

Written by the job manager's threads (one reading each worker's reports, the supervisor) and read
by the REST API; every access holds :attr:`JobState.lock`. Counters that workers restart from zero
(records in and out, dead letters, busy time) are summed here across a slot's attempts, so the job
manager's totals only grow (Prometheus counters).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from eventapp.daemon.status import (
    EXIT_STOPPED_ALONE,
    ExceptionEntry,
    JobStatus,
    SlotState,
    SlotStatus,
    Trigger,
)

__all__ = ["JobState"]

#: Entries kept in the exception and checkpoint histories (Flink's web.exception-history-size and
#: web.checkpoints.history are 16 and 10).
EXCEPTION_HISTORY = 32
CHECKPOINT_HISTORY = 64


class _Totals:
    """A counter summed over a slot's attempts: each attempt reports its own running value."""

    __slots__ = ("_base", "_last")

    def __init__(self) -> None:
        self._base: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def report(self, key: str, value: float) -> None:
        last = self._last.get(key, 0.0)
        if value < last:  # a new attempt counts from zero again
            self._base[key] = self._base.get(key, 0.0) + last
        self._last[key] = value

    def new_attempt(self, keys: list[str]) -> None:
        for key in keys:
            self._base[key] = self._base.get(key, 0.0) + self._last.pop(key, 0.0)

    def get(self, key: str) -> float | None:
        if key not in self._base and key not in self._last:
            return None
        return self._base.get(key, 0.0) + self._last.get(key, 0.0)

    def items(self) -> list[tuple[str, float]]:
        keys = set(self._base) | set(self._last)
        return sorted((k, self._base.get(k, 0.0) + self._last.get(k, 0.0)) for k in keys)


def _unreported(index: int, code: int) -> str:
    if code == EXIT_STOPPED_ALONE:
        return (
            f"worker {index} exited 0 on its own before its source finished (was it signalled "
            f"directly? Stop the job through the job manager)"
        )
    return (
        f"worker {index} exited with code {code} without reporting an error (killed by a signal when "
        f"negative: {code})"
    )


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


class JobState:
    """Everything the REST API and the metrics read (see the module docstring)."""

    def __init__(self, job: str, parallelism: int, max_parallelism: int, restart_strategy: str) -> None:
        self.lock = threading.RLock()
        self.job_name = job
        self.parallelism = parallelism
        self.max_parallelism = max_parallelism
        self.restart_strategy = restart_strategy
        self.status = JobStatus.INITIALIZING
        #: Whether a consumer group assigns the splits (the slots' splits are what they report).
        self.group = False
        #: The source discovers splits while running: workers report the splits they run.
        self.discovering = False
        self.started_ms = int(time.time() * 1000)
        self.ended_ms: int | None = None
        self.slots: list[SlotState] = []
        self.exceptions: deque[ExceptionEntry] = deque(maxlen=EXCEPTION_HISTORY)
        self.exceptions_total = 0
        self.checkpoints: deque[dict[str, Any]] = deque(maxlen=CHECKPOINT_HISTORY)
        self.checkpoints_completed = 0
        self.restarts = 0
        self.restores: list[float] = []
        self.triggers: dict[str, Trigger] = {}
        self.records_in = _Totals()
        self.records_out = _Totals()
        self.dead_letters = _Totals()
        self.busy = _Totals()
        self.idle = _Totals()
        self.rebalances = _Totals()
        #: Observers of completed checkpoints and restores (the Prometheus histograms).
        self.on_checkpoint: list[Any] = []
        self.on_restore: list[Any] = []

    # --- writes --------------------------------------------------------------------------------------
    def set_status(self, status: JobStatus) -> None:
        with self.lock:
            if self.status.terminal:
                return
            self.status = status
            if status.terminal:
                self.ended_ms = int(time.time() * 1000)

    def slot_spawned(self, index: int, pid: int) -> None:
        with self.lock:
            slot = self.slots[index]
            if slot.attempt > 0:
                self.restarts += 1
                for totals in (self.records_in, self.records_out, self.dead_letters):
                    totals.new_attempt(slot.splits)
                for totals in (self.busy, self.idle, self.rebalances):
                    totals.new_attempt([str(index)])
            slot.attempt += 1
            slot.pid = pid
            slot.status = SlotStatus.DEPLOYING
            slot.started_ms = int(time.time() * 1000)
            slot.failure = None
            slot.source_finished = False
            slot.stats = {}
            slot.restore_s = None

    def apply(self, index: int, message: dict[str, Any]) -> None:
        """A report of worker ``index`` (see eventapp.daemon.messages)."""
        kind = message.get("type")
        with self.lock:
            slot = self.slots[index]
            if kind == "started":
                restore_s = float(message.get("restore_s", 0.0))
                slot.restore_s = restore_s
                if slot.status is SlotStatus.DEPLOYING:
                    slot.status = SlotStatus.RUNNING
                self.restores.append(restore_s)
                for observe in self.on_restore:
                    observe(restore_s)
            elif kind == "status":
                stats = message.get("stats") or {}
                slot.stats = stats
                if self.group or self.discovering:
                    slot.splits = [split["split"] for split in stats.get("splits", [])]
                for split in stats.get("splits", []):
                    name = split["split"]
                    self.records_in.report(name, split["records_in"])
                    self.records_out.report(name, split["records_out"])
                    self.dead_letters.report(name, split["dead_letters"])
                self.busy.report(str(index), float(stats.get("busy_s", 0.0)))
                self.idle.report(str(index), float(stats.get("idle_s", 0.0)))
                self.rebalances.report(str(index), float(stats.get("rebalances", 0)))
            elif kind == "checkpoint":
                entry = dict(message.get("checkpoint") or {})
                entry["subtask"] = index
                self.checkpoints.append(entry)
                self.checkpoints_completed += 1
                slot.checkpointed = True
                for observe in self.on_checkpoint:
                    observe(entry)
            elif kind == "checkpoint_ack":
                trigger = self.triggers.get(str(message.get("trigger")))
                if trigger is not None:
                    trigger.waiting.discard(index)
            elif kind == "failed":
                slot.failure = message
            elif kind == "exiting":
                slot.source_finished = bool(message.get("finished"))

    def slot_exited(self, index: int, code: int, status: SlotStatus) -> ExceptionEntry | None:
        """Worker ``index`` exited with ``code``; an exception entry if it failed."""
        with self.lock:
            slot = self.slots[index]
            slot.status = status
            slot.pid = None
            if status is not SlotStatus.FAILED:
                return None
            failure = slot.failure or {}
            entry = ExceptionEntry(
                timestamp_ms=int(time.time() * 1000),
                subtask=index,
                attempt=slot.attempt,
                exit_code=code,
                error_type=str(failure.get("error_type", "WorkerExited")),
                error=str(failure.get("error") or _unreported(index, code)),
                split=failure.get("split"),
                operator=failure.get("operator"),
                position=failure.get("position"),
                record=failure.get("record"),
            )
            self.exceptions.append(entry)
            self.exceptions_total += 1
            return entry

    # --- reads ---------------------------------------------------------------------------------------
    def ready(self) -> bool:
        with self.lock:
            return self.status is JobStatus.RUNNING and all(
                s.status is SlotStatus.RUNNING for s in self.slots
            )

    def splits(self) -> list[dict[str, Any]]:
        now_ms = int(time.time() * 1000)
        rows = []
        with self.lock:
            for slot in self.slots:
                reported = {s["split"]: s for s in slot.stats.get("splits", [])}
                watermark = slot.stats.get("watermark")
                for split in slot.splits:
                    s = reported.get(split, {})
                    rows.append(
                        {
                            "split": split,
                            "owner": slot.index,
                            "status": slot.status.value,
                            "offset": s.get("position"),
                            "lag": s.get("lag"),
                            "watermark": watermark,
                            "watermark_lag_s": None if watermark is None else (now_ms - watermark) / 1000,
                            "state_size": s.get("state_bytes"),
                            "last_checkpoint": s.get("checkpoint_id"),
                            # Split event time so far (the worker's watermark is over its splits).
                            "max_timestamp": s.get("max_timestamp"),
                            # Totals over every attempt of the split's slots (as the metrics).
                            "records_in": _count(self.records_in.get(split)),
                            "records_out": _count(self.records_out.get(split)),
                            "dead_letters": _count(self.dead_letters.get(split)),
                        }
                    )
        return rows

    def overview(self) -> dict[str, Any]:
        with self.lock:
            running = sum(1 for s in self.slots if s.status is SlotStatus.RUNNING)
            return {
                "jobs-running": 0 if self.status.terminal else 1,
                "jobs-finished": int(self.status is JobStatus.FINISHED),
                "jobs-cancelled": int(self.status is JobStatus.CANCELED),
                "jobs-failed": int(self.status is JobStatus.FAILED),
                "slots-total": len(self.slots),
                "slots-running": running,
                "splits-total": sum(len(s.splits) for s in self.slots),
                "splits-owned": sum(len(s.splits) for s in self.slots if s.status is SlotStatus.RUNNING),
                "uptime_s": round(time.time() - self.started_ms / 1000, 3),
            }

    def _header(self) -> dict[str, Any]:
        """What ``/jobs/{id}`` and ``/jobs/overview`` both say of the job (call with the lock)."""
        end = self.ended_ms if self.ended_ms is not None else int(time.time() * 1000)
        return {
            "jid": self.job_name,
            "name": self.job_name,
            "state": self.status.value,
            "start-time": self.started_ms,
            "end-time": self.ended_ms,
            "duration": end - self.started_ms,
        }

    def job(self) -> dict[str, Any]:
        with self.lock:
            return {
                **self._header(),
                "parallelism": self.parallelism,
                "maxParallelism": self.max_parallelism,
                "restart-strategy": self.restart_strategy,
                "restarts": self.restarts,
                "ready": self.ready(),
                "slots": [s.to_json() for s in self.slots],
                "splits": self.splits(),
            }

    def checkpoint_summary(self) -> dict[str, Any]:
        with self.lock:
            history = list(self.checkpoints)
            counts = {"completed": self.checkpoints_completed, "restored": len(self.restores)}
        summary: dict[str, Any] = {}
        for key in ("duration_ms", "size_bytes", "pause_ms"):
            values = [float(c[key]) for c in history if key in c]
            if values:
                summary[key] = {
                    "min": min(values),
                    "max": max(values),
                    "avg": round(sum(values) / len(values), 3),
                }
        return {
            "counts": counts,
            "summary": summary,
            "latest": {"completed": history[-1] if history else None},
            "history": list(reversed(history)),
        }

    def exception_history(self, limit: int) -> dict[str, Any]:
        with self.lock:
            entries = [e.to_json() for e in reversed(self.exceptions)]
            total = self.exceptions_total
        return {
            "exceptionHistory": {"entries": entries[:limit], "truncated": total > min(limit, len(entries))}
        }

    def job_summary(self) -> dict[str, Any]:
        """The job's line of ``/jobs/overview``."""
        with self.lock:
            counts: dict[str, int] = {}
            for slot in self.slots:
                counts[slot.status.value] = counts.get(slot.status.value, 0) + 1
            return {**self._header(), "tasks": counts}

    def flink_metrics(self) -> dict[str, float | int | None]:
        """``/jobs/{id}/metrics``: job-scope values under Flink's metric names."""
        rows = self.splits()
        with self.lock:
            last = self.checkpoints[-1] if self.checkpoints else {}
            lags = [r["lag"] for r in rows if r["lag"] is not None]
            marks = [r["watermark_lag_s"] for r in rows if r["watermark_lag_s"] is not None]
            return {
                "numRecordsIn": int(sum(v for _, v in self.records_in.items())),
                "numRecordsOut": int(sum(v for _, v in self.records_out.items())),
                "numDeadLetters": int(sum(v for _, v in self.dead_letters.items())),
                "numRestarts": self.restarts,
                "numberOfCompletedCheckpoints": self.checkpoints_completed,
                "lastCheckpointDuration": last.get("duration_ms"),
                "lastCheckpointSize": last.get("size_bytes"),
                "lastCheckpointPause": last.get("pause_ms"),
                "pendingRecords": sum(lags) if lags else None,
                "maxPendingRecords": max(lags) if lags else None,
                "maxWatermarkLagSeconds": max(marks) if marks else None,
                "uptime": int(time.time() * 1000) - self.started_ms,
            }
