"""KafkaSink (NONE / AT_LEAST_ONCE; EXACTLY_ONCE is in test_commit.py) against a real broker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from eventapp.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSinkConfig
from eventapp.errors import ConfigurationError, SinkError
from eventapp.sink import SinkContext, SinkWriter
from tests.support.broker import KafkaBroker, consume_all

pytestmark = pytest.mark.kafka


def writer_for(bootstrap: str, **config: Any) -> SinkWriter[Any]:
    sink: KafkaSink[Any] = KafkaSink(KafkaSinkConfig(bootstrap_servers=bootstrap, **config))
    writer = sink.create_writer(SinkContext(job="job", split="in-0"))
    assert isinstance(writer, SinkWriter)
    return writer


def test_at_least_once_writes_keys_headers_and_event_time(
    kafka_broker: KafkaBroker, topic_factory: Any
) -> None:
    topic = topic_factory(partitions=3)
    writer = writer_for(
        kafka_broker.bootstrap_servers,
        topic=topic,
        key_selector=lambda v: b"deleted" if v is None else v["user"],
        headers_selector=lambda v: None if v is None else {"source": b"test", "n": str(v["n"])},
    )
    try:
        for n in range(200):
            writer.write({"user": f"u{n % 7}", "n": n}, 1_700_000_000_000 + n)
        writer.write(None, None)  # a tombstone
        writer.flush()
    finally:
        writer.close()
    records = consume_all(kafka_broker.bootstrap_servers, topic)
    assert len(records) == 201
    values = [orjson.loads(r.value) for r in records if r.value is not None]
    assert sorted(v["n"] for v in values) == list(range(200))
    partition_of: dict[bytes | None, int] = {}
    for r in records:
        if r.value is None:
            continue
        value = orjson.loads(r.value)
        assert r.key == value["user"].encode()
        assert partition_of.setdefault(r.key, r.partition) == r.partition  # same key, same partition
        assert dict(r.headers) == {"source": b"test", "n": str(value["n"]).encode()}
        assert r.timestamp == 1_700_000_000_000 + value["n"]


def test_topic_selector_routes_records(kafka_broker: KafkaBroker, topic_factory: Any) -> None:
    even, odd = topic_factory(prefix="even"), topic_factory(prefix="odd")
    writer = writer_for(
        kafka_broker.bootstrap_servers,
        topic=even,
        topic_selector=lambda v: odd if int(v) % 2 else None,  # None: the default topic
        value_serializer="str",
    )
    try:
        for n in range(10):
            writer.write(str(n), None)
        writer.flush()
    finally:
        writer.close()
    assert [r.value for r in consume_all(kafka_broker.bootstrap_servers, even)] == [
        b"0",
        b"2",
        b"4",
        b"6",
        b"8",
    ]
    assert [r.value for r in consume_all(kafka_broker.bootstrap_servers, odd)] == [
        b"1",
        b"3",
        b"5",
        b"7",
        b"9",
    ]


def test_full_local_queue_is_retried_never_dropped(kafka_broker: KafkaBroker, topic_factory: Any) -> None:
    topic = topic_factory()
    writer = writer_for(
        kafka_broker.bootstrap_servers,
        topic=topic,
        value_serializer="bytes",
        producer_config={"queue.buffering.max.messages": 5, "linger.ms": 1},
    )
    try:
        for n in range(500):
            writer.write(b"%d" % n, None)
        writer.flush()
    finally:
        writer.close()
    assert [r.value for r in consume_all(kafka_broker.bootstrap_servers, topic)] == [
        b"%d" % n for n in range(500)
    ]


def test_fire_and_forget(kafka_broker: KafkaBroker, topic_factory: Any) -> None:
    topic = topic_factory()
    writer = writer_for(
        kafka_broker.bootstrap_servers, topic=topic, delivery_guarantee=DeliveryGuarantee.NONE
    )
    for n in range(20):
        writer.write({"n": n}, None)
    writer.flush()  # does not wait
    writer.close()  # waits for pending records (bounded by flush_timeout_s)
    assert len(consume_all(kafka_broker.bootstrap_servers, topic)) == 20


def test_delivery_failures_surface_on_flush_and_name_the_topic() -> None:
    # Nothing listens on port 1: every record times out after message.timeout.ms.
    writer = writer_for(
        "127.0.0.1:1",
        topic="lost-topic",
        producer_config={"message.timeout.ms": 300, "socket.connection.setup.timeout.ms": 1000},
        flush_timeout_s=10,
    )
    try:
        writer.write({"n": 1}, None)
        writer.write({"n": 2}, None)
        with pytest.raises(SinkError, match="2 record\\(s\\) could not be delivered: lost-topic-") as failure:
            writer.flush()
        assert "_MSG_TIMED_OUT" in str(failure.value)
        writer.flush()  # reported once; nothing pending any more
    finally:
        writer.close()


def test_delivery_failures_without_guarantee_are_only_logged() -> None:
    writer = writer_for(
        "127.0.0.1:1",
        topic="lost-topic",
        delivery_guarantee=DeliveryGuarantee.NONE,
        producer_config={"message.timeout.ms": 300},
        flush_timeout_s=5,
    )
    writer.write({"n": 1}, None)
    writer.flush()  # NONE: does not wait, never raises
    writer.close()  # waits for the (failed) delivery report, logs it
    with pytest.raises(SinkError, match="closed"):
        writer.write({"n": 2}, None)


def test_misuse_is_reported_clearly(kafka_broker: KafkaBroker) -> None:
    with pytest.raises(ConfigurationError, match=r"CheckpointingMode\.EXACTLY_ONCE"):
        writer_for(
            kafka_broker.bootstrap_servers, topic="t", delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE
        )
    sink: KafkaSink[Any] = KafkaSink(
        KafkaSinkConfig(bootstrap_servers=kafka_broker.bootstrap_servers, topic="t")
    )

    class OtherTransaction:
        split = "in-0"

        def describe(self) -> str:
            return "a Redis MULTI block"

    with pytest.raises(ConfigurationError, match="is a Redis MULTI block, not a Kafka transaction"):
        sink.create_writer(SinkContext(job="job", split="in-0", transaction=OtherTransaction()))
    writer = writer_for(kafka_broker.bootstrap_servers, topic="t", value_serializer="bytes")
    try:
        with pytest.raises(SinkError, match=r"cannot serialize .* with bytes"):
            writer.write({"not": "bytes"}, None)
        bad_key = writer_for(kafka_broker.bootstrap_servers, topic="t", key_selector=lambda v: 42)
        with pytest.raises(SinkError, match="key_selector returned int"):
            bad_key.write({}, None)
        bad_key.close()
    finally:
        writer.close()
