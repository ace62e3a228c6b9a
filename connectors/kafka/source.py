"""The Kafka source: each partition is a split, read with one statically assigned consumer.

There is no consumer-group rebalancing: a subtask owns a fixed set of splits and its reader
(:mod:`eventapp.connectors.kafka.reader`) ``assign()``\\ s exactly those partitions at their start
positions (restored positions first, else the configured
:class:`~eventapp.connectors.kafka.config.StartPosition`, see
:mod:`eventapp.connectors.kafka.startoffsets`). Positions are never committed by the consumer; the
split's commit point commits them with each checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Final, Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from eventapp.checkpoint.commit import CommitPoint
from eventapp.errors import ConfigurationError, SourceError
from eventapp.shuffle import ShuffleChannel
from eventapp.source import SplitListener

from .clientlog import mark_reachable
from .commit import KafkaTransactionalCommitPoint
from .commit_offsets import KafkaOffsetsCommitPoint
from .config import (
    KafkaCommitConfig,
    KafkaSourceConfig,
    admin_settings,
    parse_split,
    split_id,
    validate_transaction_timeout,
)
from .errors import describe_kafka_error, kafka_error_of
from .group_reader import KafkaGroupReader
from .marker_reader import MarkerHonouringReader
from .reader import KafkaSourceReader
from .shuffle import shuffle_ends

__all__ = ["KafkaSource"]

T = TypeVar("T")

#: ``list_topics`` errors retried until ``operation_timeout_s`` (no broker answered in time).
_RETRIED_METADATA_ERRORS: Final[frozenset[int]] = frozenset(
    {KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
)


class KafkaSource(Generic[T]):
    """A Kafka source (implements :class:`eventapp.source.Source` and ``CommittingSource``)."""

    def __init__(self, config: KafkaSourceConfig, *, transactional_input: bool = False) -> None:
        """``transactional_input``: the topics are written in transactions by eventapp (a
        shuffle's repartition topic); with the ``aborted-records-visible`` broker quirk they are
        read by :class:`~eventapp.connectors.kafka.marker_reader.MarkerHonouringReader`."""
        if not isinstance(config, KafkaSourceConfig):
            raise ConfigurationError(f"KafkaSource needs a KafkaSourceConfig, got {config!r}")
        self._config = config
        self._transactional_input = transactional_input

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

    def create_reader(
        self, splits: Sequence[str], start_positions: Mapping[str, int]
    ) -> KafkaSourceReader | MarkerHonouringReader:
        if self._config.group_assignment:
            raise ConfigurationError(
                f"Kafka source {self.name!r} has group_assignment=True: the consumer group assigns its "
                f"partitions, so run the job's workers with 'eventapp run JOB --group'"
            )
        if self._transactional_input and self._config.broker_quirks.aborted_records_visible:
            return MarkerHonouringReader(self._config, splits, start_positions)
        return KafkaSourceReader(self._config, splits, start_positions)

    def create_group_reader(
        self, listener: SplitListener, instance_id: str | None = None
    ) -> KafkaGroupReader:
        """A reader of the partitions the consumer group assigns (eventapp.source.GroupSource)."""
        if not self._config.group_assignment:
            raise ConfigurationError(
                f"Kafka source {self.name!r}: 'eventapp run --group' needs "
                f"KafkaSourceConfig(group_assignment=True); without it the job assigns splits itself "
                f"(--parallelism N with --subtask I)"
            )
        config = self._config
        if instance_id:
            config = dataclasses.replace(config, group_instance_id=instance_id)
        return KafkaGroupReader(config, listener)

    def shuffle_channel(self, topic: str, partitions: int, *, exactly_once: bool) -> ShuffleChannel:
        """A ``key_by`` shuffle through repartition topic ``topic`` on this source's cluster
        (:class:`eventapp.shuffle.ShuffleTransport`, :mod:`eventapp.connectors.kafka.shuffle`)."""
        read, sink, purge = shuffle_ends(self._config, topic, partitions, exactly_once=exactly_once)
        return ShuffleChannel(source=KafkaSource(read, transactional_input=True), sink=sink, purge=purge)

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
