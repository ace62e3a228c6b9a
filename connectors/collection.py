"""In-memory sources and sinks for tests, examples and benchmarks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

from eventapp.errors import ConfigurationError
from eventapp.sink import SinkContext
from eventapp.source import SourceRecord

__all__ = ["CollectionSink", "CollectionSource"]

T = TypeVar("T")


class CollectionSource(Generic[T]):
    """Records from memory, spread over ``splits`` splits named ``<name>-<i>``.

    ``partitioner(value) -> int`` picks a record's split (default: round robin), like a Kafka
    producer's partitioner. ``timestamp(value) -> ms`` gives records a source timestamp. Positions
    are indexes within a split, so a job restored from a checkpoint resumes where it left off.
    A source created with ``bounded=False`` stays open: ``add()`` more records and ``end()`` it.
    """

    def __init__(
        self,
        elements: Iterable[T] = (),
        *,
        name: str = "collection",
        splits: int = 1,
        partitioner: Callable[[T], int] | None = None,
        timestamp: Callable[[T], int] | None = None,
        bounded: bool = True,
    ) -> None:
        if splits < 1:
            raise ConfigurationError(f"CollectionSource needs splits >= 1, got {splits}")
        self._name = name
        self._split_ids = [f"{name}-{i}" for i in range(splits)]
        self._data: dict[str, list[tuple[T, int | None]]] = {s: [] for s in self._split_ids}
        self._partitioner = partitioner
        self._timestamp = timestamp
        self._next = 0
        self._ended = False
        self._lock = threading.Lock()
        for e in elements:
            self.add(e)
        if bounded:
            self._ended = True

    @property
    def name(self) -> str:
        return self._name

    def splits(self) -> Sequence[str]:
        return list(self._split_ids)

    def add(self, value: T) -> None:
        with self._lock:
            if self._ended:
                raise ConfigurationError(f"source {self._name!r} has ended; records can no longer be added")
            if self._partitioner is None:
                index = self._next % len(self._split_ids)
                self._next += 1
            else:
                index = self._partitioner(value) % len(self._split_ids)
            ts = None if self._timestamp is None else self._timestamp(value)
            self._data[self._split_ids[index]].append((value, ts))

    def end(self) -> None:
        with self._lock:
            self._ended = True

    def records(self, split: str) -> list[tuple[T, int | None]]:
        return list(self._data[split])

    def create_reader(
        self, splits: Sequence[str], start_positions: Mapping[str, int]
    ) -> _CollectionReader[T]:
        return _CollectionReader(self, list(splits), dict(start_positions))

    def _ended_now(self) -> bool:
        with self._lock:
            return self._ended


class _CollectionReader(Generic[T]):
    """Hands out the splits' records fairly: each poll shares ``max_records`` among the splits that
    have records (starting from a different split each time), so no split waits for another to be
    drained. Splits can be paused (watermark alignment)."""

    def __init__(self, source: CollectionSource[T], splits: list[str], positions: dict[str, int]) -> None:
        self._source = source
        self._splits = splits
        self._positions = {s: positions.get(s, 0) for s in splits}
        self._started_at = dict(self._positions)
        self._paused: set[str] = set()
        self._rotation = 0
        self._finished = False

    def start_positions(self) -> Mapping[str, int]:
        return self._started_at

    def pause_or_resume(self, pause: Collection[str], resume: Collection[str]) -> None:
        self._paused.update(pause)
        self._paused.difference_update(resume)

    def poll(self, max_records: int, timeout: float) -> Sequence[SourceRecord[T]]:
        out: list[SourceRecord[T]] = []
        ended = self._source._ended_now()
        data = self._source._data
        positions = self._positions
        n = len(self._splits)
        order = self._splits[self._rotation % n :] + self._splits[: self._rotation % n]
        self._rotation += 1
        active = [s for s in order if s not in self._paused and positions[s] < len(data[s])]
        while active and len(out) < max_records:
            share = max(1, (max_records - len(out)) // len(active))
            still: list[str] = []
            for split in active:
                records = data[split]
                pos = positions[split]
                end = min(len(records), pos + share, pos + max_records - len(out))
                for i in range(pos, end):
                    value, ts = records[i]
                    out.append(SourceRecord(split, value, ts, i))
                positions[split] = end
                if end < len(records):
                    still.append(split)
                if len(out) >= max_records:
                    break
            active = still
        if not out and ended and all(positions[s] >= len(data[s]) for s in self._splits):
            self._finished = True
        return out

    def is_finished(self) -> bool:
        return self._finished

    def finished_splits(self) -> Collection[str]:
        if not self._source._ended_now():
            return ()
        data, positions = self._source._data, self._positions
        return [s for s in self._splits if positions[s] >= len(data[s])]

    def close(self) -> None:
        return None


class CollectionSink(Generic[T]):
    """Collects written values in memory: ``values`` in write order, ``records`` with timestamps,
    and ``by_split`` per input split. Flush and checkpoint are no-ops (nothing to make durable)."""

    def __init__(self, name: str = "collect") -> None:
        self._name = name
        self._lock = threading.Lock()
        self.records: list[tuple[T, int | None]] = []
        self.by_split: dict[str, list[T]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def values(self) -> list[T]:
        with self._lock:
            return [v for v, _ in self.records]

    def clear(self) -> None:
        with self._lock:
            self.records.clear()
            self.by_split.clear()

    def create_writer(self, context: SinkContext) -> _CollectionWriter[T]:
        return _CollectionWriter(self, context.split)

    def _append(self, split: str, value: T, timestamp: int | None) -> None:
        with self._lock:
            self.records.append((value, timestamp))
            self.by_split.setdefault(split, []).append(value)


class _CollectionWriter(Generic[T]):
    __slots__ = ("_sink", "_split", "records_written")

    def __init__(self, sink: CollectionSink[T], split: str) -> None:
        self._sink = sink
        self._split = split
        #: Values written (see eventapp.sink.WriteCounter).
        self.records_written = 0

    def write(self, value: T, timestamp: int | None) -> None:
        self._sink._append(self._split, value, timestamp)
        self.records_written += 1

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None
