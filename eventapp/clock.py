"""Processing-time clocks. Tests use :class:`ManualClock` to control processing time."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    def now_ms(self) -> int:
        """Current processing time in epoch milliseconds."""
        ...


class SystemClock:
    """The wall clock."""

    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to."""

    __slots__ = ("_now",)

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def set(self, now_ms: int) -> None:
        if now_ms < self._now:
            raise ValueError(f"processing time cannot go back: {now_ms} < {self._now}")
        self._now = now_ms

    def advance(self, delta_ms: int) -> None:
        self.set(self._now + delta_ms)

    def __repr__(self) -> str:
        return f"ManualClock({self._now})"
