"""The worker's side of the job manager's channel (``eventapp run --subtask I --report-fd FD``).

The job manager starts each worker with a pipe for reports and the worker's stdin for commands
(:mod:`eventapp.daemon.messages`). Reports are written from the worker's own thread, after a step
(:meth:`WorkerLink.on_step`), at most every ``interval_s``: no lock and no extra work on the record
path. Commands are read by a thread that only sets flags the worker's loop reads (``stop``,
``cancel``), or queues a checkpoint trigger that :meth:`on_step` hands to the runner, so the
acknowledgement names a checkpoint that began after the request.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import structlog

from eventapp.daemon import messages
from eventapp.errors import RecordProcessingError

if TYPE_CHECKING:
    from eventapp.runtime.local import LocalRunner

__all__ = ["WorkerLink"]

log = structlog.get_logger("eventapp.daemon")


class WorkerLink:
    """Reports a worker's progress to its job manager and applies the job manager's commands."""

    def __init__(self, report_fd: int, interval_s: float, command_fd: int = 0) -> None:
        self._fd = report_fd
        self._interval_s = interval_s
        self._command_fd = command_fd
        self._runner: LocalRunner | None = None
        self._started_sent = False
        self._last_report = 0.0
        self._checkpoints_sent = 0
        #: Triggers received but not yet handed to the runner; and handed ones, with the number of
        #: checkpoints completed when they were.
        self._incoming: list[str] = []
        self._waiting: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._stop: tuple[str, bool] | None = None
        self._broken = False
        self._reader = threading.Thread(target=self._read_commands, name="eventapp-commands", daemon=True)
        self._reader.start()

    def attach(self, runner: LocalRunner) -> None:
        """Report for ``runner`` from now on (a worker recovering from fencing makes a new one)."""
        self._runner = runner
        self._started_sent = False
        self._checkpoints_sent = 0
        with self._lock:
            self._incoming.extend(trigger for trigger, _ in self._waiting)
            self._waiting.clear()
            stop = self._stop
        if stop is not None:
            self._apply_stop(runner, *stop)

    # --- reports (the worker's thread) -------------------------------------------------------------
    def on_step(self) -> None:
        runner = self._runner
        if runner is None or self._broken:
            return
        if not self._started_sent:
            self._started_sent = True
            stats = runner.stats()
            self._send(messages.STARTED, pid=os.getpid(), splits=runner.splits, restore_s=stats.restore_s)
            self._send(messages.STATUS, stats=stats.to_json())
            self._last_report = time.monotonic()
        completed = runner.checkpoints_completed
        if completed > self._checkpoints_sent:
            history = runner.checkpoint_history
            for checkpoint in history[-min(len(history), completed - self._checkpoints_sent) :]:
                self._send(messages.CHECKPOINT, checkpoint=checkpoint.to_json())
            self._checkpoints_sent = completed
        self._triggers(runner, completed)
        now = time.monotonic()
        if now - self._last_report >= self._interval_s:
            self._last_report = now
            self._send(messages.STATUS, stats=runner.stats().to_json())

    def _triggers(self, runner: LocalRunner, completed: int) -> None:
        if self._waiting:
            done = [(t, n) for t, n in self._waiting if completed > n]
            for trigger, _ in done:
                history = runner.checkpoint_history
                ids = history[-1].checkpoint_ids if history else {}
                self._send(messages.CHECKPOINT_ACK, trigger=trigger, checkpoint_ids=ids)
            self._waiting = [w for w in self._waiting if w not in done]
        if self._incoming:
            with self._lock:
                incoming, self._incoming = self._incoming, []
            # Acknowledged by a checkpoint that begins after the request: not by one in flight.
            begun = completed + (1 if runner.checkpoint_in_flight else 0)
            for trigger in incoming:
                self._waiting.append((trigger, begun))
            runner.request_checkpoint()

    def exiting(self, finished: bool) -> None:
        """The run ended without an error: report what happened since the last step (the final
        checkpoint), then say whether the source finished."""
        self._last_report = float("-inf")
        self.on_step()
        self._send(messages.EXITING, finished=finished)

    def failed(self, exc: BaseException) -> None:
        """Tell the job manager why this worker is about to exit with an error."""
        fields: dict[str, Any] = {"error_type": type(exc).__name__, "error": str(exc)}
        if isinstance(exc, RecordProcessingError):
            fields.update(
                operator=exc.operator, split=exc.split, position=exc.position, record=repr(exc.record)[:500]
            )
        else:
            split = getattr(exc, "split", None)
            if isinstance(split, str):
                fields["split"] = split
        self._send(messages.FAILED, **fields)

    def _send(self, kind: str, **fields: Any) -> None:
        if self._broken:
            return
        data = messages.encode(kind, **fields)
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError as exc:  # the job manager is gone: stop (a final checkpoint, then exit)
            self._broken = True
            log.warning("worker.jobmanager_gone", error=str(exc))
            if self._runner is not None:
                self._runner.request_stop("job manager gone")

    # --- commands (the reader thread) ---------------------------------------------------------------
    def _lines(self) -> Iterator[bytes]:
        # Raw reads: a daemon thread blocked in a buffered stdin read aborts the interpreter at exit.
        pending = b""
        while chunk := os.read(self._command_fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from lines

    def _read_commands(self) -> None:
        for line in self._lines():
            message = messages.decode(line)
            if message is None:
                continue
            kind = message["type"]
            if kind == messages.TRIGGER_CHECKPOINT:
                with self._lock:
                    self._incoming.append(str(message.get("trigger", "")))
            elif kind in (messages.STOP, messages.CANCEL):
                stop = ("cancel" if kind == messages.CANCEL else "stop", bool(message.get("drain", False)))
                with self._lock:
                    self._stop = stop
                if self._runner is not None:
                    self._apply_stop(self._runner, *stop)
        # End of stdin: the job manager closed it or died. Stop with a final checkpoint.
        with self._lock:
            if self._stop is None:
                self._stop = ("stop", False)
            stop = self._stop
        if self._runner is not None:
            self._apply_stop(self._runner, *stop)

    @staticmethod
    def _apply_stop(runner: LocalRunner, kind: str, drain: bool) -> None:
        if kind == "cancel":
            runner.request_cancel("cancelled by the job manager")
        else:
            runner.request_stop("stopped by the job manager", drain=drain)
