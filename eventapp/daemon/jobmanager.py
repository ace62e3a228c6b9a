"""The job manager process (``eventapp run JOB --parallelism N``): Flink's JobManager for one job on
one machine.

It assigns the job's splits to N task slots (split ``i`` of the sorted splits to slot
``i % N``, as ``eventapp splits`` prints), runs each slot as a worker process
(:mod:`eventapp.daemon.slots`), and supervises them from one thread, the only one that changes
slots, fed by an event queue:

* a worker that exits with an error is restarted alone, after the delay its
  :mod:`~eventapp.daemon.restart` strategy gives (failures counted per job, as in Flink); its splits
  restore their committed checkpoints. When the strategy gives up, every other worker is cancelled
  and the job ends FAILED with its exception history;
* a worker that exits 3 was superseded: a newer job manager (or worker) claimed its splits
  (:mod:`eventapp.connectors.kafka.ownership`). The job is SUSPENDED, the other workers stop, the job
  manager exits 3 (it is fenced like a zombie worker);
* SIGTERM/SIGINT stops every worker with a final checkpoint (SUSPENDED, exit 0); a bounded job whose
  workers all finish is FINISHED (exit 0);
* savepoints: every worker checkpoints now, then a savepoint is made from those committed
  checkpoints (:func:`~eventapp.savepoint.create.create_savepoint`). Stop-with-savepoint stops the
  workers with a final checkpoint (after the maximum watermark with ``drain``) and makes the
  savepoint from them; the job is FINISHED. If a worker fails during the stop, the stop fails and
  the job runs on.

The REST API (:mod:`eventapp.daemon.rest`) runs in a thread beside it, reading
:class:`~eventapp.daemon.job_state.JobState` and putting requests on the event queue.
"""

from __future__ import annotations

import queue
import secrets
import signal
import socket
import time
from types import FrameType
from typing import Any

import structlog

from eventapp.assignment import assign_splits, sorted_splits
from eventapp.daemon import messages
from eventapp.daemon.config import JobManagerConfig
from eventapp.daemon.job_state import JobState
from eventapp.daemon.rest import RestServer
from eventapp.daemon.savepoints import SavepointOperations
from eventapp.daemon.slots import Slot
from eventapp.daemon.status import EXIT_STOPPED_ALONE, JobStatus, SlotState, SlotStatus, Trigger
from eventapp.errors import ConfigurationError, JobFailedError, JobManagerError
from eventapp.source import discovers_splits
from eventapp.stream import Job

__all__ = ["EXIT_SUPERSEDED", "JobManager"]

log = structlog.get_logger("eventapp.daemon")

#: Exit code of a job manager (or worker) whose splits a newer instance took over.
EXIT_SUPERSEDED = 3

_POLL_S = 0.5


class JobManager:
    """Runs and supervises one job's workers (see the module docstring)."""

    def __init__(self, job: Job, config: JobManagerConfig) -> None:
        source = job.source_node.source if job.source_node is not None else None
        if source is None:
            raise ConfigurationError(f"job {job.name!r} has no source")
        splits = sorted_splits(job.splits())
        discovering = discovers_splits(source)  # more splits may come while it runs
        if config.parallelism > len(splits) and not config.group and not discovering:
            raise ConfigurationError(
                f"--parallelism {config.parallelism} is more than the {len(splits)} splits of source "
                f"{source.name!r}: the extra task slots would get no work; lower --parallelism to <= "
                f"{len(splits)}"
            )
        self.job = job
        self.config = config
        self.splits = splits
        self.state = JobState(
            job.name, config.parallelism, job.config.max_parallelism, config.restart_strategy.describe()
        )
        self.state.group = config.group
        self.state.discovering = discovering
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._slots = [Slot(i, self.state, self.events) for i in range(config.parallelism)]
        for slot in self._slots:  # with a consumer group: the splits each worker reports
            assigned = (
                []
                if config.group
                else assign_splits(splits, config.parallelism, slot.index, discovering=discovering)
            )
            self.state.slots.append(SlotState(slot.index, assigned))
        self._failures: list[float] = []
        self._restart_at: dict[int, float] = {}
        self._stopping: Trigger | None = None
        self._stop_kind: str | None = None  # "stop" | "cancel" | "fail" | "suspend"
        self._stop_failed: list[int] = []
        self._exit_code = 0
        self._log = log.bind(job=job.name)
        self._savepoints = SavepointOperations(job, self.splits, self.state, self._slots, self._log)

    # --- requests (any thread; answered through the event queue) ------------------------------------
    def request(self, kind: str, *args: Any) -> None:
        self.events.put((kind, *args))

    def new_trigger(
        self, kind: str, target: str, native: bool, drain: bool = False, *, trigger_id: str | None = None
    ) -> Trigger:
        """Register a savepoint (``kind`` "savepoint") or stop-with-savepoint ("stop") operation and
        queue it; raises JobManagerError when the job cannot take one."""
        if self.job.config.checkpoint is None:
            raise JobManagerError(
                f"job {self.job.name!r} has no checkpointing, so it cannot take savepoints: set "
                f"JobConfig(checkpoint=CheckpointConfig(...))"
            )
        with self.state.lock:
            if self.state.status is not JobStatus.RUNNING or self._stop_kind is not None:
                state = "stopping" if self._stop_kind is not None else self.state.status.value
                raise JobManagerError(f"job {self.job.name!r} is {state}, not RUNNING")
            trigger = Trigger(trigger_id or secrets.token_hex(16), kind, target, native, drain)
            self.state.triggers[trigger.id] = trigger
        self.request(kind, trigger.id)
        return trigger

    # --- the supervisor --------------------------------------------------------------------------
    def run(self) -> int:
        """Start the REST API and the workers and supervise them until the job ends. Returns the
        exit code: 0 finished, stopped or cancelled, 1 failed, 3 superseded."""
        server = RestServer(self)
        server.start()  # binds first: a taken port fails before any worker starts
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self._slots:
                self._spawn(slot)
            self.state.set_status(JobStatus.RUNNING)
            self._log.info(
                "jobmanager.started",
                parallelism=self.config.parallelism,
                splits=len(self.splits),
                rest=server.url,
                restart_strategy=self.config.restart_strategy.describe(),
            )
            self._supervise()
            self._linger()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for slot in self._slots:
                slot.kill()
            server.stop()
        self._log.info("jobmanager.stopped", state=self.state.status.value, exit_code=self._exit_code)
        if self.state.status is JobStatus.FAILED:
            raise JobFailedError(self._failure_summary())
        return self._exit_code

    def _failure_summary(self) -> str:
        with self.state.lock:
            entries = list(self.state.exceptions)
        last = entries[-1] if entries else None
        where = ""
        if last is not None and last.split is not None:
            where = f" (split {last.split}" + (
                f", offset {last.position})" if last.position is not None else ")"
            )
        cause = "no error reported" if last is None else f"{last.error_type}: {last.error}"
        return (
            f"job {self.job.name!r} failed after {len(self._failures)} worker failure(s), the restart "
            f"strategy {self.config.restart_strategy.describe()} gave up. Last, subtask "
            f"{'?' if last is None else last.subtask}{where}: {cause}"
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.events.put(("signal", signal.Signals(signum).name))  # SimpleQueue.put is reentrant

    def _spawn(self, slot: Slot) -> None:
        cfg = self.config
        args = ["run", cfg.target, "--parallelism", str(cfg.parallelism), "--report-interval"]
        args.append(str(cfg.report_interval_s))
        if cfg.group:
            args += ["--group", "--group-instance-id", f"{self.job.name}-{socket.gethostname()}-{slot.index}"]
        else:
            args += ["--subtask", str(slot.index)]
        if not self.state.slots[slot.index].checkpointed:
            args.extend(cfg.restore_args)
        if cfg.json_logs is not None:
            args.append("--json-logs" if cfg.json_logs else "--no-json-logs")
        slot.spawn(args)

    def _supervise(self) -> None:
        while not self.state.status.terminal:
            timeout = _POLL_S
            if self._restart_at:
                timeout = max(0.0, min(min(self._restart_at.values()) - time.monotonic(), _POLL_S))
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                event = None
            if event is not None:
                self._handle(event)
            now = time.monotonic()
            for index, due in list(self._restart_at.items()):
                if due <= now and self._stop_kind is None:
                    del self._restart_at[index]
                    self._spawn(self._slots[index])
            self._savepoints.check()
            if self._stop_kind is not None and not any(s.alive for s in self._slots):
                self._all_stopped()

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "exited":
            _, index, attempt, code = event
            if attempt == self._slots[index].attempt:
                self._exited(index, code)
        elif kind == "signal":
            self._log.info("jobmanager.stop_requested", signal=event[1])
            self._stop_all("stop", drain=False)
        elif kind == "stop":
            trigger = self.state.triggers[event[1]]
            self._stopping = trigger
            self._stop_all("stop", drain=trigger.drain)
        elif kind == "cancel":
            self.state.set_status(JobStatus.CANCELLING)
            self._stop_all("cancel", drain=False)
        elif kind == "savepoint":
            self._savepoints.begin(self.state.triggers[event[1]], stopping=self._stop_kind is not None)

    # --- failures and restarts -----------------------------------------------------------------------
    def _exited(self, index: int, code: int) -> None:
        slot_state = self.state.slots[index]
        if code == 0 and self._stop_kind is None and not slot_state.source_finished:
            code = EXIT_STOPPED_ALONE  # stopped on its own (a signal to the worker): a failure here
        if code == 0:
            self.state.slot_exited(
                index, code, SlotStatus.CANCELED if self._stop_kind == "cancel" else SlotStatus.FINISHED
            )
            self._log.info("slot.exited", subtask=index, exit_code=code)
            if self._stop_kind is None and all(s.status is SlotStatus.FINISHED for s in self.state.slots):
                self.state.set_status(JobStatus.FINISHED)
            return
        entry = self.state.slot_exited(index, code, SlotStatus.FAILED)
        assert entry is not None
        self._log.warning(
            "slot.failed", subtask=index, exit_code=code, error_type=entry.error_type, error=entry.error
        )
        self._savepoints.fail_waiting_on(index, entry.error)
        if code == EXIT_SUPERSEDED:
            self._log.warning("jobmanager.superseded", subtask=index)
            self._exit_code = EXIT_SUPERSEDED
            self._stop_all("suspend", drain=False)
            return
        if self._stop_kind == "stop":
            self._stop_failed.append(index)
            return
        if self._stop_kind is not None:
            return
        self._failures.append(time.monotonic())
        # A configuration or restore refusal (exit 2) says what to fix: restarting cannot help.
        delay = None if code == 2 else self.config.restart_strategy.next_delay(self._failures)
        if delay is None:
            self._log.error(
                "jobmanager.restarts_exhausted",
                failures=len(self._failures),
                restart_strategy=self.config.restart_strategy.describe(),
            )
            self.state.set_status(JobStatus.FAILING)
            self._exit_code = 1
            self._stop_all("fail", drain=False)
            return
        with self.state.lock:
            slot_state.status = SlotStatus.RESTARTING
        self._restart_at[index] = time.monotonic() + delay
        self._log.info("slot.restart_scheduled", subtask=index, delay_s=round(delay, 3))

    # --- stopping ------------------------------------------------------------------------------------
    def _stop_all(self, kind: str, *, drain: bool) -> None:
        if self._stop_kind is not None and kind == "stop":
            return
        self._stop_kind = kind
        self._restart_at.clear()
        command = messages.STOP if kind == "stop" else messages.CANCEL
        for slot in self._slots:
            if slot.alive:
                with self.state.lock:
                    self.state.slots[slot.index].status = SlotStatus.STOPPING
                slot.send(command, drain=drain)

    def _all_stopped(self) -> None:
        kind = self._stop_kind
        trigger = self._stopping
        if kind == "stop" and self._stop_failed and trigger is None:
            # SIGTERM or a plain stop: end anyway; the failed workers' splits restore their last
            # committed checkpoints on the next start.
            self._log.warning("jobmanager.stop_failed", subtasks=self._stop_failed)
            self._exit_code = 1
            kind = "suspend"
        if kind == "stop" and self._stop_failed:
            failed = ", ".join(str(i) for i in self._stop_failed)
            assert trigger is not None
            self._savepoints.finish(
                trigger, failure=f"worker(s) {failed} failed while stopping; the job runs on"
            )
            self._log.warning("jobmanager.stop_failed", subtasks=failed)
            self._stopping, self._stop_kind, self._stop_failed = None, None, []
            for slot in self._slots:  # resume: every split restores its committed checkpoint
                self._spawn(slot)
            return
        if kind == "stop":
            if trigger is not None:
                self._savepoints.write(trigger)
                self.state.set_status(JobStatus.FINISHED)
            else:
                self.state.set_status(JobStatus.SUSPENDED)
        elif kind == "cancel":
            self.state.set_status(JobStatus.CANCELED)
        elif kind == "fail":
            self.state.set_status(JobStatus.FAILED)
        else:
            self.state.set_status(JobStatus.SUSPENDED)
        # Whatever else was still in progress cannot complete now.
        with self.state.lock:
            pending = [t for t in self.state.triggers.values() if t.status == "IN_PROGRESS"]
            status = self.state.status.value
        for t in pending:
            self._savepoints.finish(t, failure=f"the job ended ({status}) before the savepoint completed")

    def _linger(self) -> None:
        deadline = time.monotonic() + self.config.linger_s
        while time.monotonic() < deadline:
            with self.state.lock:
                if all(t.fetched for t in self.state.triggers.values()):
                    return
            try:
                self.events.get(timeout=0.1)
            except queue.Empty:
                continue
