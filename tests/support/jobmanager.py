"""A job manager in a real process (``eventapp run JOB --parallelism N``) for tests, and
``wait_for``: poll an observable condition (the bound only stops a hung test; it asserts no
speed)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 180.0
T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = HANG_GUARD_S) -> T:
    """``condition()`` once it is truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (httpx.HTTPError, KeyError, IndexError, OSError) as exc:
            last = exc
        else:
            if value:
                return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what} (last error: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class JobManagerProcess:
    """``eventapp run TARGET --parallelism N`` with its REST API on a free port."""

    def __init__(self, tmp: Path, target: str, parallelism: int, *args: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"jobmanager-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "eventapp",
                "run",
                target,
                "--parallelism",
                str(parallelism),
                "--rest-port",
                str(self.port),
                "--report-interval",
                "0.2",
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        response.raise_for_status()
        return response.json()

    def wait_ready(self) -> dict[str, Any]:
        def ready() -> bool:
            assert self.process.poll() is None, f"the job manager exited: {self.output()[-3000:]}"
            return self.http.get("/readyz").status_code == 200

        wait_for(ready, "the job to be ready")
        return dict(self.get(f"/jobs/{self.job_id}"))

    def running_pids(self) -> list[int]:
        """The process ids of the job's workers that are running now."""
        job = self.get(f"/jobs/{self.job_id}")
        return [s["pid"] for s in job["slots"] if s["status"] == "RUNNING" and s["pid"]]

    @property
    def job_id(self) -> str:
        return str(self.get("/jobs")["jobs"][0]["id"])

    def wait_exit(self, timeout: float = HANG_GUARD_S) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the job manager did not exit: {self.output()[-3000:]}") from None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        else:
            with contextlib.suppress(ProcessLookupError):  # workers left behind, if any
                os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()
