"""Evictors (Flink's ``Evictor``): drop elements of a window before or after its function runs.

A window with an evictor keeps every element (with its timestamp) instead of an incremental
aggregate, as in Flink; ``reduce``/``aggregate`` then run over the remaining elements when it fires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventapp.errors import ConfigurationError

__all__ = ["CountEvictor", "Evictor", "TimeEvictor", "TimestampedValue"]

#: An element of a window with an evictor: ``(timestamp, value)``.
TimestampedValue = tuple[int, Any]


class Evictor:
    """Override :meth:`evict_before` and/or :meth:`evict_after`; each returns the elements to keep."""

    def evict_before(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        return elements

    def evict_after(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        return elements


@dataclass(frozen=True)
class CountEvictor(Evictor):
    """Keeps the last ``count`` elements (before the function; after it with ``after=True``)."""

    count: int
    after: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count <= 0:
            raise ConfigurationError(f"CountEvictor: count must be a positive int, got {self.count!r}")

    @classmethod
    def of(cls, count: int, after: bool = False) -> CountEvictor:
        return cls(count, after)

    def _keep(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        return elements[-self.count :]

    def evict_before(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        return elements if self.after else self._keep(elements)

    def evict_after(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        return self._keep(elements) if self.after else elements


@dataclass(frozen=True)
class TimeEvictor(Evictor):
    """Keeps the elements within ``size`` ms of the newest element's timestamp."""

    size: int
    after: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 0:
            raise ConfigurationError(f"TimeEvictor: size must be >= 0 ms, got {self.size!r}")

    @classmethod
    def of(cls, size: int, after: bool = False) -> TimeEvictor:
        return cls(size, after)

    def _keep(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        if not elements:
            return elements
        cutoff = max(ts for ts, _ in elements) - self.size
        return [element for element in elements if element[0] > cutoff]

    def evict_before(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        return elements if self.after else self._keep(elements)

    def evict_after(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        return self._keep(elements) if self.after else elements
