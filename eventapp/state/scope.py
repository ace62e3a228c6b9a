"""What keyed state and timers need to know about "now": the split's store, the key, the times."""

from __future__ import annotations

from typing import Any

from eventapp.clock import Clock
from eventapp.state.keys import MIN_TIMESTAMP
from eventapp.state.store import KeyedStateStore

__all__ = ["ExecutionScope", "KeyedScope"]


class ExecutionScope:
    """Shared by every operator of a task: the split being processed and the current times.

    The runtime switches ``store``/``split`` to the split a record (or timer) belongs to before
    calling user code; state handles and timer services read them on every access.
    """

    __slots__ = ("clock", "position", "split", "store", "timestamp", "watermark")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.store: KeyedStateStore | None = None
        self.split: str | None = None
        self.position: int | None = None
        self.timestamp: int | None = None
        self.watermark: int = MIN_TIMESTAMP


class KeyedScope:
    """One keyed operator's current key (and its encoded form) on top of the execution scope."""

    __slots__ = ("execution", "key", "key_bytes", "key_part")

    def __init__(self, execution: ExecutionScope) -> None:
        self.execution = execution
        self.key: Any = None
        self.key_bytes: bytes | None = None
        self.key_part: bytes | None = None
