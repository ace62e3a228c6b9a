"""eventapp's structlog events as benchmark figures, and ``eventapp run`` worker processes.

In this process, :class:`CheckpointCapture` (a structlog processor) records ``checkpoint.completed``
events; a worker's JSON log lines are parsed by :func:`read_worker_log` (``job.started``,
``checkpoint.completed``, ``job.finished``, and at DEBUG ``checkpoint.split_committed`` with the
duration of each step of one split's checkpoint). The checkpoint pause is the event's ``pause_ms``
when it has one, else its ``duration_ms``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from .kafka_common import ROOT, percentile

# -- eventapp's log events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointEvent:
    """One ``checkpoint.completed`` event."""

    #: Epoch seconds at which it was logged (the end of the checkpoint).
    at: float
    #: The time processing stopped for it: the event's ``pause_ms`` if present, else ``duration_ms``.
    pause_ms: float
    #: Which field ``pause_ms`` came from.
    source_field: str
    duration_ms: float | None
    split: str | None = None
    #: Of an asynchronous checkpoint: its synchronous part, the wait for it (back-pressure or an
    #: explicit checkpoint) and the writing of the outputs held.
    begin_ms: float | None = None
    release_ms: float | None = None
    waited_ms: float | None = None


def checkpoint_event(event: Mapping[str, Any], at: float) -> CheckpointEvent | None:
    """A :class:`CheckpointEvent` from a ``checkpoint.completed`` event dict, else ``None``."""
    if event.get("event") != "checkpoint.completed":
        return None
    duration = event.get("duration_ms")
    duration_ms = None if duration is None else float(duration)
    if event.get("pause_ms") is not None:
        pause_ms, source_field = float(event["pause_ms"]), "pause_ms"
    elif duration_ms is not None:
        pause_ms, source_field = duration_ms, "duration_ms"
    else:
        return None
    split = event.get("split")
    begin, release, waited = event.get("begin_ms"), event.get("release_ms"), event.get("waited_ms")
    return CheckpointEvent(
        at,
        pause_ms,
        source_field,
        duration_ms,
        None if split is None else str(split),
        None if begin is None else float(begin),
        None if release is None else float(release),
        None if waited is None else float(waited),
    )


class CheckpointCapture:
    """Collects this process's ``checkpoint.completed`` events with a structlog processor placed in
    front of eventapp's (``configure_logging`` must have run); events below ``quiet_below`` are
    dropped after capture, so INFO can be enabled without printing it."""

    LEVELS = ("debug", "info", "warning", "error", "critical", "exception")

    def __init__(self, quiet_below: str = "warning") -> None:
        self.events: list[CheckpointEvent] = []
        self._quiet = set(self.LEVELS[: self.LEVELS.index(quiet_below)])
        self._lock = threading.Lock()
        self._saved: dict[str, Any] | None = None

    def __call__(
        self, _logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        found = checkpoint_event(event, time.time())
        if found is not None:
            with self._lock:
                self.events.append(found)
        if method in self._quiet:
            raise structlog.DropEvent
        return event

    def __enter__(self) -> CheckpointCapture:
        self._saved = structlog.get_config()
        structlog.configure(processors=[self, *self._saved["processors"]])
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._saved is not None:
            structlog.configure(processors=self._saved["processors"])

    def since(self, began: float) -> list[CheckpointEvent]:
        with self._lock:
            return [e for e in self.events if e.at >= began]


#: The steps of one split's checkpoint, as ``checkpoint.split_committed`` (DEBUG) logs them
#: (eventapp.runtime.checkpointer): flush the sinks, write the state snapshot, complete it in
#: checkpoint storage, commit (the Kafka transaction with the offsets), mark it committed.
SPLIT_STEPS = ("flush_ms", "state_ms", "complete_ms", "commit_ms", "mark_ms")


@dataclass
class WorkerLog:
    """What a worker process's JSON log lines tell."""

    #: Epoch seconds of ``job.started`` (end of ``open()``: consumption starts) and ``job.finished``
    #: (the bounded input's end, after its final checkpoint committed).
    started: float | None = None
    finished: float | None = None
    records: int | None = None
    checkpoints: list[CheckpointEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Per split checkpoint (only when the worker logs at DEBUG): each of :data:`SPLIT_STEPS` in ms.
    split_steps: list[dict[str, float]] = field(default_factory=list)


def log_events(path: Path) -> Iterator[tuple[dict[str, Any], float]]:
    """eventapp's JSON log lines of ``path`` (other lines are skipped), each with its time (epoch
    seconds; 0.0 without a timestamp)."""
    for line in path.read_bytes().splitlines():
        if not line.startswith(b"{"):
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        yield event, datetime.fromisoformat(event["timestamp"]).timestamp() if "timestamp" in event else 0.0


def read_worker_log(path: Path) -> WorkerLog:
    """Parse a worker's stdout (eventapp's JSON log lines; other lines are ignored)."""
    log = WorkerLog()
    for event, at in log_events(path):
        name = event.get("event")
        if name == "job.started" and log.started is None:
            log.started = at
        elif name == "job.finished":
            log.finished = at
            log.records = event.get("records")
        elif name == "checkpoint.split_committed":
            log.split_steps.append({s: float(event[s]) for s in SPLIT_STEPS if event.get(s) is not None})
        elif event.get("level") in ("error", "critical"):
            log.errors.append(str(event))
        found = checkpoint_event(event, at)
        if found is not None:
            log.checkpoints.append(found)
    return log


@dataclass
class PauseStats:
    """Distribution of checkpoint pauses (ms)."""

    count: int
    p50: float
    p99: float
    max: float
    mean: float
    source_field: str

    @classmethod
    def of(cls, events: Sequence[CheckpointEvent]) -> PauseStats | None:
        if not events:
            return None
        pauses = [e.pause_ms for e in events]
        fields = sorted({e.source_field for e in events})
        return cls(
            len(pauses),
            percentile(pauses, 0.50),
            percentile(pauses, 0.99),
            max(pauses),
            statistics.fmean(pauses),
            "/".join(fields),
        )


# -- worker processes ------------------------------------------------------------------------------


@dataclass
class Worker:
    """An ``eventapp run`` process and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    launched: float


def start_workers(
    target: str, env: Mapping[str, str], parallelism: int, log_dir: Path, tag: str, log_level: str = "INFO"
) -> list[Worker]:
    """Start ``parallelism`` workers of ``target`` (``eventapp run --parallelism N --subtask i``:
    the splits are divided between them), logging JSON at ``log_level`` to ``log_dir/<tag>-<i>.log``."""
    full_env = {
        **os.environ,
        **env,
        "EVENTAPP_LOG_LEVEL": log_level,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    workers = []
    for subtask in range(parallelism):
        log_path = log_dir / f"{tag}-{subtask}.log"
        command = [sys.executable, "-m", "eventapp", "run", target, "--json-logs"]
        command += ["--parallelism", str(parallelism), "--subtask", str(subtask)]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        workers.append(Worker(process, log_path, time.time()))
    return workers


def stop_workers(workers: Sequence[Worker], timeout_s: float = 60) -> None:
    """SIGTERM (a final checkpoint, then exit) every worker still running; SIGKILL after ``timeout_s``."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in workers:
        try:
            worker.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def log_tail(worker: Worker, chars: int = 2_000) -> str:
    return worker.log_path.read_text(errors="replace")[-chars:]
