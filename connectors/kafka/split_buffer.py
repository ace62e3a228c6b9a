"""One split's buffer of decoded records in the Kafka source reader (internal)."""

from __future__ import annotations

from typing import Any

from eventapp.source import SourceRecord

__all__ = ["SplitBuffer"]


class SplitBuffer:
    """The decoded records of one split, waiting to be handed out (``records[head:]``)."""

    __slots__ = ("head", "records")

    def __init__(self) -> None:
        self.records: list[SourceRecord[Any]] = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.records) - self.head

    def take(self, n: int, out: list[SourceRecord[Any]]) -> None:
        """Move the first ``n`` waiting records to ``out``."""
        records, head = self.records, self.head
        end = head + n
        out.extend(records[head:end])
        if end >= len(records):
            records.clear()
            self.head = 0
        elif end > 4_096 and 2 * end > len(records):
            del records[:end]
            self.head = 0
        else:
            self.head = end
