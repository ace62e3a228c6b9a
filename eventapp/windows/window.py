"""Windows: Flink's ``TimeWindow`` (``[start, end)``, epoch milliseconds) and ``GlobalWindow``.

Both are tuples (``NamedTuple``): cheap to create per record, and they are the map key of a
window's state entry as they are.
"""

from __future__ import annotations

from typing import NamedTuple

from eventapp.state.keys import MAX_TIMESTAMP

__all__ = ["GlobalWindow", "TimeWindow", "Window", "window_from_key"]


class TimeWindow(NamedTuple):
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

    def __str__(self) -> str:
        return f"TimeWindow[{self.start}, {self.end})"


class GlobalWindow(NamedTuple):
    """The one window of :class:`~eventapp.windows.GlobalWindows`: every record of a key."""

    def max_timestamp(self) -> int:
        return MAX_TIMESTAMP

    def __str__(self) -> str:
        return "GlobalWindow"


Window = TimeWindow | GlobalWindow


def window_from_key(key: tuple[int, ...]) -> Window:
    """The window a state entry's map key names."""
    if not key:
        return GlobalWindow()
    start, end = key
    return TimeWindow(start, end)
