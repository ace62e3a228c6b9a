"""Dead letters: records (or timers) that failed, with the error, routed by ``ErrorPolicy.dead_letter``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from eventapp.errors import RecordProcessingError

__all__ = ["DeadLetter"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A failed record and why it failed.

    ``record`` is the value the operator received, or the undecoded payload (bytes) when the source
    could not decode it. ``split``/``position`` say where it came from (for Kafka: topic-partition
    and offset), so it can be inspected and replayed.
    """

    operator: str
    key: Any
    record: Any
    error_type: str
    error: str
    split: str | None
    position: int | None
    timestamp: int | None

    @classmethod
    def from_error(cls, err: RecordProcessingError, timestamp: int | None) -> DeadLetter:
        return cls(
            operator=err.operator,
            key=err.key,
            record=err.record,
            error_type=type(err.cause).__name__,
            error=str(err.cause),
            split=err.split,
            position=err.position,
            timestamp=timestamp,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (bytes payloads are decoded as UTF-8 with replacement)."""
        data = asdict(self)
        if isinstance(self.record, bytes | bytearray):
            data["record"] = bytes(self.record).decode("utf-8", errors="replace")
        if isinstance(self.key, bytes | bytearray):
            data["key"] = bytes(self.key).decode("utf-8", errors="replace")
        return data
