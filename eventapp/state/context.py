"""The key context: what keyed state and timers read on every access.

A keyed operator owns one :class:`KeyContext` and is the only code that sets it, when it enters a
record or a timer (Flink's ``KeyContext.setCurrentKey``): the split's store, the current key, the
element's timestamp. State handles and timer services obtained in ``open()`` read it, so a handle
is valid for every key and every split the operator sees.
"""

from __future__ import annotations

from typing import Any

from eventapp.clock import Clock
from eventapp.state.keys import MIN_TIMESTAMP, key_part
from eventapp.state.store import KeyedStateStore

__all__ = ["KeyContext"]


class KeyContext:
    """The current split store, key and times of one keyed operator."""

    __slots__ = ("clock", "key", "key_bytes", "key_part", "split", "store", "timestamp", "watermark")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.store: KeyedStateStore | None = None
        self.split: str | None = None
        self.key: Any = None
        self.key_bytes: bytes | None = None
        self.key_part: bytes | None = None
        #: Event time of the element or timer being processed (Flink's ``Context.timestamp()``).
        self.timestamp: int | None = None
        #: The operator's current watermark.
        self.watermark: int = MIN_TIMESTAMP

    def enter(
        self,
        store: KeyedStateStore,
        split: str,
        key: Any,
        key_bytes: bytes,
        timestamp: int | None,
        part: bytes | None = None,
    ) -> None:
        """Make ``key`` of ``split`` current (``part``: its :func:`key_part`, if already known)."""
        self.store = store
        self.split = split
        self.key = key
        self.key_bytes = key_bytes
        self.key_part = key_part(key_bytes) if part is None else part
        self.timestamp = timestamp

    def leave(self) -> None:
        """No key is current (state access now fails with a clear error)."""
        self.key = None
        self.key_bytes = None
        self.key_part = None
