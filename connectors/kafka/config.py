"""Configuration of the Kafka source, sink and commit points: frozen dataclasses validated at
construction, with error messages that say how to fix the problem.

librdkafka settings given in ``consumer_config`` / ``producer_config`` are passed straight through,
except the few that eventapp's guarantees depend on: those are set by eventapp, and a user value that
would break them is rejected with :class:`~eventapp.errors.ConfigurationError`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from eventapp.errors import ConfigurationError

from .clientlog import with_client_logging
from .formats import (
    Decoder,
    DeserializerSpec,
    Encoder,
    SerializerSpec,
    resolve_deserializer,
    resolve_serializer,
)
from .quirks import BrokerQuirks

__all__ = [
    "DEFAULT_CHECKPOINT_TOPIC",
    "DeliveryGuarantee",
    "KafkaCommitConfig",
    "KafkaSinkConfig",
    "KafkaSourceConfig",
    "OffsetReset",
    "StartPosition",
    "default_checkpoint_topic",
    "parse_split",
    "split_id",
    "validate_transaction_timeout",
]

#: Prefix of the topic holding one small "checkpoint marker" record per committed checkpoint of every
#: split (see :mod:`eventapp.connectors.kafka.commit`). Each job (consumer group) gets its own topic by
#: default, ``eventapp-checkpoints.<group>`` (:func:`default_checkpoint_topic`), so that one job's
#: markers never lengthen another job's recovery. Jobs may share a topic safely (markers name their
#: group and split) by setting ``checkpoint_topic`` explicitly.
DEFAULT_CHECKPOINT_TOPIC: Final = "eventapp-checkpoints"

#: Apache Kafka's default ``transaction.max.timeout.ms`` (15 minutes).
KAFKA_DEFAULT_MAX_TRANSACTION_TIMEOUT_MS: Final = 900_000

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_MAX_INT32: Final = 2**31 - 1


# -- splits ---------------------------------------------------------------------------------------


def default_checkpoint_topic(group_id: str) -> str:
    """``eventapp-checkpoints.<group>``, with characters a topic name cannot hold replaced by ``_``."""
    safe = re.sub(r"[^a-zA-Z0-9._-]", "_", group_id)
    return f"{DEFAULT_CHECKPOINT_TOPIC}.{safe}"[:249]


def _check_quirks(value: object, owner: str) -> None:
    if not isinstance(value, BrokerQuirks):
        raise ConfigurationError(
            f"{owner}.broker_quirks must be a BrokerQuirks (BrokerQuirks.none() for Apache Kafka, the "
            f"default), got {value!r}"
        )


def split_id(topic: str, partition: int) -> str:
    """The split id of a Kafka partition: ``"<topic>-<partition>"``."""
    return f"{topic}-{partition}"


def parse_split(split: str) -> tuple[str, int]:
    """``"orders-3"`` -> ``("orders", 3)``. Topic names may contain ``-``; the partition is the last part."""
    topic, sep, partition = split.rpartition("-")
    if not sep or not topic or not partition.isdigit():
        raise ConfigurationError(
            f"{split!r} is not a Kafka split id; Kafka splits are named '<topic>-<partition>', "
            f"e.g. 'orders-0'"
        )
    return topic, int(partition)


def _check_topic_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _TOPIC_NAME.match(name) or name in (".", ".."):
        raise ConfigurationError(
            f"{what}={name!r} is not a valid Kafka topic name: use 1-249 characters from "
            f"[a-zA-Z0-9._-] (and not '.' or '..')"
        )
    return name


def _check_bootstrap(value: object, owner: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{owner}.bootstrap_servers must be a non-empty 'host:port[,host:port...]' string, got {value!r}"
        )
    return value.strip()


def _check_group_id(value: object, owner: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{owner}.group_id must be a non-empty string: it names the consumer group whose committed "
            f"offsets hold each split's position (and, for eventapp, its committed checkpoint); use one "
            f"group per job, e.g. group_id='orders-enricher'"
        )
    return value


# -- librdkafka settings ------------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


def _frozen_settings(value: object, what: str) -> Mapping[str, Any]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a mapping of librdkafka settings, got {value!r}")
    for key in value:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{what} keys must be librdkafka property names, got {key!r}")
        if "_" in key and "." not in key and key not in _UNDERSCORE_KEYS:
            raise ConfigurationError(
                f"{what} key {key!r} looks like a Python keyword spelling; librdkafka property names "
                f"use dots, e.g. {key.replace('_', '.')!r}"
            )
    return MappingProxyType(dict(value))


# librdkafka properties that legitimately contain underscores and no dots (callbacks and the like).
_UNDERSCORE_KEYS: Final = frozenset(
    {"error_cb", "throttle_cb", "stats_cb", "oauth_cb", "on_commit", "on_delivery", "logger"}
)


@dataclass(frozen=True, slots=True)
class _Required:
    """A setting eventapp owns: its value and why a different one is refused."""

    value: Any
    why: str
    #: Other spellings of the same value (``acks=-1`` is ``acks=all``).
    aliases: tuple[str, ...] = ()


def admin_settings(bootstrap_servers: str, consumer_config: Mapping[str, Any]) -> dict[str, Any]:
    """Settings for an ``AdminClient`` next to a consumer: the bootstrap servers and the connection
    settings (security, client id, sockets) of the user's consumer config."""
    settings = {
        "bootstrap.servers": bootstrap_servers,
        **{
            k: v
            for k, v in consumer_config.items()
            if k.startswith(("security.", "sasl.", "ssl.", "client.", "socket."))
            or k == "broker.address.family"
        },
    }
    return with_client_logging(settings, "admin", polled=False)


def _merge_settings(
    owner: str,
    defaults: Mapping[str, Any],
    user: Mapping[str, Any],
    required: Mapping[str, _Required],
    forbidden: Mapping[str, str],
) -> dict[str, Any]:
    """defaults < user < required; user values that contradict ``required`` or use ``forbidden`` keys
    raise :class:`ConfigurationError`."""
    for key, why in forbidden.items():
        if key in user:
            raise ConfigurationError(f"{owner}: do not set {key!r} in the librdkafka settings; {why}")
    for key, req in required.items():
        if key not in user:
            continue
        given = user[key]
        if isinstance(req.value, bool):
            same = _as_bool(given) is req.value
        else:
            spelled = str(given).strip().lower()
            same = spelled == str(req.value).lower() or spelled in req.aliases
        if not same:
            raise ConfigurationError(
                f"{owner}: librdkafka setting {key}={given!r} is not supported: eventapp needs "
                f"{key}={req.value!r} because {req.why}. Remove it from the settings."
            )
    merged = dict(defaults)
    merged.update(user)
    merged.update({key: req.value for key, req in required.items()})
    return merged


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


# -- source ---------------------------------------------------------------------------------------

_SOURCE_DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        # librdkafka waits up to fetch.queue.backoff.ms (default 1000) before refetching once its
        # queue has data; on Tansu that stalls consumers for ~1 s at a time.
        "fetch.queue.backoff.ms": 10,
        # How long the broker may hold an empty fetch: bounds end-of-partition latency.
        "fetch.wait.max.ms": 100,
    }
)

_SOURCE_REQUIRED: Final[Mapping[str, _Required]] = MappingProxyType(
    {
        "enable.auto.commit": _Required(
            False, "positions are committed only by the commit point, together with each checkpoint"
        ),
        "enable.auto.offset.store": _Required(False, "the consumer never commits offsets itself"),
        "isolation.level": _Required(
            "read_committed",
            "records of open or aborted upstream transactions must never be processed (exactly-once "
            "pipelines read only committed data)",
        ),
        "enable.partition.eof": _Required(
            True, "end-of-partition events are how bounded reads know they are done"
        ),
    }
)

_SOURCE_FORBIDDEN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "bootstrap.servers": "use KafkaSourceConfig(bootstrap_servers=...)",
        "group.id": "use KafkaSourceConfig(group_id=...)",
        "auto.offset.reset": "use start_position=StartPosition.committed(reset=OffsetReset.LATEST) etc.",
        "transactional.id": "consumers have none; the commit point owns the transactional producers",
    }
)


@dataclass(frozen=True, slots=True)
class KafkaSourceConfig:
    """Configuration of a :class:`~eventapp.connectors.kafka.source.KafkaSource`.

    :param bootstrap_servers: ``host:port[,host:port...]``.
    :param topics: the topics to read; each partition is a split named ``"<topic>-<partition>"``.
    :param group_id: consumer group holding committed positions (one group per job). Partitions are
        assigned statically (``assign()``), the group never rebalances.
    :param start_position: where splits without a restored position start.
    :param value_deserializer: ``"bytes"`` (default), ``"str"``, ``"json"``, a Serializer or a callable.
    :param key_deserializer: how to decode keys; only with ``as_kafka_record=True``.
    :param as_kafka_record: if True, each record's value is a
        :class:`~eventapp.connectors.kafka.source.KafkaRecord` (key, value, headers, topic, partition,
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
    broker_quirks: BrokerQuirks = field(default_factory=BrokerQuirks.from_environment)
    value_decoder: Decoder = field(init=False, repr=False, compare=False)
    key_decoder: Decoder | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "KafkaSourceConfig"
        object.__setattr__(self, "bootstrap_servers", _check_bootstrap(self.bootstrap_servers, owner))
        topics: Any = self.topics
        if isinstance(topics, str):
            topics = (topics,)
        if not isinstance(topics, Sequence) or not topics:
            raise ConfigurationError(
                f"{owner}.topics must be a non-empty list of topic names, got {self.topics!r}"
            )
        checked = tuple(_check_topic_name(t, f"{owner}.topics item") for t in topics)
        if len(set(checked)) != len(checked):
            raise ConfigurationError(f"{owner}.topics lists a topic twice: {list(checked)}")
        object.__setattr__(self, "topics", checked)
        _check_group_id(self.group_id, owner)
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
        if self.timestamp_extractor is not None and not callable(self.timestamp_extractor):
            raise ConfigurationError(
                f"{owner}.timestamp_extractor must be a callable value -> epoch milliseconds (int), got "
                f"{self.timestamp_extractor!r}; leave it None to use the Kafka message timestamp"
            )
        object.__setattr__(
            self, "consumer_config", _frozen_settings(self.consumer_config, f"{owner}.consumer_config")
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
        _check_topic_name(self.checkpoint_topic, f"{owner}.checkpoint_topic")
        if self.checkpoint_topic in checked:
            raise ConfigurationError(
                f"{owner}.checkpoint_topic {self.checkpoint_topic!r} is also an input topic; pick another "
                f"name (default {default_checkpoint_topic(self.group_id)!r})"
            )
        _check_quirks(self.broker_quirks, owner)
        _check_transaction_timeout_range(self.transaction_timeout_ms, owner)
        object.__setattr__(
            self, "producer_config", _frozen_settings(self.producer_config, f"{owner}.producer_config")
        )
        _check_timeout(self.operation_timeout_s, owner)
        # Validate the transactional producer settings now as well.
        KafkaCommitConfig.for_source(self, job="validation")

    @property
    def display_name(self) -> str:
        return self.name or f"kafka:{','.join(self.topics)}"

    def consumer_settings(self) -> dict[str, Any]:
        """The librdkafka consumer settings: defaults < ``consumer_config`` < eventapp's required ones."""
        settings = _merge_settings(
            "KafkaSourceConfig.consumer_config",
            _SOURCE_DEFAULTS,
            self.consumer_config,
            _SOURCE_REQUIRED,
            _SOURCE_FORBIDDEN,
        )
        settings["bootstrap.servers"] = self.bootstrap_servers
        settings["group.id"] = self.group_id
        reset = self.start_position.reset if self.start_position.kind == "committed" else OffsetReset.EARLIEST
        if self.start_position.kind == "latest":
            reset = OffsetReset.LATEST
        settings["auto.offset.reset"] = reset.value
        return with_client_logging(settings, f"source-consumer:{self.group_id}", polled=True)


def _check_timeout(value: object, owner: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(
            f"{owner}.operation_timeout_s must be a number of seconds > 0, got {value!r}"
        )


def _check_transaction_timeout_range(value: object, owner: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1_000 <= value <= _MAX_INT32:
        raise ConfigurationError(
            f"{owner}.transaction_timeout_ms must be an int between 1000 and {_MAX_INT32} ms, got "
            f"{value!r}; it must exceed the checkpoint interval several times over (see "
            f"validate_transaction_timeout) and stay within the brokers' transaction.max.timeout.ms "
            f"({KAFKA_DEFAULT_MAX_TRANSACTION_TIMEOUT_MS} by default)"
        )


def validate_transaction_timeout(
    timeout_ms: int,
    checkpoint_interval_ms: int,
    broker_max_ms: int = KAFKA_DEFAULT_MAX_TRANSACTION_TIMEOUT_MS,
    *,
    min_factor: float = 3.0,
) -> None:
    """Check ``transaction.timeout.ms`` against the checkpoint interval and the brokers' maximum.

    Each split's transaction stays open from one checkpoint to the next. If the broker's transaction
    timeout passes first, the broker aborts the transaction and the next commit fails: the job then
    restarts from the last checkpoint, over and over. Hence ``timeout_ms >= min_factor *
    checkpoint_interval_ms``. The broker refuses ``init_transactions`` with a timeout above its
    ``transaction.max.timeout.ms`` (Apache Kafka default 900000 = 15 min; Tansu 0.6.0 accepts any
    value and never aborts on timeout).

    :raises ConfigurationError: explaining which of the two to change.
    """
    if timeout_ms > broker_max_ms:
        raise ConfigurationError(
            f"transaction.timeout.ms={timeout_ms} exceeds the brokers' transaction.max.timeout.ms "
            f"({broker_max_ms}): init_transactions() would be refused with INVALID_TRANSACTION_TIMEOUT. "
            f"Lower transaction_timeout_ms to at most {broker_max_ms}, or raise transaction.max.timeout.ms "
            f"on the brokers (and pass broker_max_ms= accordingly)"
        )
    needed = int(min_factor * checkpoint_interval_ms)
    if timeout_ms < needed:
        hint = (
            f"raise transaction_timeout_ms to at least {needed}"
            if needed <= broker_max_ms
            else f"checkpoint more often (interval_ms <= {int(broker_max_ms / min_factor)})"
        )
        raise ConfigurationError(
            f"transaction.timeout.ms={timeout_ms} is less than {min_factor:g}x the checkpoint interval "
            f"({checkpoint_interval_ms} ms): every split's transaction stays open for a whole checkpoint "
            f"interval plus the time to take the checkpoint, so the broker would abort it and the job "
            f"would restart from its last checkpoint again and again. Either {hint}, or lower the "
            f"checkpoint interval to at most {int(timeout_ms / min_factor)} ms"
        )


# -- commit points --------------------------------------------------------------------------------

_TRANSACTIONAL_REQUIRED: Final[Mapping[str, _Required]] = MappingProxyType(
    {
        "enable.idempotence": _Required(True, "transactions require the idempotent producer"),
        "acks": _Required(
            "all", "a transaction may only commit records every in-sync replica has", aliases=("-1",)
        ),
    }
)

_TRANSACTIONAL_FORBIDDEN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "transactional.id": "it is '<transactional_id_prefix>-<topic>-<partition>'; set "
        "transactional_id_prefix instead",
        "transaction.timeout.ms": "use transaction_timeout_ms=",
        "bootstrap.servers": "use bootstrap_servers=",
    }
)

_COMMIT_PRODUCER_DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType({"linger.ms": 5})


@dataclass(frozen=True, slots=True)
class KafkaCommitConfig:
    """What a Kafka commit point needs; usually built with :meth:`for_source`.

    ``transactional_id(split)`` is ``"<transactional_id_prefix>-<topic>-<partition>"``;
    ``pointer_group_id`` is the consumer group whose offset for a partition is the offset of that
    split's latest committed checkpoint marker in ``checkpoint_topic``.
    """

    bootstrap_servers: str
    group_id: str
    transactional_id_prefix: str
    checkpoint_topic: str = ""
    create_checkpoint_topic: bool = True
    transaction_timeout_ms: int = 60_000
    producer_config: Mapping[str, Any] = field(default_factory=dict)
    consumer_config: Mapping[str, Any] = field(default_factory=dict)
    operation_timeout_s: float = 30.0
    job: str | None = None
    broker_quirks: BrokerQuirks = field(default_factory=BrokerQuirks.from_environment)

    def __post_init__(self) -> None:
        owner = "KafkaCommitConfig"
        object.__setattr__(self, "bootstrap_servers", _check_bootstrap(self.bootstrap_servers, owner))
        _check_group_id(self.group_id, owner)
        if not isinstance(self.transactional_id_prefix, str) or not self.transactional_id_prefix.strip():
            raise ConfigurationError(
                f"{owner}.transactional_id_prefix must be a non-empty string, got "
                f"{self.transactional_id_prefix!r}"
            )
        if not self.checkpoint_topic:
            object.__setattr__(self, "checkpoint_topic", default_checkpoint_topic(self.group_id))
        _check_topic_name(self.checkpoint_topic, f"{owner}.checkpoint_topic")
        _check_quirks(self.broker_quirks, owner)
        _check_transaction_timeout_range(self.transaction_timeout_ms, owner)
        _check_timeout(self.operation_timeout_s, owner)
        object.__setattr__(
            self, "producer_config", _frozen_settings(self.producer_config, f"{owner}.producer_config")
        )
        object.__setattr__(
            self, "consumer_config", _frozen_settings(self.consumer_config, f"{owner}.consumer_config")
        )
        self.producer_settings("validation")

    @classmethod
    def for_source(cls, source: KafkaSourceConfig, job: str) -> KafkaCommitConfig:
        """The commit configuration of ``source`` in job ``job`` (the default transactional id prefix)."""
        consumer_config = {
            k: v for k, v in source.consumer_config.items() if not k.startswith(("fetch.", "queued."))
        }
        return cls(
            bootstrap_servers=source.bootstrap_servers,
            group_id=source.group_id,
            transactional_id_prefix=source.transactional_id_prefix or job,
            checkpoint_topic=source.checkpoint_topic,
            create_checkpoint_topic=source.create_checkpoint_topic,
            transaction_timeout_ms=source.transaction_timeout_ms,
            producer_config=source.producer_config,
            consumer_config=consumer_config,
            operation_timeout_s=source.operation_timeout_s,
            job=job,
            broker_quirks=source.broker_quirks,
        )

    @property
    def pointer_group_id(self) -> str:
        """Group whose committed offset for a partition points at its latest checkpoint marker."""
        return f"{self.group_id}.eventapp-checkpoints"

    def transactional_id(self, split: str) -> str:
        topic, partition = parse_split(split)
        return f"{self.transactional_id_prefix}-{topic}-{partition}"

    def producer_settings(self, transactional_id: str | None) -> dict[str, Any]:
        """Settings of a split's producer: transactional if ``transactional_id`` is given, else
        idempotent (used by the at-least-once commit point for its markers)."""
        settings = _merge_settings(
            "KafkaCommitConfig.producer_config",
            _COMMIT_PRODUCER_DEFAULTS,
            self.producer_config,
            _TRANSACTIONAL_REQUIRED,
            _TRANSACTIONAL_FORBIDDEN,
        )
        settings["bootstrap.servers"] = self.bootstrap_servers
        if transactional_id is not None:
            settings["transactional.id"] = transactional_id
            settings["transaction.timeout.ms"] = self.transaction_timeout_ms
        return with_client_logging(
            settings, f"commit-producer:{transactional_id or self.group_id}", polled=True
        )

    def consumer_settings(self, group_id: str, *, read_committed: bool = True) -> dict[str, Any]:
        """Settings of the short-lived consumers that read committed offsets and markers.

        ``isolation.level=read_committed`` makes librdkafka fetch committed offsets with
        ``require_stable``: offsets of a transaction still in flight are not returned as committed.
        """
        settings = {k: v for k, v in self.consumer_config.items() if k not in _SOURCE_FORBIDDEN}
        settings.update(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "error",
                "fetch.queue.backoff.ms": 10,
                "fetch.wait.max.ms": 50,
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            }
        )
        return with_client_logging(settings, f"commit-consumer:{group_id}", polled=False)


# -- sink -----------------------------------------------------------------------------------------


class DeliveryGuarantee(enum.Enum):
    """What a :class:`~eventapp.connectors.kafka.sink.KafkaSink` promises.

    * ``NONE``: fire and forget; delivery failures are only logged.
    * ``AT_LEAST_ONCE``: idempotent producer, ``acks=all``; every checkpoint waits until all records are
      acknowledged and fails if any delivery failed. After a crash, output since the last checkpoint is
      written again (duplicates, no loss).
    * ``EXACTLY_ONCE``: records are written into the input split's Kafka transaction, which commits
      with the checkpoint; readers using ``isolation.level=read_committed`` see each record once. Needs
      the job to run with ``CheckpointingMode.EXACTLY_ONCE`` and a KafkaSource on the same cluster.
    """

    NONE = "none"
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


_SINK_DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType({"linger.ms": 5})

_SINK_FORBIDDEN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "bootstrap.servers": "use KafkaSinkConfig(bootstrap_servers=...)",
        "transactional.id": "exactly-once sinks write into the input split's transaction, owned by the "
        "KafkaSource's commit point (see KafkaSourceConfig.transactional_id_prefix)",
    }
)

HeadersSpec = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]


@dataclass(frozen=True, slots=True)
class KafkaSinkConfig:
    """Configuration of a :class:`~eventapp.connectors.kafka.sink.KafkaSink`.

    :param bootstrap_servers: ``host:port[,host:port...]``.
    :param topic: the topic records go to (unless ``topic_selector`` picks one).
    :param topic_selector: ``f(value) -> topic`` per record; ``None`` from it means ``topic``.
    :param key_selector: ``f(value) -> key`` (``bytes``, ``str`` or ``None``); records with the same key
        go to the same partition.
    :param value_serializer: ``"json"`` (default, orjson), ``"str"``, ``"bytes"``, a Serializer or a
        callable ``value -> bytes``.
    :param headers_selector: ``f(value) -> headers`` (a mapping or a list of ``(name, value)`` pairs).
    :param use_event_time: set each Kafka message's timestamp to the record's event time (when it has
        one); otherwise the producer's clock.
    :param delivery_guarantee: see :class:`DeliveryGuarantee`.
    :param producer_config: extra librdkafka producer settings (NONE / AT_LEAST_ONCE only: in
        EXACTLY_ONCE mode the split's transactional producer is used, configured on the KafkaSource).
    :param flush_timeout_s: how long a checkpoint waits for acknowledgements before failing.
    """

    bootstrap_servers: str
    topic: str | None = None
    topic_selector: Callable[[Any], str | None] | None = None
    key_selector: Callable[[Any], bytes | str | None] | None = None
    value_serializer: SerializerSpec = "json"
    headers_selector: Callable[[Any], HeadersSpec | None] | None = None
    use_event_time: bool = True
    delivery_guarantee: DeliveryGuarantee = DeliveryGuarantee.AT_LEAST_ONCE
    producer_config: Mapping[str, Any] = field(default_factory=dict)
    flush_timeout_s: float = 60.0
    name: str | None = None
    value_encoder: Encoder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "KafkaSinkConfig"
        object.__setattr__(self, "bootstrap_servers", _check_bootstrap(self.bootstrap_servers, owner))
        if self.topic is None and self.topic_selector is None:
            raise ConfigurationError(
                f"{owner} needs a topic (topic='out') or a topic_selector (value -> topic name)"
            )
        if self.topic is not None:
            _check_topic_name(self.topic, f"{owner}.topic")
        for name in ("topic_selector", "key_selector", "headers_selector"):
            selector = getattr(self, name)
            if selector is not None and not callable(selector):
                raise ConfigurationError(
                    f"{owner}.{name} must be a callable taking the value, got {selector!r}"
                )
        object.__setattr__(
            self, "value_encoder", resolve_serializer(self.value_serializer, f"{owner}.value_serializer")
        )
        if not isinstance(self.delivery_guarantee, DeliveryGuarantee):
            raise ConfigurationError(
                f"{owner}.delivery_guarantee must be a DeliveryGuarantee (NONE, AT_LEAST_ONCE, "
                f"EXACTLY_ONCE), got {self.delivery_guarantee!r}"
            )
        object.__setattr__(
            self, "producer_config", _frozen_settings(self.producer_config, f"{owner}.producer_config")
        )
        if self.delivery_guarantee is DeliveryGuarantee.EXACTLY_ONCE and self.producer_config:
            raise ConfigurationError(
                f"{owner}.producer_config has no effect with DeliveryGuarantee.EXACTLY_ONCE: records go "
                f"into the input split's transactional producer, configured by "
                f"KafkaSourceConfig.producer_config; move the settings there"
            )
        if not isinstance(self.flush_timeout_s, int | float) or self.flush_timeout_s <= 0:
            raise ConfigurationError(
                f"{owner}.flush_timeout_s must be a number of seconds > 0, got {self.flush_timeout_s!r}"
            )
        self.producer_settings()

    @property
    def display_name(self) -> str:
        return self.name or f"kafka:{self.topic or '<selected>'}"

    def producer_settings(self) -> dict[str, Any]:
        """Settings of the sink's own producer (NONE / AT_LEAST_ONCE)."""
        required: Mapping[str, _Required] = {}
        if self.delivery_guarantee is not DeliveryGuarantee.NONE:
            required = {
                "enable.idempotence": _Required(
                    True, "retries must not duplicate or reorder records (idempotent producer)"
                ),
                "acks": _Required(
                    "all", "a record counts as delivered only once every in-sync replica has it", ("-1",)
                ),
            }
        settings = _merge_settings(
            "KafkaSinkConfig.producer_config", _SINK_DEFAULTS, self.producer_config, required, _SINK_FORBIDDEN
        )
        settings["bootstrap.servers"] = self.bootstrap_servers
        return with_client_logging(settings, f"sink-producer:{self.display_name}", polled=True)
