"""The messages between the job manager and its workers (internal).

Each is one JSON object per line. Worker to job manager, on the report pipe (file descriptor
``--report-fd``): ``started``, ``status``, ``checkpoint``, ``checkpoint_ack``, ``failed``,
``exiting`` (the run ended normally; ``finished``: its source reached its end). Job manager to
worker, on the worker's stdin: ``checkpoint`` (take one now, answer with
``checkpoint_ack``), ``stop`` (final checkpoint, optionally drained), ``cancel`` (stop without
one). A worker whose stdin closes (the job manager is gone) stops as on ``stop``.

The stdlib ``json`` encodes them, not orjson: positions may be wider than 64 bits (a Redis stream
entry id is ``(ms << 64) | seq``), which orjson refuses; a few messages a second cost nothing.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["decode", "encode"]

# Worker -> job manager.
STARTED: Final = "started"
STATUS: Final = "status"
CHECKPOINT: Final = "checkpoint"
CHECKPOINT_ACK: Final = "checkpoint_ack"
FAILED: Final = "failed"
EXITING: Final = "exiting"

# Job manager -> worker.
TRIGGER_CHECKPOINT: Final = "checkpoint"
STOP: Final = "stop"
CANCEL: Final = "cancel"


def encode(kind: str, **fields: Any) -> bytes:
    """One message line."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any] | None:
    """The message of one line, or None if it is not one (a torn last line of a killed worker)."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return message if isinstance(message, dict) and isinstance(message.get("type"), str) else None
