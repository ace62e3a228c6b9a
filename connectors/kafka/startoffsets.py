"""Where a Kafka source reader starts each partition: restored positions first, else the configured
:class:`~eventapp.connectors.kafka.source_config.StartPosition`, resolved to offsets.

``latest`` (also as the reset of ``committed``, and for a timestamp after a partition's last record)
is resolved to a concrete offset here and reported as a start position, so that the runtime can
checkpoint it before the split reads anything (see :meth:`eventapp.source.SourceReader.start_positions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_STORED,
    Consumer,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from eventapp.errors import ConfigurationError, SourceError

from .config import KafkaSourceConfig, OffsetReset, admin_settings
from .errors import describe_kafka_error, kafka_error_of
from .offsets import committed_offsets

__all__ = ["StartOffsets", "resolve_start_offsets"]


@dataclass
class StartOffsets:
    """The reader's assignment and what it knows about where each split starts."""

    assignment: list[TopicPartition] = field(default_factory=list)
    #: Split -> its start position where known (restored, or ``latest`` resolved).
    started_at: dict[str, int] = field(default_factory=dict)
    #: Partitions started ``from_timestamp``: records before the first one at/after the timestamp
    #: are skipped (the broker's time index may point earlier; Tansu always answers offset 0).
    skip_before: dict[tuple[str, int], int] = field(default_factory=dict)


def resolve_start_offsets(
    consumer: Consumer,
    config: KafkaSourceConfig,
    split_of: Mapping[tuple[str, int], str],
    start_positions: Mapping[str, int],
) -> StartOffsets:
    """The start of every partition in ``split_of`` (see the module docstring)."""
    name = config.display_name
    start = config.start_position
    result = StartOffsets()
    by_time: list[TopicPartition] = []
    to_end: list[TopicPartition] = []
    stored: list[TopicPartition] = []
    for (topic, partition), split in split_of.items():
        restored = start_positions.get(split)
        if restored is not None:
            if not isinstance(restored, int) or restored < 0:
                raise ConfigurationError(
                    f"start position of split {split!r} must be an int >= 0, got {restored!r}"
                )
            result.assignment.append(TopicPartition(topic, partition, restored))
            result.started_at[split] = restored
        elif start.kind == "committed" and start.reset is OffsetReset.LATEST:
            stored.append(TopicPartition(topic, partition))
        elif start.kind == "committed":
            result.assignment.append(TopicPartition(topic, partition, OFFSET_STORED))
        elif start.kind == "earliest":
            result.assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        elif start.kind == "latest":
            to_end.append(TopicPartition(topic, partition))
        else:
            assert start.timestamp_ms is not None
            by_time.append(TopicPartition(topic, partition, start.timestamp_ms))
    if stored:
        found = committed_offsets(
            consumer,
            stored,
            config.operation_timeout_s,
            f"group {config.group_id!r} (Kafka source {name!r})",
            error=SourceError,
        )
        for tp in found:
            if tp.offset >= 0:
                result.assignment.append(tp)
                result.started_at[split_of[(tp.topic, tp.partition)]] = tp.offset
            else:
                to_end.append(TopicPartition(tp.topic, tp.partition))
    if by_time:
        _by_timestamp(consumer, config, by_time, result, to_end)
    for tp in _end_offsets(config, to_end):
        result.assignment.append(tp)
        result.started_at[split_of[(tp.topic, tp.partition)]] = tp.offset
    return result


def _by_timestamp(
    consumer: Consumer,
    config: KafkaSourceConfig,
    partitions: list[TopicPartition],
    result: StartOffsets,
    to_end: list[TopicPartition],
) -> None:
    name = config.display_name
    timestamp = config.start_position.timestamp_ms
    assert timestamp is not None
    try:
        found = consumer.offsets_for_times(partitions, timeout=config.operation_timeout_s)
    except KafkaException as exc:
        raise SourceError(
            f"Kafka source {name!r}: cannot look up offsets for timestamp {timestamp}: "
            f"{describe_kafka_error(kafka_error_of(exc), exc)}"
        ) from exc
    for tp in found:
        if tp.error is not None:
            raise SourceError(
                f"Kafka source {name!r}: offset lookup for timestamp {timestamp} failed on "
                f"{tp.topic}-{tp.partition}: {describe_kafka_error(tp.error)}"
            )
        if tp.offset < 0:
            to_end.append(TopicPartition(tp.topic, tp.partition))
            continue
        # Not recorded as a start position: the time filter only applies to this first start, and
        # resolving the timestamp again after a restart gives the same records.
        result.assignment.append(TopicPartition(tp.topic, tp.partition, tp.offset))
        result.skip_before[(tp.topic, tp.partition)] = timestamp


def _end_offsets(config: KafkaSourceConfig, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """Each partition's end for a ``read_committed`` reader (its last stable offset): what
    librdkafka's ``OFFSET_END`` would resolve to, but known here so it can be checkpointed."""
    if not partitions:
        return []
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
            f"Kafka source {config.display_name!r}: cannot look up the end offsets of "
            f"{[f'{tp.topic}-{tp.partition}' for tp in partitions]} (start position latest): "
            f"{describe_kafka_error(kafka_error_of(exc), exc)}"
        ) from exc
    return result
