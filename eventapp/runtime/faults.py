"""Fault-injection points for crash tests.

Set ``EVENTAPP_FAULTS`` to a comma-separated list of ``point@n`` (kill the process with SIGKILL at
the n-th time ``point`` is reached) before the process starts, for example
``EVENTAPP_FAULTS=checkpoint.before_commit@3``. Points are reached in checkpoint phases and in the
record loop; ``docs/exactly-once.md`` lists them. Without the variable a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import threading

from eventapp.errors import ConfigurationError

__all__ = ["FAULT_POINTS", "fault_point"]

FAULT_POINTS = (
    "checkpoint.before_flush",
    "checkpoint.after_flush",
    "checkpoint.after_state_snapshot",
    "checkpoint.after_snapshot_complete",
    "checkpoint.before_commit",
    "checkpoint.after_commit",
    "checkpoint.after_prune",
    "record.after_process",
    "timer.after_fire",
)


def _parse(spec: str) -> dict[str, int]:
    plan: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition("@")
        if name not in FAULT_POINTS or not count.isdigit() or int(count) < 1:
            raise ConfigurationError(
                f"EVENTAPP_FAULTS entry {part!r} is invalid; use point@n with n >= 1 and point one of "
                f"{', '.join(FAULT_POINTS)}"
            )
        plan[name] = int(count)
    return plan


_plan = _parse(os.environ.get("EVENTAPP_FAULTS", ""))
_hits: dict[str, int] = {}
_lock = threading.Lock()  # splits checkpoint in parallel threads: count hits exactly


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL if the fault plan says so for this hit of ``name``."""
    if not _plan:
        return
    target = _plan.get(name)
    if target is None:
        return
    with _lock:
        hits = _hits.get(name, 0) + 1
        _hits[name] = hits
    if hits == target:
        os.kill(os.getpid(), signal.SIGKILL)
