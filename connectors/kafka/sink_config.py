"""Configuration of the Kafka sink: :class:`KafkaSinkConfig` and its :class:`DeliveryGuarantee`."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventapp.errors import ConfigurationError

from .client_settings import SINK_DEFAULTS, SINK_FORBIDDEN, Required, frozen_settings, merge_settings
from .clientlog import with_client_logging
from .config_checks import check_bootstrap, check_topic_name
from .formats import Encoder, SerializerSpec, resolve_serializer

__all__ = ["DeliveryGuarantee", "HeadersSpec", "KafkaSinkConfig"]


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


HeadersSpec = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]


@dataclass(frozen=True, slots=True)
class KafkaSinkConfig:
    """Configuration of a :class:`~eventapp.connectors.kafka.sink.KafkaSink`.

    :param bootstrap_servers: ``host:port[,host:port...]``.
    :param topic: the topic records go to (unless ``topic_selector`` picks one).
    :param topic_selector: ``f(value) -> topic`` per record; ``None`` from it means ``topic``.
    :param key_selector: ``f(value) -> key`` (``bytes``, ``str`` or ``None``); records with the same key
        go to the same partition.
    :param partition_selector: ``f(value) -> partition`` (an ``int >= 0`` of the record's topic, or
        ``None``: the producer's partitioner, i.e. by key). Flink's ``KafkaSink`` custom partitioner
        (``FlinkKafkaPartitioner``); ``key_by`` shuffles route through it. A selector that raises or
        returns anything else fails the write with a SinkError; a partition the topic does not have
        fails with one naming it (``_UNKNOWN_PARTITION``: at the write once the producer knows the
        topic's metadata, else at the next flush).
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
    partition_selector: Callable[[Any], int | None] | None = None
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
        object.__setattr__(self, "bootstrap_servers", check_bootstrap(self.bootstrap_servers, owner))
        if self.topic is None and self.topic_selector is None:
            raise ConfigurationError(
                f"{owner} needs a topic (topic='out') or a topic_selector (value -> topic name)"
            )
        if self.topic is not None:
            check_topic_name(self.topic, f"{owner}.topic")
        for name in ("topic_selector", "key_selector", "partition_selector", "headers_selector"):
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
            self, "producer_config", frozen_settings(self.producer_config, f"{owner}.producer_config")
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
        required: Mapping[str, Required] = {}
        if self.delivery_guarantee is not DeliveryGuarantee.NONE:
            required = {
                "enable.idempotence": Required(
                    True, "retries must not duplicate or reorder records (idempotent producer)"
                ),
                "acks": Required(
                    "all", "a record counts as delivered only once every in-sync replica has it", ("-1",)
                ),
            }
        settings = merge_settings(
            "KafkaSinkConfig.producer_config", SINK_DEFAULTS, self.producer_config, required, SINK_FORBIDDEN
        )
        settings["bootstrap.servers"] = self.bootstrap_servers
        return with_client_logging(settings, f"sink-producer:{self.display_name}", polled=True)
