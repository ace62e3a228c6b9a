"""Configuration of the Kafka source: :class:`KafkaSourceConfig` and where splits start
(:class:`StartPosition`, :class:`OffsetReset`)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from eventapp.errors import ConfigurationError

from .client_settings import (
    SOURCE_DEFAULTS,
    SOURCE_FORBIDDEN,
    SOURCE_REQUIRED,
    frozen_settings,
    merge_settings,
)
from .clientlog import with_client_logging
from .commit_config import KafkaCommitConfig, check_transaction_timeout_range
from .config_checks import check_bootstrap, check_group_id, check_quirks, check_timeout, check_topic_name
from .formats import Decoder, DeserializerSpec, resolve_deserializer
from .quirks import BrokerQuirks
from .splits import default_checkpoint_topic

__all__ = ["KafkaSourceConfig", "OffsetReset", "StartPosition"]


# -- start positions ----------------------------------------------------------------------------


class OffsetReset(enum.Enum):
    """Where to start a partition that has no committed offset (``auto.offset.reset``)."""

    EARLIEST = "earliest"
    LATEST = "latest"
    #: Fail the job with a SourceError instead of guessing.
    FAIL = "error"


@dataclass(frozen=True, slots=True)
class StartPosition:
    """Where a split starts when it has no restored position (no committed eventapp checkpoint).

    * :meth:`committed` (default): the consumer group's committed offset, else ``reset``;
    * :meth:`earliest` / :meth:`latest`: the partition's first offset / its end;
    * :meth:`from_timestamp`: the first record whose Kafka timestamp is ``>= timestamp_ms``.

    A restored position (from a committed checkpoint) always wins over the start position.
    """

    kind: Literal["committed", "earliest", "latest", "timestamp"]
    timestamp_ms: int | None = None
    reset: OffsetReset = OffsetReset.EARLIEST

    def __post_init__(self) -> None:
        if self.kind not in ("committed", "earliest", "latest", "timestamp"):
            raise ConfigurationError(
                f"StartPosition kind {self.kind!r} is unknown; use StartPosition.committed(), "
                f".earliest(), .latest() or .from_timestamp(ms)"
            )
        if self.kind == "timestamp":
            ts = self.timestamp_ms
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                raise ConfigurationError(
                    f"StartPosition.from_timestamp needs epoch milliseconds as an int >= 0, got {ts!r}"
                )
        elif self.timestamp_ms is not None:
            raise ConfigurationError("StartPosition.timestamp_ms is only used by from_timestamp(ms)")
        if not isinstance(self.reset, OffsetReset):
            raise ConfigurationError(
                f"StartPosition reset must be an OffsetReset (EARLIEST, LATEST or FAIL), got {self.reset!r}"
            )

    @classmethod
    def committed(cls, reset: OffsetReset = OffsetReset.EARLIEST) -> StartPosition:
        """The group's committed offset; partitions without one start at ``reset``."""
        return cls("committed", reset=reset)

    @classmethod
    def earliest(cls) -> StartPosition:
        return cls("earliest")

    @classmethod
    def latest(cls) -> StartPosition:
        return cls("latest")

    @classmethod
    def from_timestamp(cls, timestamp_ms: int) -> StartPosition:
        """Start at the first record with a Kafka timestamp ``>= timestamp_ms`` (epoch milliseconds).

        Records *before* that one are skipped even if the broker's time index points earlier (Tansu
        answers offset 0 to every timestamp lookup); records after it are delivered whatever their
        timestamps, as with Kafka. A partition with no such record starts at its end.
        """
        return cls("timestamp", timestamp_ms=timestamp_ms)


@dataclass(frozen=True, slots=True)
class KafkaSourceConfig:
    """Configuration of a :class:`~eventapp.connectors.kafka.source.KafkaSource`.

    :param bootstrap_servers: ``host:port[,host:port...]``.
    :param topics: the topics to read; each partition is a split named ``"<topic>-<partition>"``.
    :param group_id: consumer group holding committed positions (one group per job). Partitions are
        assigned statically (``assign()``), the group never rebalances, unless ``group_assignment``.
    :param group_assignment: let the consumer group assign the partitions to the workers
        (``subscribe()`` with ``cooperative-sticky`` incremental rebalancing; workers run with
        ``eventapp run JOB --group``): a revoked split is checkpointed and released inside the
        rebalance, an assigned one restored outside it with its partition paused
        (:mod:`eventapp.connectors.kafka.group_reader`). Kafka Streams' model, not Flink's.
    :param group_instance_id: with ``group_assignment``: this worker's static membership id
        (``group.instance.id``): a worker restarted within ``session.timeout.ms`` gets its
        partitions back without a rebalance. One per worker; ``eventapp run --group-instance-id``.
    :param start_position: where splits without a restored position start.
    :param value_deserializer: ``"bytes"`` (default), ``"str"``, ``"json"``, a Serializer or a callable.
    :param key_deserializer: how to decode keys; only with ``as_kafka_record=True``.
    :param as_kafka_record: if True, each record's value is a
        :class:`~eventapp.connectors.kafka.records.KafkaRecord` (key, value, headers, topic, partition,
        offset, timestamp) instead of the decoded value alone.
    :param timestamp_extractor: ``f(value) -> epoch ms`` giving the event time; default: the Kafka
        message timestamp. It receives the decoded value (the KafkaRecord with ``as_kafka_record``).
    :param bounded: stop once every assigned partition reached its end (an end-of-partition event,
        never the high watermark, which Tansu may report wrong). For tests and benchmarks.
    :param consumer_config: extra librdkafka consumer settings, passed through.
    :param transactional_id_prefix: exactly-once: each input partition's transactional producer has
        ``transactional.id = "<prefix>-<topic>-<partition>"``; default: the job name. Must be stable
        across restarts and unique per job (it is how a restarted job fences its predecessor).
    :param checkpoint_topic: topic for checkpoint markers (created with 1 partition if missing and
        ``create_checkpoint_topic``); empty (the default) means ``eventapp-checkpoints.<group_id>``, one
        per job; see :mod:`eventapp.connectors.kafka.commit`.
    :param broker_quirks: workarounds for a broker that is not Apache Kafka
        (:mod:`eventapp.connectors.kafka.quirks`); default: from ``EVENTAPP_KAFKA_BROKER_QUIRKS``, none
        when it is unset.
    :param transaction_timeout_ms: ``transaction.timeout.ms`` of the transactional producers; check it
        against the checkpoint interval with :func:`validate_transaction_timeout`.
    :param producer_config: extra librdkafka settings for the transactional producers.
    :param operation_timeout_s: timeout of blocking broker operations (metadata, init/commit of
        transactions, offset reads).
    :param split_buffer_bytes: how many bytes of fetched payload the reader holds per split so that
        it can hand out the splits' records in turn (a broker answers a fetch with whole batches of
        one partition after another, up to ``max.partition.fetch.bytes``, 1 MiB, per partition, so
        librdkafka's queue can hold tens of thousands of one partition's records ahead of the next).
        A split with this much waiting has its fetching paused until half of it is processed;
        librdkafka then drops what it had prefetched for it and fetches it again from the reader's
        position, so nothing is lost or repeated. The default, 4 MiB, is a few fetch responses: a
        smaller buffer makes the reader pause and refetch all the time (10k records of 87 B cost
        ~5 % of the throughput of ``benchmarks.bench_kafka``). Decoded records take 3-5 times
        their payload's size in memory.
    """

    bootstrap_servers: str
    topics: Sequence[str]
    group_id: str
    start_position: StartPosition = field(default_factory=StartPosition.committed)
    value_deserializer: DeserializerSpec = "bytes"
    key_deserializer: DeserializerSpec | None = None
    as_kafka_record: bool = False
    timestamp_extractor: Callable[[Any], int] | None = None
    bounded: bool = False
    consumer_config: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    transactional_id_prefix: str | None = None
    checkpoint_topic: str = ""
    create_checkpoint_topic: bool = True
    transaction_timeout_ms: int = 60_000
    producer_config: Mapping[str, Any] = field(default_factory=dict)
    operation_timeout_s: float = 30.0
    split_buffer_bytes: int = 4 << 20
    broker_quirks: BrokerQuirks = field(default_factory=BrokerQuirks.from_environment)
    group_assignment: bool = False
    group_instance_id: str | None = None
    value_decoder: Decoder = field(init=False, repr=False, compare=False)
    key_decoder: Decoder | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "KafkaSourceConfig"
        object.__setattr__(self, "bootstrap_servers", check_bootstrap(self.bootstrap_servers, owner))
        topics: Any = self.topics
        if isinstance(topics, str):
            topics = (topics,)
        if not isinstance(topics, Sequence) or not topics:
            raise ConfigurationError(
                f"{owner}.topics must be a non-empty list of topic names, got {self.topics!r}"
            )
        checked = tuple(check_topic_name(t, f"{owner}.topics item") for t in topics)
        if len(set(checked)) != len(checked):
            raise ConfigurationError(f"{owner}.topics lists a topic twice: {list(checked)}")
        object.__setattr__(self, "topics", checked)
        check_group_id(self.group_id, owner)
        if not isinstance(self.start_position, StartPosition):
            raise ConfigurationError(
                f"{owner}.start_position must be a StartPosition (StartPosition.committed(), "
                f".earliest(), .latest(), .from_timestamp(ms)), got {self.start_position!r}"
            )
        object.__setattr__(
            self,
            "value_decoder",
            resolve_deserializer(self.value_deserializer, f"{owner}.value_deserializer"),
        )
        if self.key_deserializer is not None and not self.as_kafka_record:
            raise ConfigurationError(
                f"{owner}.key_deserializer is only used with as_kafka_record=True (records then carry "
                f"key, value, headers and position); set as_kafka_record=True or drop key_deserializer"
            )
        key_decoder = None
        if self.as_kafka_record:
            key_decoder = resolve_deserializer(self.key_deserializer or "bytes", f"{owner}.key_deserializer")
        object.__setattr__(self, "key_decoder", key_decoder)
        if self.group_instance_id is not None and not self.group_assignment:
            raise ConfigurationError(
                f"{owner}.group_instance_id is static membership of a consumer group that assigns the "
                f"partitions: set group_assignment=True too, or drop group_instance_id"
            )
        strategy = self.consumer_config.get("partition.assignment.strategy")
        if self.group_assignment and strategy not in (None, "cooperative-sticky"):
            raise ConfigurationError(
                f"{owner}: group_assignment=True rebalances incrementally and needs "
                f"partition.assignment.strategy=cooperative-sticky, but consumer_config sets {strategy!r}; "
                f"drop that setting"
            )
        if self.group_assignment and self.bounded:
            raise ConfigurationError(
                f"{owner}: group_assignment=True with bounded=True: a worker of a rebalancing group "
                f"cannot tell the end of its input (partitions come and go); use bounded=False"
            )
        if self.timestamp_extractor is not None and not callable(self.timestamp_extractor):
            raise ConfigurationError(
                f"{owner}.timestamp_extractor must be a callable value -> epoch milliseconds (int), got "
                f"{self.timestamp_extractor!r}; leave it None to use the Kafka message timestamp"
            )
        object.__setattr__(
            self, "consumer_config", frozen_settings(self.consumer_config, f"{owner}.consumer_config")
        )
        # Validate now (raises on conflicts) so errors show at construction, not at first read.
        self.consumer_settings()
        if self.transactional_id_prefix is not None and (
            not isinstance(self.transactional_id_prefix, str) or not self.transactional_id_prefix.strip()
        ):
            raise ConfigurationError(
                f"{owner}.transactional_id_prefix must be a non-empty string or None (None: the job "
                f"name), got {self.transactional_id_prefix!r}"
            )
        if not self.checkpoint_topic:
            object.__setattr__(self, "checkpoint_topic", default_checkpoint_topic(self.group_id))
        check_topic_name(self.checkpoint_topic, f"{owner}.checkpoint_topic")
        if self.checkpoint_topic in checked:
            raise ConfigurationError(
                f"{owner}.checkpoint_topic {self.checkpoint_topic!r} is also an input topic; pick another "
                f"name (default {default_checkpoint_topic(self.group_id)!r})"
            )
        check_quirks(self.broker_quirks, owner)
        check_transaction_timeout_range(self.transaction_timeout_ms, owner)
        object.__setattr__(
            self, "producer_config", frozen_settings(self.producer_config, f"{owner}.producer_config")
        )
        check_timeout(self.operation_timeout_s, owner)
        if (
            not isinstance(self.split_buffer_bytes, int)
            or isinstance(self.split_buffer_bytes, bool)
            or self.split_buffer_bytes < 1
        ):
            raise ConfigurationError(
                f"{owner}.split_buffer_bytes must be an int >= 1, got {self.split_buffer_bytes!r}; "
                f"the default, 4 MiB (4 << 20), suits most jobs"
            )
        # Validate the transactional producer settings now as well.
        KafkaCommitConfig.for_source(self, job="validation")

    @property
    def display_name(self) -> str:
        return self.name or f"kafka:{','.join(self.topics)}"

    def consumer_settings(self) -> dict[str, Any]:
        """The librdkafka consumer settings: defaults < ``consumer_config`` < eventapp's required ones."""
        settings = merge_settings(
            "KafkaSourceConfig.consumer_config",
            SOURCE_DEFAULTS,
            self.consumer_config,
            SOURCE_REQUIRED,
            SOURCE_FORBIDDEN,
        )
        settings["bootstrap.servers"] = self.bootstrap_servers
        settings["group.id"] = self.group_id
        reset = self.start_position.reset if self.start_position.kind == "committed" else OffsetReset.EARLIEST
        if self.start_position.kind == "latest":
            reset = OffsetReset.LATEST
        settings["auto.offset.reset"] = reset.value
        if self.group_assignment:
            # Incremental rebalancing: a rebalance moves only the partitions that change owner.
            settings["partition.assignment.strategy"] = "cooperative-sticky"
            if self.group_instance_id and not self.broker_quirks.no_static_membership:
                settings["group.instance.id"] = self.group_instance_id
        return with_client_logging(settings, f"source-consumer:{self.group_id}", polled=True)
