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
        """A JSON-friendly dict: bytes (also inside dicts, lists and tuples, such as a Redis
        entry's fields) are decoded as UTF-8 with replacement."""
        data = asdict(self)
        data["record"] = _json_friendly(self.record)
        data["key"] = _json_friendly(self.key)
        return data


def _json_friendly(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {_json_friendly(k): _json_friendly(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_friendly(v) for v in value]
    return value
