"""The Kafka source: each partition is a split, read with one statically assigned consumer.

There is no consumer-group rebalancing: a subtask owns a fixed set of splits and its reader
``assign()``\\ s exactly those partitions at their start positions (restored positions first, else the
configured :class:`~eventapp.connectors.kafka.config.StartPosition`). Positions are never committed by
the consumer; the split's commit point commits them with each checkpoint.

A record whose value (or key) cannot be decoded is not dropped and does not stop the reader: it is
returned as a ``SourceRecord`` with ``value=None``, ``raw`` = the payload and ``error`` = a
:class:`~eventapp.errors.SerializationError` naming topic, partition and offset, so the job's error
policy decides.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_STORED,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from eventapp.checkpoint.commit import CommitPoint
from eventapp.errors import ConfigurationError, SerializationError, SourceError
from eventapp.source import SourceRecord

from .clientlog import mark_reachable
from .commit import KafkaOffsetsCommitPoint, KafkaTransactionalCommitPoint
from .config import (
    KafkaCommitConfig,
    KafkaSourceConfig,
    OffsetReset,
    admin_settings,
    parse_split,
    split_id,
    validate_transaction_timeout,
)
from .errors import describe_kafka_error, kafka_error_of
from .offsets import committed_offsets

__all__ = ["KafkaRecord", "KafkaSource", "KafkaSourceReader"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

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


#: ``list_topics`` errors retried until ``operation_timeout_s`` (no broker answered in time).
_RETRIED_METADATA_ERRORS: Final[frozenset[int]] = frozenset(
    {KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
)


@dataclass(frozen=True, slots=True)
class KafkaRecord(Generic[T]):
    """A record with its Kafka envelope (``KafkaSourceConfig(as_kafka_record=True)``)."""

    key: Any
    value: T
    headers: tuple[tuple[str, bytes | None], ...]
    topic: str
    partition: int
    offset: int
    timestamp: int | None


class KafkaSource(Generic[T]):
    """A Kafka source (implements :class:`eventapp.source.Source` and ``CommittingSource``)."""

    def __init__(self, config: KafkaSourceConfig) -> None:
        if not isinstance(config, KafkaSourceConfig):
            raise ConfigurationError(f"KafkaSource needs a KafkaSourceConfig, got {config!r}")
        self._config = config

    @property
    def config(self) -> KafkaSourceConfig:
        return self._config

    @property
    def name(self) -> str:
        return self._config.display_name

    def __repr__(self) -> str:
        return f"KafkaSource({self.name!r}, group={self._config.group_id!r})"

    def splits(self) -> list[str]:
        """``"<topic>-<partition>"`` for every partition of every configured topic (from metadata)."""
        config = self._config
        settings = admin_settings(config.bootstrap_servers, config.consumer_config)
        admin = AdminClient(settings)
        deadline = time.monotonic() + config.operation_timeout_s
        attempt_s = 0.5
        while True:
            try:
                # Metadata of all topics: naming a topic in the request makes some brokers (Tansu, Kafka
                # with auto.create.topics.enable) create it, and a typo must not create a topic.
                metadata = admin.list_topics(timeout=max(0.001, min(attempt_s, deadline - time.monotonic())))
                break
            except KafkaException as exc:
                # The client's log lines and errors (kafka.broker_unreachable) are delivered by poll()
                # only: serve them between attempts of growing length until the operation timeout.
                admin.poll(0)
                error = kafka_error_of(exc)
                retry = error is not None and error.code() in _RETRIED_METADATA_ERRORS
                if not retry or time.monotonic() >= deadline:
                    raise SourceError(
                        f"Kafka source {self.name!r}: cannot read topic metadata from "
                        f"{config.bootstrap_servers}: {describe_kafka_error(error, exc)}"
                    ) from exc
                attempt_s *= 2
        mark_reachable(settings)
        result: list[str] = []
        for topic in config.topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None or not described.partitions:
                reason = (
                    "no partitions"
                    if described is not None and described.error is None
                    else (describe_kafka_error(described.error) if described is not None else "missing")
                )
                raise SourceError(
                    f"Kafka source {self.name!r}: topic {topic!r} is not available on "
                    f"{config.bootstrap_servers} ({reason}); create it first"
                )
            result.extend(split_id(topic, p) for p in sorted(described.partitions))
        return result

    def create_reader(self, splits: Sequence[str], start_positions: Mapping[str, int]) -> KafkaSourceReader:
        return KafkaSourceReader(self._config, splits, start_positions)

    def commit_config(self, job: str) -> KafkaCommitConfig:
        return KafkaCommitConfig.for_source(self._config, job)

    def validate_checkpointing(self, interval_ms: int, exactly_once: bool) -> None:
        """Exactly-once: ``transaction_timeout_ms`` must outlast a checkpoint interval (3x) and stay
        within the brokers' maximum (see :func:`validate_transaction_timeout`)."""
        if exactly_once:
            validate_transaction_timeout(self._config.transaction_timeout_ms, interval_ms)

    def create_commit_point(self, job: str, split: str, exactly_once: bool) -> CommitPoint:
        """Exactly-once: a :class:`KafkaTransactionalCommitPoint` (transactional.id
        ``"<prefix>-<topic>-<partition>"``, prefix defaulting to ``job``); else a
        :class:`KafkaOffsetsCommitPoint`."""
        topic, _ = parse_split(split)
        if topic not in self._config.topics:
            raise ConfigurationError(f"split {split!r} is not a split of Kafka source {self.name!r}")
        config = self.commit_config(job)
        if exactly_once:
            return KafkaTransactionalCommitPoint(config, split)
        return KafkaOffsetsCommitPoint(config, split)


class KafkaSourceReader:
    """Reads a fixed set of partitions with one ``confluent_kafka.Consumer`` (``assign()``).

    ``poll`` returns at most ``max_records`` records; end-of-partition events are not records. With
    ``bounded=True`` the reader finishes once every partition reported end-of-partition (read until
    EOF, not to the high watermark): a partition that reached its end is paused.
    """

    def __init__(
        self, config: KafkaSourceConfig, splits: Sequence[str], start_positions: Mapping[str, int]
    ) -> None:
        self._config = config
        self._name = config.display_name
        unknown = [s for s in start_positions if s not in splits]
        if unknown:
            raise ConfigurationError(f"start positions given for splits {unknown} that are not being read")
        self._split_of: dict[tuple[str, int], str] = {}
        for split in splits:
            topic, partition = parse_split(split)
            if topic not in config.topics:
                raise ConfigurationError(
                    f"split {split!r} is not a split of Kafka source {self._name!r} (topics "
                    f"{list(config.topics)})"
                )
            self._split_of[(topic, partition)] = split
        self._value_decoder = config.value_decoder
        self._key_decoder = config.key_decoder
        self._extractor = config.timestamp_extractor
        self._bounded = config.bounded
        self._at_end: set[tuple[str, int]] = set()
        #: Partitions started ``from_timestamp``: records before the first one at/after the timestamp
        #: are skipped (the broker's time index may point earlier; Tansu always answers offset 0).
        self._skip_before: dict[tuple[str, int], int] = {}
        self._started_at: dict[str, int] = {}
        self._consumer = Consumer(config.consumer_settings())
        self._closed = False
        try:
            assignment = self._start_offsets(start_positions)
            self._consumer.assign(assignment)
        except BaseException:
            self._consumer.close()
            self._closed = True
            raise
        log.info(
            "kafka.source.assigned",
            source=self._name,
            group=config.group_id,
            splits=list(splits),
            restored={s: p for s, p in start_positions.items()},
            start=config.start_position.kind,
            bounded=self._bounded,
        )

    def _start_offsets(self, start_positions: Mapping[str, int]) -> list[TopicPartition]:
        """The assignment: restored positions, else the configured start. ``latest`` (also as the
        reset of ``committed`` and for a timestamp after a partition's last record) is resolved to a
        concrete offset here and recorded in :meth:`start_positions`."""
        start = self._config.start_position
        assignment: list[TopicPartition] = []
        by_time: list[TopicPartition] = []
        to_end: list[TopicPartition] = []
        stored: list[TopicPartition] = []
        for (topic, partition), split in self._split_of.items():
            restored = start_positions.get(split)
            if restored is not None:
                if not isinstance(restored, int) or restored < 0:
                    raise ConfigurationError(
                        f"start position of split {split!r} must be an int >= 0, got {restored!r}"
                    )
                assignment.append(TopicPartition(topic, partition, restored))
                self._started_at[split] = restored
            elif start.kind == "committed" and start.reset is OffsetReset.LATEST:
                stored.append(TopicPartition(topic, partition))
            elif start.kind == "committed":
                assignment.append(TopicPartition(topic, partition, OFFSET_STORED))
            elif start.kind == "earliest":
                assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
            elif start.kind == "latest":
                to_end.append(TopicPartition(topic, partition))
            else:
                assert start.timestamp_ms is not None
                by_time.append(TopicPartition(topic, partition, start.timestamp_ms))
        if stored:
            found = committed_offsets(
                self._consumer,
                stored,
                self._config.operation_timeout_s,
                f"group {self._config.group_id!r} (Kafka source {self._name!r})",
                error=SourceError,
            )
            for tp in found:
                if tp.offset >= 0:
                    assignment.append(tp)
                    self._started_at[self._split_of[(tp.topic, tp.partition)]] = tp.offset
                else:
                    to_end.append(TopicPartition(tp.topic, tp.partition))
        if by_time:
            assert start.timestamp_ms is not None
            try:
                found = self._consumer.offsets_for_times(by_time, timeout=self._config.operation_timeout_s)
            except KafkaException as exc:
                raise SourceError(
                    f"Kafka source {self._name!r}: cannot look up offsets for timestamp "
                    f"{start.timestamp_ms}: {describe_kafka_error(kafka_error_of(exc), exc)}"
                ) from exc
            for tp in found:
                if tp.error is not None:
                    raise SourceError(
                        f"Kafka source {self._name!r}: offset lookup for timestamp {start.timestamp_ms} "
                        f"failed on {tp.topic}-{tp.partition}: {describe_kafka_error(tp.error)}"
                    )
                if tp.offset < 0:
                    to_end.append(TopicPartition(tp.topic, tp.partition))
                    continue
                # Not recorded as a start position: the time filter below only applies to this first
                # start, and resolving the timestamp again after a restart gives the same records.
                assignment.append(TopicPartition(tp.topic, tp.partition, tp.offset))
                self._skip_before[(tp.topic, tp.partition)] = start.timestamp_ms
        for tp in self._end_offsets(to_end):
            assignment.append(tp)
            self._started_at[self._split_of[(tp.topic, tp.partition)]] = tp.offset
        return assignment

    def _end_offsets(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Each partition's end for a ``read_committed`` reader (its last stable offset): what
        librdkafka's ``OFFSET_END`` would resolve to, but known here so it can be checkpointed."""
        if not partitions:
            return []
        config = self._config
        admin = AdminClient(admin_settings(config.bootstrap_servers, config.consumer_config))
        try:
            latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
            futures = admin.list_offsets(
                {tp: latest for tp in partitions},
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=config.operation_timeout_s,
            )
            result: list[TopicPartition] = []
            for tp, future in futures.items():
                info = future.result(timeout=config.operation_timeout_s)
                result.append(TopicPartition(tp.topic, tp.partition, info.offset))
        except (KafkaException, TimeoutError) as exc:
            raise SourceError(
                f"Kafka source {self._name!r}: cannot look up the end offsets of "
                f"{[f'{tp.topic}-{tp.partition}' for tp in partitions]} (start position latest): "
                f"{describe_kafka_error(kafka_error_of(exc), exc)}"
            ) from exc
        return result

    def start_positions(self) -> Mapping[str, int]:
        """Restored positions and the offsets ``latest`` resolved to (see :class:`SourceReader`)."""
        return dict(self._started_at)

    @property
    def splits(self) -> list[str]:
        return list(self._split_of.values())

    def group_metadata(self) -> Any:
        """The consumer's group metadata (for ``send_offsets_to_transaction``)."""
        return self._consumer.consumer_group_metadata()

    def poll(self, max_records: int, timeout: float) -> list[SourceRecord[Any]]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first one."""
        if self._closed:
            raise SourceError(f"Kafka source {self._name!r}: the reader is closed")
        if self._bounded and len(self._at_end) == len(self._split_of):
            return []
        try:
            # Take what is already fetched without waiting; only when nothing is there, wait for the
            # first message (consume(n, timeout) would wait for all n or the whole timeout, which
            # adds up to `timeout` of latency at low input rates).
            consumer = self._consumer
            messages = consumer.consume(max_records, 0)
            if not messages and timeout > 0:
                first = consumer.poll(timeout)
                if first is not None:
                    messages = [first]
                    if max_records > 1:
                        messages.extend(consumer.consume(max_records - 1, 0))
        except KafkaException as exc:
            reason = describe_kafka_error(kafka_error_of(exc), exc)
            raise SourceError(f"Kafka source {self._name!r}: consume failed: {reason}") from exc
        records: list[SourceRecord[Any]] = []
        append = records.append
        split_of = self._split_of
        decode = self._value_decoder.decode
        as_record = self._key_decoder is not None
        extractor = self._extractor
        skip_before = self._skip_before
        at_end = self._at_end
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_error(message, error)
                continue
            topic = message.topic()
            partition = message.partition()
            assert topic is not None and partition is not None
            key = (topic, partition)
            split = split_of.get(key)
            if split is None or key in at_end:
                continue  # not ours, or past the end of a bounded partition
            ts_type, ts = message.timestamp()
            timestamp = None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts
            if skip_before and key in skip_before:
                if timestamp is not None and timestamp < skip_before[key]:
                    continue
                del skip_before[key]
            offset = message.offset()
            payload = message.value()
            if not as_record and extractor is None:
                if payload is None:
                    append(SourceRecord(split, None, timestamp, offset))
                    continue
                try:
                    append(SourceRecord(split, decode(payload), timestamp, offset))
                except Exception as exc:  # noqa: BLE001 - any decoder failure becomes an error record
                    append(self._decode_failure(split, message, payload, timestamp, "value", exc))
                continue
            append(self._full_record(split, message, payload, timestamp))
        return records

    def _full_record(
        self, split: str, message: Message, payload: bytes | None, timestamp: int | None
    ) -> SourceRecord[Any]:
        """Slow path: envelope (``as_kafka_record``) and/or a timestamp extractor."""
        offset = message.offset()
        value: Any
        try:
            value = None if payload is None else self._value_decoder.decode(payload)
        except Exception as exc:  # noqa: BLE001 - any decoder failure becomes an error record
            return self._decode_failure(split, message, payload, timestamp, "value", exc)
        if self._key_decoder is not None:
            raw_key = message.key()
            try:
                key = None if raw_key is None else self._key_decoder.decode(raw_key)
            except Exception as exc:  # noqa: BLE001 - any decoder failure becomes an error record
                return self._decode_failure(split, message, raw_key, timestamp, "key", exc)
            headers = message.headers() or ()
            value = KafkaRecord(
                key=key,
                value=value,
                headers=tuple((str(h[0]), _header_bytes(h[1])) for h in headers)
                if isinstance(headers, list | tuple)
                else tuple((str(k), _header_bytes(v)) for k, v in headers.items()),
                topic=str(message.topic()),
                partition=int(message.partition() or 0),
                offset=int(offset or 0),
                timestamp=timestamp,
            )
        extractor = self._extractor
        if extractor is not None:
            try:
                extracted = extractor(value)
                if not isinstance(extracted, int) or isinstance(extracted, bool):
                    raise TypeError(f"returned {extracted!r}, not an int of epoch milliseconds")
            except Exception as exc:  # noqa: BLE001 - a failing extractor becomes an error record
                error = SourceError(
                    f"timestamp extractor {getattr(extractor, '__qualname__', extractor)!r} failed on the "
                    f"record at {message.topic()}-{message.partition()} offset {offset}: "
                    f"{type(exc).__name__}: {exc}"
                )
                error.__cause__ = exc
                return SourceRecord(split, None, timestamp, offset, raw=payload, error=error)
            timestamp = extracted
        return SourceRecord(split, value, timestamp, offset)

    def _decode_failure(
        self,
        split: str,
        message: Message,
        raw: bytes | None,
        timestamp: int | None,
        what: str,
        exc: Exception,
    ) -> SourceRecord[Any]:
        decoder = self._value_decoder if what == "value" else self._key_decoder
        how = decoder.description if decoder is not None else "?"
        error = SerializationError(
            f"cannot decode the {what} of the record at {message.topic()}-{message.partition()} offset "
            f"{message.offset()} (topic {message.topic()!r}, partition {message.partition()}) with "
            f"{how}: {type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
        return SourceRecord(split, None, timestamp, message.offset(), raw=raw, error=error)

    def _on_error(self, message: Message, error: KafkaError) -> None:
        code = error.code()
        topic, partition = message.topic(), message.partition()
        if code == KafkaError._PARTITION_EOF:
            if self._bounded and topic is not None and partition is not None:
                key = (topic, partition)
                if key in self._split_of and key not in self._at_end:
                    self._at_end.add(key)
                    self._consumer.pause([TopicPartition(topic, partition)])
                    log.debug("kafka.source.partition_end", source=self._name, split=self._split_of[key])
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

    def is_finished(self) -> bool:
        """Unbounded sources never finish; bounded ones once every partition reached its end."""
        return self._bounded and len(self._at_end) == len(self._split_of)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._consumer.close()
        log.debug("kafka.source.closed", source=self._name)


def _header_bytes(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value).encode()
