"""A task slot: one worker process of the job manager (internal).

The slot starts ``eventapp run TARGET --parallelism N --subtask I --report-fd FD`` with a pipe for
its reports and its stdin for commands (:mod:`eventapp.daemon.messages`); a thread reads the
reports into the :class:`~eventapp.daemon.job_state.JobState` and, when the pipe closes (the
worker exited), waits for the process and puts ``("exited", index, attempt, code)`` on the job
manager's event queue.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

import structlog

from eventapp.daemon import messages
from eventapp.daemon.job_state import JobState

__all__ = ["Slot"]

log = structlog.get_logger("eventapp.daemon")


class Slot:
    """One worker process slot (see the module docstring)."""

    def __init__(self, index: int, state: JobState, events: queue.SimpleQueue[tuple[Any, ...]]) -> None:
        self.index = index
        self._state = state
        self._events = events
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin: IO[bytes] | None = None
        self._lock = threading.Lock()
        self.attempt = 0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def spawn(self, worker_args: Sequence[str]) -> None:
        """Start the worker with ``worker_args`` (everything after ``eventapp``)."""
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "eventapp", *worker_args, "--report-fd", str(write_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.attempt += 1
        with self._lock:
            self._process = process
            self._stdin = process.stdin
        self._state.slot_spawned(self.index, process.pid)
        log.info("slot.started", subtask=self.index, attempt=self.attempt, pid=process.pid)
        threading.Thread(
            target=self._read_reports,
            args=(os.fdopen(read_fd, "rb"), process, self.attempt),
            name=f"eventapp-slot-{self.index}",
            daemon=True,
        ).start()

    def send(self, kind: str, **fields: Any) -> bool:
        """Send a command; False if the worker is gone."""
        with self._lock:
            stdin = self._stdin
            if stdin is None:
                return False
            try:
                stdin.write(messages.encode(kind, **fields))
                stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return False
        return True

    def kill(self) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.kill()

    def _read_reports(self, reports: IO[bytes], process: subprocess.Popen[bytes], attempt: int) -> None:
        with reports:
            for line in reports:
                message = messages.decode(line)
                if message is not None:
                    self._state.apply(self.index, message)
        code = process.wait()
        with self._lock:
            if self._process is process:
                if self._stdin is not None:
                    try:
                        self._stdin.close()
                    except OSError:
                        log.debug("slot.stdin_close_failed", subtask=self.index)
                self._stdin = None
        self._events.put(("exited", self.index, attempt, code))
