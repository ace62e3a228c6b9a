"""eventapp's partitioners pick the partition a real librdkafka producer picks for the same key:
Murmur2Partitioner = ``partitioner=murmur2_random`` (Apache Kafka's Java default), Crc32Partitioner =
``consistent_random`` (librdkafka's default). Re-sharding a savepoint relies on it."""

from __future__ import annotations

from typing import Any

import pytest

from eventapp import Crc32Partitioner, Murmur2Partitioner, Partitioner
from tests.support.broker import KafkaBroker, OutRecord, produce


@pytest.mark.parametrize(
    ("setting", "partitioner"),
    [("murmur2_random", Murmur2Partitioner()), ("consistent_random", Crc32Partitioner())],
)
def test_partitioner_matches_librdkafka(
    kafka_broker: KafkaBroker, topic_factory: Any, setting: str, partitioner: Partitioner
) -> None:
    topic = topic_factory(partitions=7)
    keys = [f"card-{i}" for i in range(300)] + ["", "é-ünïcode", "x" * 300]
    keys = [k for k in keys if k]  # an empty key is partitioned at random by both settings
    placed = produce(
        kafka_broker.bootstrap_servers,
        topic,
        [OutRecord(k.encode(), b"v") for k in keys],
        partitioner=setting,
    )
    assert [p for p, _ in placed] == [partitioner.partition(k, 7) for k in keys]
