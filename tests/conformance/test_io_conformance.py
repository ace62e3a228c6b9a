"""Conformance of the other seams: every Source, Sink and CheckpointStorage implementation.

Sources: bounded reads return each record once, positions count up per split from 0, a reader
created with start positions resumes exactly there. Sinks: what a writer wrote is there after
``flush()``. Shuffle transports: each envelope reaches its partition, in write order; a topic of
another partition count is refused. Checkpoint storage: snapshots are written under fresh names, listed in order, opened
with their metadata, never overwritten, and deleted on request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventapp import (
    CheckpointError,
    ConfigurationError,
    LocalCheckpointStorage,
    ShuffleEnvelope,
    ShuffleTransport,
    SnapshotMissingError,
)
from eventapp.checkpoint.storage import CheckpointStorage
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
)
from eventapp.sink import Sink, SinkContext
from eventapp.source import Source, SourceRecord
from tests.support.broker import KafkaBroker, consume_all, produce

VALUES = [{"k": f"k{i % 7}", "i": i} for i in range(60)]
SourceFactory = Callable[[list[dict[str, Any]]], Source[Any]]


def partition_of(value: dict[str, Any]) -> int:
    return int(value["k"][1:]) % 3


@pytest.fixture(params=["collection", "kafka"])
def make_source(request: pytest.FixtureRequest) -> SourceFactory:
    if request.param == "collection":
        return lambda values: CollectionSource(values, splits=3, partitioner=partition_of)
    broker: KafkaBroker = request.getfixturevalue("kafka_broker")
    topic_factory = request.getfixturevalue("topic_factory")

    def kafka(values: list[dict[str, Any]]) -> Source[Any]:
        topic = topic_factory("conformance-src", partitions=3)
        produce(broker.bootstrap_servers, topic, [(v["k"], orjson.dumps(v), partition_of(v)) for v in values])
        return KafkaSource(
            KafkaSourceConfig(
                bootstrap_servers=broker.bootstrap_servers,
                topics=[topic],
                group_id=f"{topic}-g",
                value_deserializer="json",
                bounded=True,
            )
        )

    return kafka


def read_all(source: Source[Any], start: dict[str, int] | None = None) -> list[SourceRecord[Any]]:
    reader = source.create_reader(source.splits(), start or {})
    records: list[SourceRecord[Any]] = []
    deadline = time.monotonic() + 30
    try:
        while not reader.is_finished():
            assert time.monotonic() < deadline, f"reader did not finish ({len(records)} records)"
            records.extend(reader.poll(25, 0.1))
    finally:
        reader.close()
    return records


def test_source_reads_every_record_once_with_positions(make_source: SourceFactory) -> None:
    source = make_source(VALUES)
    assert len(source.splits()) == 3 and len(set(source.splits())) == 3
    records = read_all(source)
    assert sorted(r.value["i"] for r in records) == [v["i"] for v in VALUES]
    by_split: dict[str, list[SourceRecord[Any]]] = {}
    for r in records:
        assert r.error is None and r.split in source.splits()
        by_split.setdefault(r.split, []).append(r)
    for split_records in by_split.values():
        assert [r.position for r in split_records] == list(range(len(split_records)))
        keys = {r.value["k"] for r in split_records}
        assert len({partition_of({"k": k}) for k in keys}) == 1, "a key stays in one split"


def test_source_resumes_exactly_at_start_positions(make_source: SourceFactory) -> None:
    source = make_source(VALUES)
    first = read_all(source)
    resume = {split: 3 for split in source.splits()}
    reader = source.create_reader(source.splits(), resume)
    try:
        reported = reader.start_positions()
    finally:
        reader.close()
    assert {s: reported.get(s) for s in resume} == resume, "start_positions() reports restored positions"
    rest = read_all(source, resume)
    expected = sorted(r.value["i"] for r in first if r.position is not None and r.position >= 3)
    assert sorted(r.value["i"] for r in rest) == expected
    assert all(r.position is not None and r.position >= 3 for r in rest)


SinkCheck = tuple[Sink[Any], Callable[[], list[Any]]]


@pytest.fixture(params=["collection", "kafka-at-least-once"])
def sink_under_test(request: pytest.FixtureRequest) -> Iterator[SinkCheck]:
    if request.param == "collection":
        sink: CollectionSink[Any] = CollectionSink()
        yield sink, lambda: sink.values
        return
    broker: KafkaBroker = request.getfixturevalue("kafka_broker")
    topic = request.getfixturevalue("topic_factory")("conformance-sink", partitions=2)
    kafka = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=broker.bootstrap_servers,
            topic=topic,
            key_selector=lambda v: v["k"],
            delivery_guarantee=DeliveryGuarantee.AT_LEAST_ONCE,
        )
    )
    yield kafka, lambda: [orjson.loads(r.value) for r in consume_all(broker.bootstrap_servers, topic)]


def test_sink_writes_are_there_after_flush(sink_under_test: SinkCheck) -> None:
    sink, read_back = sink_under_test
    writer = sink.create_writer(SinkContext(job="conformance", split="src-0"))
    for v in VALUES:
        writer.write(v, 1_700_000_000_000 + v["i"])
    writer.flush()
    assert sorted(v["i"] for v in read_back()) == [v["i"] for v in VALUES]
    writer.close()


@pytest.fixture(params=["local"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> CheckpointStorage:
    return LocalCheckpointStorage(tmp_path / "checkpoints")


def write_snapshot(storage: CheckpointStorage, split: str, name: str, payload: bytes) -> None:
    directory = storage.begin("job", split, name)
    (directory / "state").mkdir()
    (directory / "state" / "data").write_bytes(payload)
    storage.complete("job", split, name, {"snapshot": name, "payload": len(payload)})


def test_checkpoint_storage_round_trip_listing_and_deletion(storage: CheckpointStorage) -> None:
    for i, name in enumerate(["chk-000000002-aa", "chk-000000001-aa", "chk-000000003-bb"]):
        write_snapshot(storage, "orders-0", name, b"x" * i)
    write_snapshot(storage, "orders-1", "chk-000000001-aa", b"y")
    assert [s.checkpoint_id for s in storage.list_snapshots("job", "orders-0")] == [1, 2, 3]
    assert storage.splits("job") == ["orders-0", "orders-1"]
    path, meta = storage.open("job", "orders-0", "chk-000000003-bb")
    assert meta == {"snapshot": "chk-000000003-bb", "payload": 2}
    assert (path / "state" / "data").read_bytes() == b"xx"
    with pytest.raises(CheckpointError, match="never overwritten"):
        storage.begin("job", "orders-0", "chk-000000003-bb")
    storage.delete("job", "orders-0", "chk-000000001-aa")
    assert [s.name for s in storage.list_snapshots("job", "orders-0")] == [
        "chk-000000002-aa",
        "chk-000000003-bb",
    ]
    with pytest.raises(SnapshotMissingError, match="Refusing to start"):
        storage.open("job", "orders-0", "chk-000000001-aa")


def test_checkpoint_storage_ignores_unfinished_snapshots(storage: CheckpointStorage) -> None:
    storage.begin("job", "orders-0", "chk-000000001-aa")  # a writer killed before complete()
    assert storage.list_snapshots("job", "orders-0") == []
    with pytest.raises(SnapshotMissingError):
        storage.open("job", "orders-0", "chk-000000001-aa")
    write_snapshot(storage, "orders-0", "chk-000000001-aa", b"z")  # a retry of the same name works
    assert [s.name for s in storage.list_snapshots("job", "orders-0")] == ["chk-000000001-aa"]


def test_checkpoint_storage_marks_commits_and_archives_without_deleting(storage: CheckpointStorage) -> None:
    for name in ["chk-000000001-aa", "chk-000000002-aa", "chk-000000003-aa"]:
        write_snapshot(storage, "orders-0", name, name.encode())
    storage.mark_committed("job", "orders-0", "chk-000000002-aa")
    assert [(s.name, s.committed) for s in storage.list_snapshots("job", "orders-0")] == [
        ("chk-000000001-aa", False),
        ("chk-000000002-aa", True),
        ("chk-000000003-aa", False),
    ]
    storage.delete("job", "orders-0", "chk-000000002-aa")
    write_snapshot(storage, "orders-0", "chk-000000002-aa", b"again")  # a new snapshot is not committed
    assert not any(s.committed for s in storage.list_snapshots("job", "orders-0"))
    storage.mark_committed("job", "orders-0", "chk-000000003-aa")
    where = storage.archive("job", "orders-0", ["chk-000000001-aa", "chk-000000003-aa"])
    assert [s.name for s in storage.list_snapshots("job", "orders-0")] == ["chk-000000002-aa"]
    assert storage.splits("job") == ["orders-0"], "an archive is not a split"
    assert "orders-0" in where
    second = storage.archive("job", "orders-0", ["chk-000000002-aa"])
    assert second != where, "a second archive never overwrites the first"
    assert storage.list_snapshots("job", "orders-0") == []


# -- shuffle transports -------------------------------------------------------------------------------


@pytest.fixture(params=["kafka"])
def shuffle_transport(request: pytest.FixtureRequest) -> tuple[ShuffleTransport, str]:
    """A transport and a fresh shuffle topic name on it."""
    broker: KafkaBroker = request.getfixturevalue("kafka_broker")
    topic_factory = request.getfixturevalue("topic_factory")
    anchor = topic_factory("conformance-shuffle-src", partitions=1)
    source: KafkaSource[Any] = KafkaSource(
        KafkaSourceConfig(bootstrap_servers=broker.bootstrap_servers, topics=[anchor], group_id=f"{anchor}-g")
    )
    return source, f"{anchor}-repartition"


def test_shuffle_channel_delivers_each_envelope_to_its_partition_in_write_order(
    shuffle_transport: tuple[ShuffleTransport, str],
) -> None:
    transport, topic = shuffle_transport
    channel = transport.shuffle_channel(topic, 3, exactly_once=False)
    splits = list(channel.source.splits())
    assert len(splits) == 3
    writer = channel.sink.create_writer(SinkContext(job="conformance", split="in-0", transaction=None))
    for i in range(30):
        writer.write(ShuffleEnvelope(i % 3, f"k{i}".encode(), f"p{i}".encode()), 1_000 + i)
    writer.flush()
    writer.close()
    reader = channel.source.create_reader(splits, {})
    got: dict[str, list[bytes]] = {s: [] for s in splits}
    deadline = time.monotonic() + 30
    try:
        while sum(map(len, got.values())) < 30:
            assert time.monotonic() < deadline, f"read {got} of 30"
            for record in reader.poll(50, 0.1):
                got[record.split].append(record.value)
    finally:
        reader.close()
    by_partition = sorted(got.values(), key=lambda payloads: payloads[0])
    assert by_partition == [[f"p{i}".encode() for i in range(p, 30, 3)] for p in range(3)]
    # The same topic with another partition count is refused, and left as it is.
    with pytest.raises(ConfigurationError, match="3"):
        transport.shuffle_channel(topic, 4, exactly_once=False)
    assert len(transport.shuffle_channel(topic, 3, exactly_once=False).source.splits()) == 3
