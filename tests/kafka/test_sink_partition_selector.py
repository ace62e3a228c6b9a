"""KafkaSinkConfig.partition_selector (Flink's custom partitioner) against a real broker: records land
in the partitions the selector picks, ``None`` falls back to the producer's partitioner, and a bad
selector fails the write with a SinkError that says what it returned."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from eventapp.connectors.kafka import KafkaSink, KafkaSinkConfig
from eventapp.errors import ConfigurationError, SinkError
from eventapp.sink import SinkContext, SinkWriter
from tests.support.broker import ConsumedRecord, KafkaBroker, consume_all

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def writer_for(bootstrap: str, **config: Any) -> SinkWriter[Any]:
    sink: KafkaSink[Any] = KafkaSink(KafkaSinkConfig(bootstrap_servers=bootstrap, **config))
    writer = sink.create_writer(SinkContext(job="job", split="in-0"))
    assert isinstance(writer, SinkWriter)
    return writer


def read_partition(bootstrap: str, topic: str, partition: int) -> list[ConsumedRecord]:
    """One partition, read by a consumer assigned to it alone, up to its end-of-partition event
    (``consume_all``: ``enable.partition.eof``, ``fetch.queue.backoff.ms=10``)."""
    records = consume_all(bootstrap, topic, partitions=[partition])
    assert {r.partition for r in records} <= {partition}
    return records


def test_records_land_in_the_selected_partitions(kafka_broker: KafkaBroker, topic_factory: Any) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    bootstrap = kafka_broker.bootstrap_servers
    writer = writer_for(
        bootstrap,
        topic=topic,
        # One key for every record: without the selector they would all share one partition.
        key_selector=lambda v: b"same-key",
        partition_selector=lambda v: v["p"],
        headers_selector=lambda v: {"n": str(v["n"])} if v["n"] % 2 else None,
    )
    try:
        for n in range(60):
            writer.write({"n": n, "p": n % PARTITIONS}, None)
        writer.flush()
    finally:
        writer.close()
    for partition in range(PARTITIONS):
        records = read_partition(bootstrap, topic, partition)
        values = [orjson.loads(r.value) for r in records if r.value is not None]
        assert [v["n"] for v in values] == list(range(partition, 60, PARTITIONS))  # in write order
        assert all(r.key == b"same-key" for r in records)
        assert [dict(r.headers) for r in records] == [
            {"n": str(v["n"]).encode()} if v["n"] % 2 else {} for v in values
        ]


def test_none_from_the_selector_means_the_producers_partitioner(
    kafka_broker: KafkaBroker, topic_factory: Any
) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    bootstrap = kafka_broker.bootstrap_servers
    writer = writer_for(
        bootstrap,
        topic=topic,
        value_serializer="str",
        key_selector=lambda v: v.split(":")[0],
        partition_selector=lambda v: 2 if v.startswith("pinned") else None,
    )
    try:
        for n in range(30):
            writer.write(f"pinned:{n}", None)
            writer.write(f"k{n % 5}:{n}", None)
        writer.flush()
    finally:
        writer.close()
    by_partition = {p: read_partition(bootstrap, topic, p) for p in range(PARTITIONS)}
    pinned = [r.value for r in by_partition[2] if r.value is not None and r.value.startswith(b"pinned")]
    assert pinned == [f"pinned:{n}".encode() for n in range(30)]
    keyed = [r for records in by_partition.values() for r in records if r.key != b"pinned"]
    assert len(keyed) == 30
    partition_of: dict[bytes | None, int] = {}
    for record in keyed:  # the default partitioner: one key, one partition
        assert partition_of.setdefault(record.key, record.partition) == record.partition


def test_full_local_queue_keeps_the_selected_partition(kafka_broker: KafkaBroker, topic_factory: Any) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    bootstrap = kafka_broker.bootstrap_servers
    writer = writer_for(
        bootstrap,
        topic=topic,
        value_serializer="bytes",
        partition_selector=lambda v: int(v) % PARTITIONS,
        producer_config={"queue.buffering.max.messages": 5, "linger.ms": 1},
    )
    try:
        for n in range(300):
            writer.write(b"%d" % n, None)
        writer.flush()
    finally:
        writer.close()
    for partition in range(PARTITIONS):
        assert [r.value for r in read_partition(bootstrap, topic, partition)] == [
            b"%d" % n for n in range(partition, 300, PARTITIONS)
        ]


def test_a_selector_that_raises_fails_the_write(kafka_broker: KafkaBroker, topic_factory: Any) -> None:
    topic = topic_factory()

    def broken(value: Any) -> int:
        raise KeyError("region")

    writer = writer_for(kafka_broker.bootstrap_servers, topic=topic, partition_selector=broken)
    try:
        with pytest.raises(SinkError, match=r"partition_selector failed on .*KeyError: 'region'") as failure:
            writer.write({"n": 1}, None)
        assert isinstance(failure.value.__cause__, KeyError)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("returned", "named"),
    [
        ("1", "returned str '1'"),
        (1.0, "returned float 1.0"),
        (True, "returned bool True"),
        (-1, "returned -1"),
    ],
)
def test_a_selector_result_that_is_no_partition_fails_the_write(
    kafka_broker: KafkaBroker, topic_factory: Any, returned: object, named: str
) -> None:
    topic = topic_factory()
    writer = writer_for(kafka_broker.bootstrap_servers, topic=topic, partition_selector=lambda v: returned)
    try:
        with pytest.raises(SinkError, match=re.escape(named) + r" for .*int >= 0\) or None"):
            writer.write({"n": 1}, None)
        writer.flush()  # nothing was produced
    finally:
        writer.close()
    assert consume_all(kafka_broker.bootstrap_servers, topic) == []


def test_a_partition_the_topic_does_not_have_fails_with_its_number(
    kafka_broker: KafkaBroker, topic_factory: Any
) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    writer = writer_for(
        kafka_broker.bootstrap_servers, topic=topic, partition_selector=lambda v: 7, flush_timeout_s=10
    )
    try:
        # librdkafka refuses it in produce() once it knows the topic's metadata, else in the delivery
        # report: either way a SinkError naming the partition.
        with pytest.raises(SinkError, match="_UNKNOWN_PARTITION") as failure:
            writer.write({"n": 1}, None)
            writer.flush()
        message = str(failure.value)
        assert f"{topic}-7" in message or f"partition 7 of topic {topic!r}" in message
    finally:
        writer.close()


def test_a_selector_that_is_not_callable_is_refused_at_construction() -> None:
    not_callable: Any = 3
    with pytest.raises(ConfigurationError, match="partition_selector must be a callable taking the value"):
        KafkaSinkConfig(bootstrap_servers="localhost:9092", topic="t", partition_selector=not_callable)
