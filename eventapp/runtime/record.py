"""The record that walks an operator chain (Flink's ``StreamRecord``), and the split it came from.

A record carries its value, its event timestamp, the split task it belongs to and its position in
that split (``None`` for timer outputs). The split travels with the record, so an operator finds
the split's state store and a sink finds the split's writers without a shared "current split".
Records are reused: an operator may change ``value`` and pass the same object on (Flink's
``element.replace``), so an operator never keeps a record after ``process`` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from eventapp.errors import RecordProcessingError
from eventapp.state.store import KeyedStateStore

__all__ = ["SplitContext", "StreamRecord"]


class SplitContext(Protocol):
    """What operators need of the split a record belongs to (implemented by the split task)."""

    @property
    def id(self) -> str: ...

    @property
    def store(self) -> KeyedStateStore:
        """The split's keyed state (and timers)."""
        ...

    @property
    def checkpoint_id(self) -> int:
        """Id of the split's last committed checkpoint (0: none)."""
        ...

    @property
    def schemas(self) -> dict[str, dict[str, Any]]:
        """Per operator uid, per state name: the schema of the state the store holds (JSON), which
        operators check and update when they register a state (:mod:`eventapp.state.schema`)."""
        ...

    def write(self, sink: int, value: Any, timestamp: int | None) -> None:
        """Write ``value`` to the split's writer of sink number ``sink`` (inside its transaction)."""
        ...

    @property
    def direct_writers(self) -> list[Callable[[Any, int | None], None]] | None:
        """The ``write`` of each sink's writer when a write may go straight to it (the split holds
        no record's outputs back), else ``None``: then :meth:`write` decides."""
        ...

    def fire_timer(self, action: Callable[[], None], timestamp: int, timer_key: bytes) -> None:
        """Run one timer's ``on_timer`` under the split's error policy (a failed firing is rolled
        back and dead-lettered; ``timer_key`` is consumed again after the rollback)."""
        ...


class StreamRecord:
    """One element in flight through the chain."""

    __slots__ = ("position", "split", "timestamp", "value")

    def __init__(
        self, value: Any, timestamp: int | None, split: SplitContext, position: int | None = None
    ) -> None:
        self.value = value
        self.timestamp = timestamp
        self.split = split
        self.position = position

    def __repr__(self) -> str:
        return (
            f"StreamRecord({self.value!r}, timestamp={self.timestamp}, split={self.split.id!r}, "
            f"position={self.position})"
        )

    def failure(self, operator: str, cause: Exception, key: Any = None) -> RecordProcessingError:
        """The error that reports ``cause``, raised by ``operator`` while processing this record."""
        return RecordProcessingError(
            operator=operator,
            key=key,
            record=self.value,
            split=self.split.id,
            position=self.position,
            cause=cause,
        )
