"""KafkaSource against a real broker (Tansu unless $EVENTAPP_TEST_BOOTSTRAP_SERVERS says otherwise)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from eventapp.connectors.kafka import (
    KafkaRecord,
    KafkaSource,
    KafkaSourceConfig,
    OffsetReset,
    StartPosition,
)
from eventapp.errors import ConfigurationError, SerializationError, SourceError
from tests.kafka.conftest import drain, poll_until
from tests.support.broker import KafkaBroker, OutRecord, produce

pytestmark = pytest.mark.kafka


def make_source(broker: KafkaBroker, topic: str, group_id: str, **overrides: Any) -> KafkaSource[Any]:
    params: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap_servers,
        "topics": [topic],
        "group_id": group_id,
        "value_deserializer": "json",
        "bounded": True,
        "consumer_config": {"fetch.wait.max.ms": 10},
    }
    params.update(overrides)
    return KafkaSource(KafkaSourceConfig(**params))


def json_records(count: int, partitions: int, ts0: int = 1_700_000_000_000) -> list[OutRecord]:
    return [
        OutRecord(str(i).encode(), orjson.dumps({"i": i}), i % partitions, ts0 + i * 1000)
        for i in range(count)
    ]


def by_split(records: list[Any]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in records:
        out.setdefault(r.split, []).append(r.value["i"])
    return out


def test_splits_lists_every_partition(kafka_broker: KafkaBroker, topic_factory: Any, group_id: str) -> None:
    a = topic_factory(partitions=3)
    b = topic_factory(partitions=1)
    source = make_source(kafka_broker, a, group_id, topics=[a, b])
    assert source.splits() == [f"{a}-0", f"{a}-1", f"{a}-2", f"{b}-0"]
    assert source.name == f"kafka:{a},{b}"


def test_missing_topic_is_a_source_error(kafka_broker: KafkaBroker, group_id: str) -> None:
    missing = f"no-such-topic-{group_id}"
    source = make_source(kafka_broker, missing, group_id)
    with pytest.raises(SourceError, match=f"topic '{missing}' is not available"):
        source.splits()
    with pytest.raises(SourceError):  # and asking did not create it (Tansu creates topics it is asked about)
        source.splits()


def test_reads_all_partitions_from_earliest(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    topic = topic_factory(partitions=3)
    produce(kafka_broker.bootstrap_servers, topic, json_records(300, 3))
    source = make_source(kafka_broker, topic, group_id, start_position=StartPosition.earliest())
    reader = source.create_reader(source.splits(), {})
    try:
        records = drain(reader)
    finally:
        reader.close()
    assert reader.is_finished()
    got = by_split(records)
    for p in range(3):
        assert got[f"{topic}-{p}"] == list(range(p, 300, 3))
    for r in records:
        assert r.error is None
        assert r.timestamp == 1_700_000_000_000 + r.value["i"] * 1000
    # positions are the records' own offsets, consecutive per partition
    positions = [r.position for r in records if r.split == f"{topic}-0"]
    assert positions == list(range(100))


def test_restored_positions_win_and_committed_offsets_are_used_otherwise(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    topic = topic_factory(partitions=3)
    produce(kafka_broker.bootstrap_servers, topic, json_records(30, 3))  # 10 per partition
    committer = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": group_id})
    committer.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 7)], asynchronous=False)
    committer.close()
    source = make_source(kafka_broker, topic, group_id)  # StartPosition.committed() by default
    reader = source.create_reader(source.splits(), {f"{topic}-1": 2})
    try:
        got = by_split(drain(reader))
    finally:
        reader.close()
    assert got[f"{topic}-0"] == [i for i in range(0, 30, 3)][4:]  # committed offset 4
    assert got[f"{topic}-1"] == [i for i in range(1, 30, 3)][2:]  # restored position 2 beats committed 7
    assert got[f"{topic}-2"] == list(range(2, 30, 3))  # no committed offset: reset=EARLIEST


def test_committed_with_reset_latest_and_fail(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    topic = topic_factory(partitions=1)
    for record in json_records(5, 1):  # one record per batch: Tansu reports the end offset right then
        produce(kafka_broker.bootstrap_servers, topic, [record])
    source = make_source(
        kafka_broker, topic, group_id, start_position=StartPosition.committed(reset=OffsetReset.LATEST)
    )
    reader = source.create_reader(source.splits(), {})
    try:
        assert drain(reader) == []
        assert reader.start_positions() == {f"{topic}-0": 5}  # the end, resolved when assigned
    finally:
        reader.close()
    failing = make_source(
        kafka_broker, topic, group_id, start_position=StartPosition.committed(reset=OffsetReset.FAIL)
    )
    reader = failing.create_reader(failing.splits(), {})
    try:
        with pytest.raises(SourceError, match=r"OffsetReset\.FAIL"):
            drain(reader, timeout=10)
    finally:
        reader.close()


def test_latest_reads_only_new_records(kafka_broker: KafkaBroker, topic_factory: Any, group_id: str) -> None:
    topic = topic_factory(partitions=2)
    for record in json_records(6, 2):  # one record per batch (see test_committed_with_reset_latest_...)
        produce(kafka_broker.bootstrap_servers, topic, [record])
    source = make_source(kafka_broker, topic, group_id, start_position=StartPosition.latest(), bounded=False)
    reader = source.create_reader(source.splits(), {})
    try:
        # "latest" is resolved to offsets when the reader is created (the runtime checkpoints them
        # before any record is read), so records produced from now on are read whenever polled.
        assert reader.start_positions() == {f"{topic}-0": 3, f"{topic}-1": 3}
        assert reader.poll(100, 0.1) == []
        produce(
            kafka_broker.bootstrap_servers,
            topic,
            [OutRecord(None, orjson.dumps({"i": 100 + p}), p) for p in (0, 1)],
        )
        records = poll_until(reader, 2)
        assert reader.start_positions() == {f"{topic}-0": 3, f"{topic}-1": 3}
    finally:
        reader.close()
    assert sorted(r.value["i"] for r in records) == [100, 101]
    assert not reader.is_finished()


def test_from_timestamp(kafka_broker: KafkaBroker, topic_factory: Any, group_id: str) -> None:
    topic = topic_factory(partitions=2)
    ts0 = 1_700_000_000_000
    produce(kafka_broker.bootstrap_servers, topic, json_records(20, 2, ts0))  # record i at ts0 + i s
    # a late record (small timestamp) after the start point is still delivered, as with Kafka
    produce(kafka_broker.bootstrap_servers, topic, [OutRecord(None, orjson.dumps({"i": 99}), 0, ts0)])
    source = make_source(
        kafka_broker, topic, group_id, start_position=StartPosition.from_timestamp(ts0 + 12_000)
    )
    reader = source.create_reader(source.splits(), {})
    try:
        got = by_split(drain(reader))
    finally:
        reader.close()
    assert got[f"{topic}-0"] == [12, 14, 16, 18, 99]
    assert got[f"{topic}-1"] == [13, 15, 17, 19]


def test_timestamp_after_the_end_reads_nothing_old(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    topic = topic_factory(partitions=1)
    produce(kafka_broker.bootstrap_servers, topic, json_records(5, 1))
    source = make_source(kafka_broker, topic, group_id, start_position=StartPosition.from_timestamp(2**41))
    reader = source.create_reader(source.splits(), {})
    try:
        assert drain(reader) == []
    finally:
        reader.close()


def test_malformed_json_becomes_error_records_and_nothing_is_lost(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    topic = topic_factory(partitions=2)
    records = json_records(40, 2)
    bad = {5: b"{not json", 6: b"\xff\xfe", 17: b""}
    records = [r._replace(value=bad.get(i, r.value)) for i, r in enumerate(records)]
    records.append(OutRecord(b"tomb", None, 0))  # a tombstone reads as None, not as an error
    produce(kafka_broker.bootstrap_servers, topic, records)
    source = make_source(kafka_broker, topic, group_id, start_position=StartPosition.earliest())
    reader = source.create_reader(source.splits(), {})
    try:
        got = drain(reader)
    finally:
        reader.close()
    assert len(got) == 41
    errors = [r for r in got if r.error is not None]
    assert sorted(r.raw for r in errors) == sorted(bad.values())
    for r in errors:
        assert isinstance(r.error, SerializationError)
        assert r.value is None and r.position is not None
        partition = int(r.split.rsplit("-", 1)[1])
        assert f"{topic}-{partition} offset {r.position}" in str(r.error)
    error_positions = {(r.split, r.position) for r in errors}
    assert error_positions == {(f"{topic}-1", 2), (f"{topic}-0", 3), (f"{topic}-1", 8)}
    tombstones = [r for r in got if r.error is None and r.value is None]
    assert [(t.split, t.position) for t in tombstones] == [(f"{topic}-0", 20)]
    good = sorted(r.value["i"] for r in got if r.error is None and r.value is not None)
    assert good == [i for i in range(40) if i not in bad]


def test_kafka_record_envelope_and_timestamp_extractor(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    topic = topic_factory(partitions=1)
    produce(
        kafka_broker.bootstrap_servers,
        topic,
        [
            OutRecord(b"k1", orjson.dumps({"at": 5_000}), 0, 1_000, [("h", b"v"), ("n", None)]),
            OutRecord(b"k2", orjson.dumps({"no_at": 1}), 0, 2_000),
            OutRecord(b"\xff", orjson.dumps({"at": 7_000}), 0, 3_000),
        ],
    )
    source = make_source(
        kafka_broker,
        topic,
        group_id,
        start_position=StartPosition.earliest(),
        as_kafka_record=True,
        key_deserializer="str",
        timestamp_extractor=lambda rec: rec.value["at"],
    )
    reader = source.create_reader(source.splits(), {})
    try:
        first, second, third = drain(reader)
    finally:
        reader.close()
    assert isinstance(first.value, KafkaRecord)
    assert first.value.key == "k1" and first.value.value == {"at": 5_000}
    assert first.value.headers == (("h", b"v"), ("n", None))
    assert (first.value.topic, first.value.partition, first.value.offset) == (topic, 0, 0)
    assert first.value.timestamp == 1_000 and first.timestamp == 5_000
    assert isinstance(second.error, SourceError) and "timestamp extractor" in str(second.error)
    assert second.position == 1 and second.value is None
    assert isinstance(third.error, SerializationError) and "the key" in str(third.error)
    assert third.raw == b"\xff"


def test_bounded_reader_with_empty_partitions_finishes(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    topic = topic_factory(partitions=3)
    produce(kafka_broker.bootstrap_servers, topic, [OutRecord(None, b"1", 1)])
    source = make_source(kafka_broker, topic, group_id, start_position=StartPosition.earliest())
    reader = source.create_reader([f"{topic}-1", f"{topic}-2"], {})
    try:
        assert [r.value for r in drain(reader, timeout=10)] == [1]
        assert reader.poll(10, 0.05) == []
        assert group_id.encode() in reader.group_metadata()  # serialized; names the group
    finally:
        reader.close()
    with pytest.raises(SourceError, match="closed"):
        reader.poll(10, 0.01)


def test_splits_are_interleaved_not_drained_one_after_another(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    # 4 partitions of 5,000 records, produced in large batches: a fetch answers with one
    # partition's batches after another, so librdkafka's queue holds them partition by partition.
    topic = topic_factory(partitions=4)
    produce(kafka_broker.bootstrap_servers, topic, json_records(20_000, 4), **{"linger.ms": 200})
    source = make_source(
        kafka_broker, topic, group_id, start_position=StartPosition.earliest(), split_buffer_bytes=10_000
    )
    reader = source.create_reader(source.splits(), {})
    try:
        records: list[Any] = []
        while not reader.finished_splits():
            records.extend(reader.poll(500, 0.2))
        first_done = {s: len(v) for s, v in by_split(records).items()}
        records.extend(drain(reader))
    finally:
        reader.close()
    assert len(first_done) == 4 and min(first_done.values()) >= 1_250, (
        f"when the first split had handed out all its 5,000 records, the splits had handed out "
        f"{first_done}: one split was drained before the others were read"
    )
    got = by_split(records)
    assert {s: sorted(v) for s, v in got.items()} == got, "each split's records stay in offset order"
    assert sorted(i for v in got.values() for i in v) == list(range(20_000)), "nothing lost or repeated"


def test_a_paused_split_hands_out_nothing_and_resumes_where_it_stopped(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    topic = topic_factory(partitions=2)
    produce(kafka_broker.bootstrap_servers, topic, json_records(8_000, 2), **{"linger.ms": 200})
    source = make_source(
        kafka_broker, topic, group_id, start_position=StartPosition.earliest(), split_buffer_bytes=5_000
    )
    paused, other = source.splits()
    reader = source.create_reader(source.splits(), {})
    try:
        records = poll_until(reader, 1_000)
        reader.pause_or_resume([paused], [])
        while other not in reader.finished_splits():
            batch = reader.poll(500, 0.2)
            assert all(r.split == other for r in batch), "a paused split handed out records"
            records.extend(batch)
        assert paused not in reader.finished_splits() and not reader.is_finished()
        reader.pause_or_resume([], [paused])
        records.extend(drain(reader))
    finally:
        reader.close()
    got = by_split(records)
    assert got[paused] == list(range(0, 8_000, 2)), "the paused split lost or repeated records"
    assert got[other] == list(range(1, 8_000, 2))


def test_split_buffer_bytes_must_be_positive(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    with pytest.raises(ConfigurationError, match="split_buffer_bytes must be an int >= 1"):
        make_source(kafka_broker, "t", group_id, split_buffer_bytes=0)
