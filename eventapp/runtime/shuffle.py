"""The two ends of a ``key_by`` shuffle inside a task (the transport is :mod:`eventapp.shuffle`).

**Writing** (:class:`ShuffleOperator`, where the shuffled ``key_by`` sits in the chain): each record's
key is encoded (a ``str`` as UTF-8, ``bytes`` as they are, anything else as its state-key bytes,
:func:`eventapp.state.keys.encode_key`), its partition is ``murmur2(key bytes) % partitions``
(Kafka's default partitioner, so a ``str`` key lands where a Kafka producer would put it), and
``(timestamp, value)`` is pickled as the payload; a broadcast element (key
:data:`~eventapp.broadcast.BROADCAST_KEY`) is written to every partition. The writes go through
the split's writer of the shuffle's sink, so with exactly-once checkpoints they are in the split's
transaction and become visible downstream when the split's checkpoint commits.

**Watermarks** cross the shuffle as Flink's do across a network exchange: every upstream split
tells every partition its watermark with a marker (:class:`WatermarkMarker`), at most every
``MARKER_INTERVAL_MS`` of processing time (Flink's auto-watermark interval, 200 ms) and always for
the final +inf watermark. A partition's watermark is the minimum over the upstream splits of the
last marker read from each (none read yet: no watermark). Markers are not checkpointed (neither are
Flink's watermarks): after a restore a partition's watermark starts over from the next markers.

**Reading** (:class:`ShuffleReader`, around the transport source's reader): payloads become the
records again, with their original timestamps; markers are consumed, not handed out. A partition
is finished once every upstream split has sent the +inf marker (the upstream inputs were bounded
and finished), which is how a bounded job ends through a shuffle.
"""

from __future__ import annotations

import pickle
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

from eventapp.broadcast import BROADCAST_KEY
from eventapp.errors import SerializationError
from eventapp.partitioning import murmur2
from eventapp.runtime.operators import Operator, OperatorRuntime
from eventapp.runtime.record import StreamRecord
from eventapp.shuffle import ShuffleEnvelope
from eventapp.source import SourceReader, SourceRecord
from eventapp.state.keys import encode_key
from eventapp.watermarks import MAX_WATERMARK, MIN_WATERMARK

__all__ = ["MARKER_INTERVAL_MS", "ShuffleOperator", "ShuffleReader", "WatermarkMarker", "shuffle_key_bytes"]

#: How often (processing time) an upstream split tells the shuffle its advanced watermark.
MARKER_INTERVAL_MS = 200

_PICKLE_PROTOCOL = 5


class WatermarkMarker(NamedTuple):
    """Upstream split ``split``'s watermark, as written into every partition of a shuffle.
    ``generation`` is the split's last committed checkpoint id when it was written: a split restored
    after a stop starts a new generation, whose markers replace older ones even when lower (the
    ``+inf`` of a drained or finished run must not hold for the next one)."""

    split: str
    watermark: int
    generation: int


def shuffle_key_bytes(key: Any) -> bytes:
    """The bytes a key is partitioned by: a ``str``'s UTF-8, ``bytes`` as they are, else its state
    key bytes (raises :class:`SerializationError` naming the key's type if it has none)."""
    if type(key) is str:
        return key.encode()
    if isinstance(key, bytes):
        return key
    return encode_key(key)


class ShuffleOperator(Operator):
    """Writes each record to the shuffle partition of its key (see the module docstring)."""

    def __init__(
        self,
        name: str,
        key_selector: Any,
        partitions: int,
        sink_index: int,
        upstream_splits: Collection[str],
    ) -> None:
        super().__init__(name)
        self.key_selector = key_selector
        self.partitions = partitions
        self.sink_index = sink_index
        self.upstream_splits = frozenset(upstream_splits)
        self._runtime: OperatorRuntime | None = None
        self._announced = MIN_WATERMARK
        self._announced_at = 0
        self._keys: dict[str, tuple[bytes, int]] = {}

    def open(self, runtime: OperatorRuntime) -> None:
        self._runtime = runtime

    def process(self, record: StreamRecord) -> None:
        value = record.value
        try:
            key = self.key_selector(value)
        except Exception as exc:  # the split's error policy decides
            raise record.failure(f"{self.name} (key selector)", exc) from exc
        cached = self._keys.get(key) if type(key) is str else None
        if cached is None:
            try:
                key_bytes = shuffle_key_bytes(key)
            except SerializationError as exc:
                raise record.failure(
                    self.name,
                    SerializationError(
                        f"the key of type {type(key).__name__} cannot be encoded for the shuffle: {exc}"
                    ),
                    key=repr(key),
                ) from exc
            partition = murmur2(key_bytes) % self.partitions
            if type(key) is str and len(self._keys) < 100_000:
                self._keys[key] = (key_bytes, partition)
        else:
            key_bytes, partition = cached
        try:
            payload = pickle.dumps((record.timestamp, value), _PICKLE_PROTOCOL)
        except Exception as exc:  # pickling raises many types; the policy decides
            raise record.failure(
                self.name,
                SerializationError(
                    f"a record of type {type(value).__name__} cannot be pickled for the shuffle: "
                    f"{type(exc).__name__}: {exc}; make the values before key_by picklable"
                ),
                key=key,
            ) from exc
        write, ts = record.split.write, record.timestamp
        if key == BROADCAST_KEY:  # a broadcast element: every partition gets it (eventapp.broadcast)
            for each in range(self.partitions):
                write(self.sink_index, ShuffleEnvelope(each, key_bytes, payload), ts)
            return
        write(self.sink_index, ShuffleEnvelope(partition, key_bytes, payload), ts)

    def process_watermark(self, watermark: int) -> int:
        if watermark <= self.watermark:
            return 0
        self.watermark = watermark
        runtime = self._runtime
        now = 0 if runtime is None else runtime.clock.now_ms()
        if watermark == MAX_WATERMARK or now - self._announced_at >= MARKER_INTERVAL_MS:
            self._announce(now)
        return 0

    def on_processing_time(self, now_ms: int) -> int:
        if self.watermark > self._announced and now_ms - self._announced_at >= MARKER_INTERVAL_MS:
            self._announce(now_ms)
        return 0

    def _announce(self, now_ms: int) -> None:
        """Write this task's watermark to every partition, once per upstream split it owns."""
        runtime = self._runtime
        assert runtime is not None
        watermark = self.watermark
        for split_id, split in runtime.splits.items():
            if split_id not in self.upstream_splits:
                continue
            marker = WatermarkMarker(split_id, watermark, split.checkpoint_id)
            payload = pickle.dumps(marker, _PICKLE_PROTOCOL)
            for partition in range(self.partitions):
                split.write(self.sink_index, ShuffleEnvelope(partition, None, payload), None)
        self._announced = watermark
        self._announced_at = now_ms


class ShuffleReader:
    """Reads a shuffle's partitions: records back from their payloads, watermarks from the
    markers (see the module docstring)."""

    def __init__(
        self, inner: SourceReader[Any], splits: Sequence[str], upstream_splits: Collection[str]
    ) -> None:
        self._inner = inner
        self._upstream = frozenset(upstream_splits)
        #: Per split, per upstream split: (generation, watermark) of its latest marker.
        self._marks: dict[str, dict[str, tuple[int, int]]] = {split: {} for split in splits}
        self._finished: set[str] = set()
        #: Per split, the position after the last marker consumed (markers are not handed out).
        self._consumed: dict[str, int] = {}

    def poll(self, max_records: int, timeout: float) -> Sequence[SourceRecord[Any]]:
        records = self._inner.poll(max_records, timeout)
        out: list[SourceRecord[Any]] = []
        loads = pickle.loads
        for record in records:
            if record.error is not None:
                out.append(record)
                continue
            try:
                decoded = loads(record.value)
            except Exception as exc:  # noqa: BLE001 - an undecodable payload goes to the error policy
                record.raw, record.value = record.value, None
                record.error = SerializationError(
                    f"shuffle split {record.split!r} offset {record.position}: the payload is not "
                    f"an eventapp shuffle record ({type(exc).__name__}: {exc}); the repartition "
                    f"topic is written only by eventapp's key_by"
                )
                out.append(record)
                continue
            if type(decoded) is WatermarkMarker:
                self._mark(record.split, decoded)
                if record.position is not None:
                    self._consumed[record.split] = record.position + 1
                continue
            record.timestamp, record.value = decoded
            out.append(record)
        return out

    def _mark(self, split: str, marker: WatermarkMarker) -> None:
        marks = self._marks.setdefault(split, {})
        mark = (marker.generation, marker.watermark)
        if mark > marks.get(marker.split, (-1, MIN_WATERMARK)):
            marks[marker.split] = mark
            if all(marks.get(s, (0, MIN_WATERMARK))[1] == MAX_WATERMARK for s in self._upstream):
                self._finished.add(split)
            else:
                self._finished.discard(split)

    def announced_watermarks(self) -> Mapping[str, int]:
        """Per split: the minimum over the upstream splits of their latest marker (MIN until every
        upstream split has sent one)."""
        upstream = self._upstream
        result: dict[str, int] = {}
        for split, marks in self._marks.items():
            if len(marks) < len(upstream):
                result[split] = MIN_WATERMARK
            else:
                result[split] = min(marks[s][1] for s in upstream)
        return result

    def consumed_positions(self) -> Mapping[str, int]:
        """Per split, the position after the last marker it consumed: a split's position moves past
        markers too, so a restart does not read them again."""
        return self._consumed

    def is_finished(self) -> bool:
        return len(self._finished) == len(self._marks)

    def finished_splits(self) -> Collection[str]:
        return self._finished

    def start_positions(self) -> Mapping[str, int]:
        return self._inner.start_positions()

    def close(self) -> None:
        self._inner.close()
