"""The Kafka transport of ``key_by`` shuffles (:class:`eventapp.shuffle.ShuffleTransport`): a
repartition topic on the source's cluster, Kafka Streams' model.

Each shuffle envelope is produced to its partition with its key; with exactly-once checkpoints
through the writing split's transactional producer (it commits with the split's checkpoint),
otherwise through an idempotent producer. The partitions are read back by a Kafka source over the
topic with the job source's settings (the same group, broker quirks and transactional-id prefix),
``read_committed``, each partition a split with its own commit point. After a reading split's
checkpoint commits, the records before its position are deleted (``DeleteRecords``), unless the
broker cannot (quirk ``no-delete-records``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from eventapp.shuffle import ShuffleEnvelope

from .repartition_topic import RepartitionPurger, ensure_repartition_topic
from .sink import KafkaSink
from .sink_config import DeliveryGuarantee, KafkaSinkConfig
from .source_config import KafkaSourceConfig, StartPosition

__all__ = ["ShuffleEnds", "shuffle_ends"]

#: The reading source's config, the writing sink and the purge of consumed records.
ShuffleEnds = tuple[KafkaSourceConfig, KafkaSink[ShuffleEnvelope], Callable[[Mapping[str, int]], None] | None]


def _key(envelope: ShuffleEnvelope) -> bytes | None:
    return envelope.key


def _partition(envelope: ShuffleEnvelope) -> int:
    return envelope.partition


def _payload(envelope: ShuffleEnvelope) -> bytes:
    return envelope.payload


def shuffle_ends(
    config: KafkaSourceConfig, topic: str, partitions: int, *, exactly_once: bool
) -> ShuffleEnds:
    """The ends of shuffle ``topic`` on ``config``'s cluster (created with ``partitions``
    partitions if missing; another count is refused with the fix)."""
    ensure_repartition_topic(
        config.bootstrap_servers,
        topic,
        partitions,
        timeout_s=config.operation_timeout_s,
        client_config=config.consumer_config,
    )
    read = dataclasses.replace(
        config,
        topics=[topic],
        value_deserializer="bytes",
        key_deserializer=None,
        as_kafka_record=False,
        timestamp_extractor=None,
        bounded=False,
        start_position=StartPosition.earliest(),
        group_assignment=False,
        group_instance_id=None,
        name=f"shuffle:{topic}",
    )
    sink: KafkaSink[ShuffleEnvelope] = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=config.bootstrap_servers,
            topic=topic,
            key_selector=_key,
            partition_selector=_partition,
            value_serializer=_payload,
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE
            if exactly_once
            else DeliveryGuarantee.AT_LEAST_ONCE,
            name=f"shuffle:{topic}",
        )
    )
    if config.broker_quirks.no_delete_records:
        return read, sink, None  # the broker cannot delete records (quirk no-delete-records)
    purger = RepartitionPurger(config.bootstrap_servers, topic, config.consumer_config)

    def purge(positions: Mapping[str, int]) -> None:
        purger.purge({int(split.rpartition("-")[2]): position for split, position in positions.items()})

    return read, sink, purge
