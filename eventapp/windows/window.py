"""Windows: Flink's ``TimeWindow`` (``[start, end)``, epoch milliseconds) and ``GlobalWindow``."""

from __future__ import annotations

from dataclasses import dataclass

from eventapp.state.keys import MAX_TIMESTAMP

__all__ = ["GlobalWindow", "TimeWindow", "Window", "window_from_key"]


@dataclass(frozen=True, slots=True, order=True)
class TimeWindow:
    """The records with ``start <= timestamp < end``."""

    start: int
    end: int

    def max_timestamp(self) -> int:
        """The largest timestamp in the window, ``end - 1``: a result's timestamp (as in Flink)."""
        return self.end - 1

    def intersects(self, other: TimeWindow) -> bool:
        """Overlapping or adjacent (Flink's rule for merging session windows)."""
        return self.start <= other.end and self.end >= other.start

    def cover(self, other: TimeWindow) -> TimeWindow:
        return TimeWindow(min(self.start, other.start), max(self.end, other.end))

    def key(self) -> tuple[int, ...]:
        return (self.start, self.end)

    def __str__(self) -> str:
        return f"TimeWindow[{self.start}, {self.end})"


@dataclass(frozen=True, slots=True, order=True)
class GlobalWindow:
    """The one window of :class:`~eventapp.windows.GlobalWindows`: every record of a key."""

    def max_timestamp(self) -> int:
        return MAX_TIMESTAMP

    def key(self) -> tuple[int, ...]:
        return ()

    def __str__(self) -> str:
        return "GlobalWindow"


Window = TimeWindow | GlobalWindow


def window_from_key(key: tuple[int, ...]) -> Window:
    """The window a state entry's map key (:meth:`TimeWindow.key`) names."""
    if not key:
        return GlobalWindow()
    start, end = key
    return TimeWindow(start, end)
