"""The Kafka source reader: a fixed set of partitions (splits) read with one statically assigned
consumer, handed out to the runtime split by split in turn.

**Fair interleaving.** A broker answers a fetch with whole batches of one partition after another,
so librdkafka's queue can hold tens of thousands of one partition's messages ahead of the next
(measured on Tansu: 8 partitions of 60k messages came out partition 7 first, then 6, ... 0). The
reader therefore moves fetched messages into one buffer per split and hands out each poll's records
in shares over the splits that have some, starting from a different split each poll. A split whose
buffer holds ``split_buffer_bytes`` of payload (counted as records of the mean payload size seen)
has its fetching paused (librdkafka drops what it prefetched for it and fetches it again from the
reader's position once it is resumed, at half the buffer), so the reader keeps consuming until
every split has records to hand out, with bounded memory.

**Pausing** (:meth:`KafkaSourceReader.pause_or_resume`, for watermark alignment): a paused split's
buffered records stay buffered and its partition stops fetching; nothing is lost or repeated.

Records are decoded as they are fetched, into their split's buffer
(:mod:`eventapp.connectors.kafka.records`); one that cannot be decoded becomes an error record for
the job's error policy, never a dropped one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final

import structlog
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from eventapp.errors import ConfigurationError, SourceError
from eventapp.source import SourceRecord

from .config import KafkaSourceConfig, parse_split
from .errors import describe_kafka_error, kafka_error_of
from .records import decode_failure, full_record
from .split_buffer import SplitBuffer
from .startoffsets import resolve_start_offsets

__all__ = ["KafkaSourceReader"]

log = structlog.get_logger("eventapp.connectors.kafka.source")

#: Consumer errors after which reading cannot go on (others, like a broker restart, are retried by
#: librdkafka and only logged).
_FATAL_CONSUMER_ERRORS: Final[frozenset[int]] = frozenset(
    {
        KafkaError._AUTO_OFFSET_RESET,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    }
)


class KafkaSourceReader:
    """Reads a fixed set of partitions with one ``confluent_kafka.Consumer`` (``assign()``).

    ``poll`` returns at most ``max_records`` records, shared among the splits (see the module
    docstring); end-of-partition events are not records. With ``bounded=True`` a split finishes
    once its partition reported end-of-partition (read until EOF, not to the high watermark) and
    its buffered records were handed out; the reader finishes when every split has.
    """

    #: Whether the reader assigns its partitions itself (False: the consumer group does).
    _static_assignment = True

    def __init__(
        self, config: KafkaSourceConfig, splits: Sequence[str], start_positions: Mapping[str, int]
    ) -> None:
        self._config = config
        self._name = config.display_name
        unknown = [s for s in start_positions if s not in splits]
        if unknown:
            raise ConfigurationError(f"start positions given for splits {unknown} that are not being read")
        self._split_of: dict[tuple[str, int], str] = {}
        self._partition: dict[str, TopicPartition] = {}
        self._buffers: dict[str, SplitBuffer] = {}
        #: Where a message goes: (topic, partition) -> (split, append to its buffer); with one topic,
        #: partition -> the same (saves a call per message).
        self._targets: dict[tuple[str, int], tuple[str, Callable[[SourceRecord[Any]], None]]] = {}
        self._by_partition: dict[int, tuple[str, Callable[[SourceRecord[Any]], None]]] | None = (
            {} if len(config.topics) == 1 else None
        )
        self._order: list[str] = []
        for split in splits:
            self._add_split(split)
        self._value_decoder = config.value_decoder
        self._fast = config.key_decoder is None and config.timestamp_extractor is None
        self._bounded = config.bounded
        self._rotation = 0
        self._cap_bytes = config.split_buffer_bytes
        #: The cap in records: split_buffer_bytes over the mean payload size seen so far.
        self._cap = max(1, self._cap_bytes // 100)
        self._seen_records = 0
        self._seen_bytes = 0
        #: Splits that reached their end (bounded reads only).
        self._at_end: set[str] = set()
        #: Splits paused by pause_or_resume (watermark alignment).
        self._paused: set[str] = set()
        #: Splits whose buffer is full.
        self._held: set[str] = set()
        #: Splits whose partition is paused in the consumer (any of the three reasons).
        self._not_fetching: set[str] = set()
        self._skip_before: dict[str, int] = {}
        self._consumer = Consumer(self._consumer_settings())
        self._closed = False
        try:
            start = resolve_start_offsets(self._consumer, config, self._split_of, start_positions)
            if self._static_assignment:
                self._consumer.assign(start.assignment)
        except BaseException:
            self._consumer.close()
            self._closed = True
            raise
        self._started_at = start.started_at
        self._skip_before = {self._split_of[key]: ts for key, ts in start.skip_before.items()}
        log.info(
            "kafka.source.assigned",
            source=self._name,
            group=config.group_id,
            splits=list(splits),
            restored=dict(start_positions),
            start=config.start_position.kind,
            bounded=self._bounded,
        )

    def _consumer_settings(self) -> dict[str, Any]:
        return self._config.consumer_settings()

    def _add_split(self, split: str) -> None:
        """Read ``split`` too (its partition is assigned by the caller)."""
        topic, partition = parse_split(split)
        if topic not in self._config.topics:
            raise ConfigurationError(
                f"split {split!r} is not a split of Kafka source {self._name!r} (topics "
                f"{list(self._config.topics)})"
            )
        buffer = SplitBuffer()
        target = (split, buffer.records.append)
        self._split_of[(topic, partition)] = split
        self._partition[split] = TopicPartition(topic, partition)
        self._buffers[split] = buffer
        self._targets[(topic, partition)] = target
        if self._by_partition is not None:
            self._by_partition[partition] = target
        self._order.append(split)

    def _remove_split(self, split: str) -> None:
        """Stop reading ``split``: its buffered records are dropped (they are after its position,
        so its next owner reads them again); its partition is unassigned by the caller."""
        tp = self._partition.pop(split)
        key = (tp.topic, tp.partition)
        del self._split_of[key], self._buffers[split], self._targets[key]
        if self._by_partition is not None:
            self._by_partition.pop(tp.partition, None)
        self._order.remove(split)
        for states in (self._at_end, self._paused, self._held, self._not_fetching):
            states.discard(split)
        self._skip_before.pop(split, None)
        self._started_at.pop(split, None)

    def start_positions(self) -> Mapping[str, int]:
        """Restored positions and the offsets ``latest`` resolved to (see :class:`SourceReader`)."""
        return dict(self._started_at)

    @property
    def splits(self) -> list[str]:
        return list(self._partition)

    def group_metadata(self) -> Any:
        """The consumer's group metadata (for ``send_offsets_to_transaction``)."""
        return self._consumer.consumer_group_metadata()

    # -- reading ------------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout: float) -> list[SourceRecord[Any]]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first one."""
        if self._closed:
            raise SourceError(f"Kafka source {self._name!r}: the reader is closed")
        try:
            self._fill(max_records, timeout)
        except KafkaException as exc:
            reason = describe_kafka_error(kafka_error_of(exc), exc)
            raise SourceError(f"Kafka source {self._name!r}: consume failed: {reason}") from exc
        return self._take(max_records)

    def _fill(self, max_records: int, timeout: float) -> None:
        """Move fetched messages into the splits' buffers until every split that can be handed out
        and is still fetching has some (at most ``max_records`` per split per call); wait up to
        ``timeout`` for a first message only when nothing at all can be handed out."""
        consumer = self._consumer
        budget = max_records * len(self._order)
        pulled = 0
        while pulled < budget and self._starving():
            messages = consumer.consume(min(max_records, budget - pulled), 0)
            if not messages:
                break
            pulled += len(messages)
            self._stash(messages)
        if pulled == 0 and timeout > 0 and not self._ready():
            first = consumer.poll(timeout)
            if first is not None:
                self._stash([first])
                if max_records > 1:
                    self._stash(consumer.consume(max_records - 1, 0))

    def _starving(self) -> bool:
        """Whether a split that may be handed out and is still fetching has nothing buffered."""
        buffers = self._buffers
        stopped = self._not_fetching
        return any(not buffers[s] and s not in stopped for s in self._order)

    def _ready(self) -> bool:
        paused = self._paused
        return any(buffer and s not in paused for s, buffer in self._buffers.items())

    def _stash(self, messages: Sequence[Message]) -> None:
        """Decode ``messages`` into their splits' buffers; hold splits whose buffer is full."""
        targets, by_partition, at_end = self._targets, self._by_partition, self._at_end
        decode, fast, skip_before = self._value_decoder.decode, self._fast, self._skip_before
        not_available = TIMESTAMP_NOT_AVAILABLE
        seen_bytes = 0
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_error(message, error)
                continue
            if by_partition is not None:
                target = by_partition.get(message.partition())  # type: ignore[arg-type]
            else:
                target = targets.get((message.topic(), message.partition()))  # type: ignore[arg-type]
            if target is None:
                continue  # not ours
            split, append = target
            if split in at_end:
                continue  # past the end of a bounded partition
            ts_type, kafka_ts = message.timestamp()
            timestamp = None if ts_type == not_available else kafka_ts
            if skip_before and split in skip_before:
                if timestamp is not None and timestamp < skip_before[split]:
                    continue
                del skip_before[split]
            if not fast:
                append(full_record(self._config, split, message, timestamp))
                continue
            payload = message.value()
            if payload is None:
                append(SourceRecord(split, None, timestamp, message.offset()))
                continue
            seen_bytes += len(payload)
            try:
                append(SourceRecord(split, decode(payload), timestamp, message.offset()))
            except Exception as exc:  # noqa: BLE001 - any decoder failure becomes an error record
                append(decode_failure(self._config, split, message, payload, timestamp, "value", exc))
        if seen_bytes:
            self._seen_records += len(messages)
            self._seen_bytes += seen_bytes
            self._cap = max(1, self._cap_bytes * self._seen_records // self._seen_bytes)
        cap, held = self._cap, self._held
        for split, buffer in self._buffers.items():
            if split not in held and len(buffer) >= cap:
                held.add(split)
                self._sync_fetching(split)

    def _take(self, max_records: int) -> list[SourceRecord[Any]]:
        """Hand out up to ``max_records`` buffered records in shares over the splits that have some."""
        out: list[SourceRecord[Any]] = []
        order, buffers, paused = self._order, self._buffers, self._paused
        start = self._rotation % len(order) if order else 0
        self._rotation += 1
        active = [buffers[s] for s in order[start:] + order[:start] if buffers[s] and s not in paused]
        if len(active) == 1:
            active[0].take(max_records, out)
            active = []
        while active and len(out) < max_records:
            share = max(1, (max_records - len(out)) // len(active))
            still: list[SplitBuffer] = []
            for buffer in active:
                buffer.take(min(share, max_records - len(out)), out)
                if buffer:
                    still.append(buffer)
                if len(out) >= max_records:
                    break
            active = still
        if self._held:
            resume_at = self._cap // 2
            for split in [s for s in self._held if len(buffers[s]) <= resume_at]:
                self._held.discard(split)
                self._sync_fetching(split)
        return out

    def _on_error(self, message: Message, error: KafkaError) -> None:
        code = error.code()
        topic, partition = message.topic(), message.partition()
        if code == KafkaError._PARTITION_EOF:
            split = self._split_of.get((topic, partition))  # type: ignore[arg-type]
            if self._bounded and split is not None and split not in self._at_end:
                self._at_end.add(split)
                self._sync_fetching(split)
                log.debug("kafka.source.partition_end", source=self._name, split=split)
            return
        where = f" on {topic}-{partition}" if topic is not None else ""
        if error.fatal() or code in _FATAL_CONSUMER_ERRORS:
            hint = ""
            if code == KafkaError._AUTO_OFFSET_RESET:
                hint = (
                    " (no committed offset, or it is out of range, and StartPosition.committed("
                    "reset=OffsetReset.FAIL) forbids guessing)"
                )
            raise SourceError(f"Kafka source {self._name!r}: {describe_kafka_error(error)}{where}{hint}")
        log.warning(
            "kafka.source.consumer_error", source=self._name, error=describe_kafka_error(error), where=where
        )

    # -- pausing ------------------------------------------------------------------------------------

    def pause_or_resume(self, pause: Collection[str], resume: Collection[str]) -> None:
        """Stop handing out (and fetching) the splits in ``pause``; start again for ``resume``."""
        unknown = [s for s in (*pause, *resume) if s not in self._partition]
        if unknown:
            raise ConfigurationError(
                f"cannot pause or resume splits {unknown}: this reader reads {self.splits}"
            )
        for split in pause:
            self._paused.add(split)
            self._sync_fetching(split)
        for split in resume:
            self._paused.discard(split)
            self._sync_fetching(split)

    def _sync_fetching(self, split: str) -> None:
        """Pause or resume ``split``'s partition in the consumer to match its reasons to stop."""
        stop = split in self._paused or split in self._held or split in self._at_end
        if stop == (split in self._not_fetching) or self._closed:
            return
        partition = [self._partition[split]]
        try:
            if stop:
                self._consumer.pause(partition)
                self._not_fetching.add(split)
            else:
                self._consumer.resume(partition)
                self._not_fetching.discard(split)
        except KafkaException as exc:
            raise SourceError(
                f"Kafka source {self._name!r}: cannot {'pause' if stop else 'resume'} split {split!r}: "
                f"{describe_kafka_error(kafka_error_of(exc), exc)}"
            ) from exc

    # -- the end ------------------------------------------------------------------------------------

    def finished_splits(self) -> Collection[str]:
        """The splits of a bounded source that reached their end and handed out every record."""
        return [s for s in self._at_end if not self._buffers[s]]

    def lag(self, positions: Mapping[str, int | None]) -> dict[str, int]:
        """Records between each split's position and the end its partition's last fetch response
        reported (librdkafka's cached high watermark; with read_committed the last stable offset),
        without a broker round trip (see eventapp.source.LagReporter)."""
        lags: dict[str, int] = {}
        for split, position in positions.items():
            partition = self._partition.get(split)
            if partition is None or position is None:
                continue
            try:
                _, high = self._consumer.get_watermark_offsets(partition, cached=True)
            except KafkaException:
                continue  # not fetched yet: the end is unknown
            if high is not None and high >= 0:
                lags[split] = max(0, high - position)
        return lags

    def is_finished(self) -> bool:
        """Unbounded sources never finish; bounded ones once every split has finished."""
        return self._bounded and len(self._at_end) == len(self._partition) and not self._ready_any()

    def _ready_any(self) -> bool:
        return any(self._buffers.values())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._consumer.close()
        log.debug("kafka.source.closed", source=self._name)
