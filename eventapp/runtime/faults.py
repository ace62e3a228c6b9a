"""Fault-injection points for crash tests.

Set ``EVENTAPP_FAULTS`` to a comma-separated list of ``point@n`` (kill the process with SIGKILL at
the n-th time ``point`` is reached) or ``point@n:stop`` (stop it with SIGSTOP there, as a long pause
would: a test resumes it with SIGCONT) before the process starts, for example
``EVENTAPP_FAULTS=checkpoint.before_commit@3``. Points are reached in checkpoint phases and in the
record loop; ``docs/exactly-once.md`` lists them. Without the variable a point costs a call that
returns at once, and the points on the record and timer paths are skipped by testing
:data:`FAULTS_PLANNED`.
"""

from __future__ import annotations

import os
import signal
import threading

from eventapp.errors import ConfigurationError

__all__ = ["FAULTS_PLANNED", "FAULT_POINTS", "fault_point"]

FAULT_POINTS = (
    "checkpoint.before_flush",
    "checkpoint.after_flush",
    "checkpoint.after_state_snapshot",
    "checkpoint.after_snapshot_complete",
    "checkpoint.before_commit",
    "checkpoint.after_commit",
    "checkpoint.after_prune",
    "async_checkpoint.in_flight",
    "async_checkpoint.before_release",
    "objectstore.mid_upload",
    "objectstore.before_metadata",
    "objectstore.mid_download",
    "sink.before_commit",
    "sink.after_commit",
    "recover.before_init_transactions",
    "record.after_process",
    "timer.after_fire",
)


_ACTIONS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}


def _parse(spec: str) -> dict[str, tuple[int, signal.Signals]]:
    plan: dict[str, tuple[int, signal.Signals]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, rest = part.partition("@")
        count, _, action = rest.partition(":")
        if (
            name not in FAULT_POINTS
            or not count.isdigit()
            or int(count) < 1
            or (action or "kill") not in _ACTIONS
        ):
            raise ConfigurationError(
                f"EVENTAPP_FAULTS entry {part!r} is invalid; use point@n or point@n:stop with n >= 1 and "
                f"point one of {', '.join(FAULT_POINTS)}"
            )
        plan[name] = (int(count), _ACTIONS[action or "kill"])
    return plan


_plan = _parse(os.environ.get("EVENTAPP_FAULTS", ""))
#: Whether any fault is planned: hot paths (every record, every timer) test this before calling.
FAULTS_PLANNED = bool(_plan)
_hits: dict[str, int] = {}
_lock = threading.Lock()  # splits checkpoint in parallel threads: count hits exactly


def fault_point(name: str) -> None:
    """Kill (or stop) this process if the fault plan says so for this hit of ``name``."""
    if not _plan:
        return
    planned = _plan.get(name)
    if planned is None:
        return
    target, action = planned
    with _lock:
        hits = _hits.get(name, 0) + 1
        _hits[name] = hits
    if hits == target:
        os.kill(os.getpid(), action)
