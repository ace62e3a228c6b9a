"""The checkpoint topic: which partition holds the checkpoint markers, the configs it is created with,
and creating it when it is missing (see :mod:`eventapp.connectors.kafka.metadata` for what is stored
there)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventapp.errors import CheckpointError

from .client_settings import admin_settings
from .commit_config import KafkaCommitConfig
from .errors import describe_kafka_error, kafka_error_of

__all__ = ["CHECKPOINT_TOPIC_CONFIGS", "CHECKPOINT_TOPIC_PARTITION", "ensure_checkpoint_topic"]

log = structlog.get_logger(__name__)

#: Markers always go to this partition of the checkpoint topic.
CHECKPOINT_TOPIC_PARTITION = 0

#: Configs of an auto-created checkpoint topic. Markers are tiny (~250 bytes per checkpoint per split)
#: and the committed one must never be deleted, hence no time-based retention.
CHECKPOINT_TOPIC_CONFIGS: Mapping[str, str] = {"retention.ms": "-1", "cleanup.policy": "delete"}


_known_topics: set[tuple[str, str]] = set()
_known_topics_lock = threading.Lock()


def ensure_checkpoint_topic(config: KafkaCommitConfig) -> None:
    """Make sure the checkpoint topic exists (creating it if allowed); cached per process."""
    cache_key = (config.bootstrap_servers, config.checkpoint_topic)
    with _known_topics_lock:
        if cache_key in _known_topics:
            return
    topic = config.checkpoint_topic
    timeout = config.operation_timeout_s
    admin = AdminClient(admin_settings(config.bootstrap_servers, config.consumer_config))
    if not _topic_ready(admin, topic, timeout):
        if not config.create_checkpoint_topic:
            raise CheckpointError(
                f"checkpoint topic {topic!r} does not exist on {config.bootstrap_servers}; create it "
                f"(1 partition, cleanup.policy=delete, retention.ms=-1) or set create_checkpoint_topic=True"
            )
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=-1, config=dict(CHECKPOINT_TOPIC_CONFIGS))],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        try:
            futures[topic].result(timeout=timeout)
            log.info("kafka.checkpoint_topic.created", topic=topic, bootstrap=config.bootstrap_servers)
        except KafkaException as exc:
            error = kafka_error_of(exc)
            if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise CheckpointError(
                    f"cannot create checkpoint topic {topic!r}: {describe_kafka_error(error, exc)}; create "
                    f"it yourself (1 partition, cleanup.policy=delete, retention.ms=-1)"
                ) from exc
        deadline = time.monotonic() + timeout
        while not _topic_ready(admin, topic, timeout):
            if time.monotonic() > deadline:
                raise CheckpointError(f"checkpoint topic {topic!r} did not appear in metadata in {timeout}s")
            time.sleep(0.05)
    with _known_topics_lock:
        _known_topics.add(cache_key)


def _topic_ready(admin: AdminClient, topic: str, timeout: float) -> bool:
    try:
        # All topics, not list_topics(topic): a metadata request naming a topic makes some brokers
        # (Tansu, Kafka with auto.create.topics.enable) create it, with default configs.
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise CheckpointError(
            f"cannot read metadata of checkpoint topic {topic!r}: "
            f"{describe_kafka_error(kafka_error_of(exc), exc)}"
        ) from exc
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        return False
    partition = described.partitions.get(CHECKPOINT_TOPIC_PARTITION)
    return partition is not None and partition.leader >= 0
