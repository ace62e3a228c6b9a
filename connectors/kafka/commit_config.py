"""Configuration of the Kafka commit points (:class:`KafkaCommitConfig`) and the check of the
transaction timeout against the checkpoint interval (:func:`validate_transaction_timeout`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from eventapp.errors import ConfigurationError

from .client_settings import (
    COMMIT_PRODUCER_DEFAULTS,
    SOURCE_FORBIDDEN,
    TRANSACTIONAL_FORBIDDEN,
    TRANSACTIONAL_REQUIRED,
    frozen_settings,
    merge_settings,
)
from .clientlog import with_client_logging
from .config_checks import check_bootstrap, check_group_id, check_quirks, check_timeout, check_topic_name
from .quirks import BrokerQuirks
from .splits import default_checkpoint_topic, parse_split

if TYPE_CHECKING:
    from .source_config import KafkaSourceConfig

__all__ = [
    "KAFKA_DEFAULT_MAX_TRANSACTION_TIMEOUT_MS",
    "KafkaCommitConfig",
    "check_transaction_timeout_range",
    "validate_transaction_timeout",
]

#: Apache Kafka's default ``transaction.max.timeout.ms`` (15 minutes).
KAFKA_DEFAULT_MAX_TRANSACTION_TIMEOUT_MS: Final = 900_000

_MAX_INT32: Final = 2**31 - 1


def check_transaction_timeout_range(value: object, owner: str) -> None:
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
        fits = int(timeout_ms / min_factor)
        if needed <= broker_max_ms:
            hint = (
                f"Either raise transaction_timeout_ms to at least {needed}, or lower the checkpoint "
                f"interval to at most {fits} ms"
            )
        elif timeout_ms < broker_max_ms:
            hint = (
                f"The brokers' transaction.max.timeout.ms ({broker_max_ms}) does not allow a long enough "
                f"timeout for this interval: lower the checkpoint interval to at most {fits} ms, or raise "
                f"transaction_timeout_ms to {broker_max_ms} and lower the interval to at most "
                f"{int(broker_max_ms / min_factor)} ms"
            )
        else:
            hint = (
                f"The brokers' transaction.max.timeout.ms ({broker_max_ms}) does not allow a longer "
                f"timeout: checkpoint more often (interval_ms <= {fits})"
            )
        raise ConfigurationError(
            f"transaction.timeout.ms={timeout_ms} is less than {min_factor:g}x the checkpoint interval "
            f"({checkpoint_interval_ms} ms): every split's transaction stays open for a whole checkpoint "
            f"interval plus the time to take the checkpoint, so the broker would abort it and the job "
            f"would restart from its last checkpoint again and again. {hint}"
        )


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
    #: Order a split's instances by split-ownership claims (eventapp.connectors.kafka.ownership).
    #: Off when the consumer group assigns the partitions: the group decides who owns a split then,
    #: and an older process may rightly get a split back from a newer one.
    ownership_claims: bool = True

    def __post_init__(self) -> None:
        owner = "KafkaCommitConfig"
        object.__setattr__(self, "bootstrap_servers", check_bootstrap(self.bootstrap_servers, owner))
        check_group_id(self.group_id, owner)
        if not isinstance(self.transactional_id_prefix, str) or not self.transactional_id_prefix.strip():
            raise ConfigurationError(
                f"{owner}.transactional_id_prefix must be a non-empty string, got "
                f"{self.transactional_id_prefix!r}"
            )
        if not self.checkpoint_topic:
            object.__setattr__(self, "checkpoint_topic", default_checkpoint_topic(self.group_id))
        check_topic_name(self.checkpoint_topic, f"{owner}.checkpoint_topic")
        check_quirks(self.broker_quirks, owner)
        check_transaction_timeout_range(self.transaction_timeout_ms, owner)
        check_timeout(self.operation_timeout_s, owner)
        object.__setattr__(
            self, "producer_config", frozen_settings(self.producer_config, f"{owner}.producer_config")
        )
        object.__setattr__(
            self, "consumer_config", frozen_settings(self.consumer_config, f"{owner}.consumer_config")
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
            ownership_claims=not source.group_assignment,
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
        settings = merge_settings(
            "KafkaCommitConfig.producer_config",
            COMMIT_PRODUCER_DEFAULTS,
            self.producer_config,
            TRANSACTIONAL_REQUIRED,
            TRANSACTIONAL_FORBIDDEN,
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
        settings = {k: v for k, v in self.consumer_config.items() if k not in SOURCE_FORBIDDEN}
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
