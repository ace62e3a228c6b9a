"""Child server processes of the embedded servers (the Kafka-protocol broker, Redis, the object
store): each runs in a process group of its own, dies with its parent on Linux, and is stopped
group-wide."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["die_with_parent", "kill_group", "spawn", "terminate_group"]


def die_with_parent() -> None:
    """In the child, before exec (``preexec_fn``): on Linux, ask for SIGKILL when the parent dies, so
    a SIGKILLed test run or demo never leaves a server behind (elsewhere: best effort, nothing)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def spawn(command: Sequence[str], *, log_path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` as the leader of a process group of its own (Ctrl-C in the terminal does not
    reach it; :func:`kill_group` and :func:`terminate_group` end it), dying with this process on
    Linux, stdin from ``/dev/null``, stdout and stderr appended to ``log_path`` after a ``$ command``
    line.

    :raises OSError: the program cannot be run.
    """
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def terminate_group(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """End ``process``'s group (it leads one: ``start_new_session=True``): SIGTERM, then SIGKILL
    after ``grace_seconds``. If the leader exited by itself, nothing else of its group survives."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
    else:
        _signal_group(process.pid, signal.SIGKILL)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process``'s group (it leads one: ``start_new_session=True``) and reap the leader: for
    servers that do not stop promptly on SIGTERM, and for crash tests."""
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return  # gone already, or the id was recycled by a process that is not ours
