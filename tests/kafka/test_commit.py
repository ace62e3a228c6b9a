"""Kafka commit points against a real broker: exactly-once output, recovery, fencing.

On Tansu 0.6.0, records of aborted transactions stay visible to ``read_committed`` consumers, so
"aborted output is invisible" is checked with the transaction-aware audit reader
(:mod:`tests.support.kafka_audit`), and additionally with a plain consumer on brokers that hide them.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from eventapp.checkpoint.commit import CommitPoint, CommittedCheckpoint
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaCommitConfig,
    KafkaOffsetsCommitPoint,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
    KafkaTransactionalCommitPoint,
    ProducerFencedError,
    encode_metadata,
    read_committed_checkpoints,
)
from eventapp.connectors.kafka.metadata import CheckpointMarker
from eventapp.errors import CheckpointError
from eventapp.sink import SinkContext, SinkWriter
from tests.kafka.conftest import drain
from tests.support.broker import KafkaBroker, OutRecord, consume_all, produce
from tests.support.kafka_audit import audit_topic

pytestmark = pytest.mark.kafka


def commit_config(
    broker: KafkaBroker, group_id: str, checkpoint_topic: str, **overrides: Any
) -> KafkaCommitConfig:
    params: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap_servers,
        "group_id": group_id,
        "transactional_id_prefix": f"tx-{group_id}",
        "checkpoint_topic": checkpoint_topic,
        "create_checkpoint_topic": False,
        "operation_timeout_s": 15.0,
    }
    params.update(overrides)
    return KafkaCommitConfig(**params)


def eo_writer(
    broker: KafkaBroker, topic: str, split: str, commit_point: KafkaTransactionalCommitPoint
) -> SinkWriter[Any]:
    assert commit_point.transaction is not None
    sink: KafkaSink[Any] = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=broker.bootstrap_servers,
            topic=topic,
            value_serializer="str",
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
        )
    )
    return sink.create_writer(SinkContext(job="job", split=split, transaction=commit_point.transaction))


def values(broker: KafkaBroker, topic: str) -> list[bytes | None]:
    return [r.value for r in consume_all(broker.bootstrap_servers, topic)]


def committed_offset(broker: KafkaBroker, group_id: str, topic: str, partition: int) -> TopicPartition:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group_id})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return tp
    finally:
        consumer.close()


def test_outputs_become_visible_only_when_the_checkpoint_commits(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    source_topic, out = topic_factory(prefix="in"), topic_factory(prefix="out")
    split = f"{source_topic}-0"
    cp = KafkaTransactionalCommitPoint(commit_config(kafka_broker, group_id, checkpoint_topic), split)
    assert isinstance(cp, CommitPoint)
    assert cp.transaction is None  # until recovered
    with pytest.raises(CheckpointError, match=r"call recover\(\) first"):
        cp.commit(CommittedCheckpoint(1, "x", 1))
    assert cp.recover() is None
    assert cp.transaction is not None
    writer = eo_writer(kafka_broker, out, split, cp)
    try:
        for n in range(5):
            writer.write(f"v{n}", None)
        writer.flush()
        assert values(kafka_broker, out) == []  # in the open transaction
        cp.commit(CommittedCheckpoint(1, "chk-000000001-a", 5))
        assert values(kafka_broker, out) == [b"v0", b"v1", b"v2", b"v3", b"v4"]
        writer.write("v5", None)
        writer.flush()
        assert len(values(kafka_broker, out)) == 5
        cp.commit(CommittedCheckpoint(2, "chk-000000002-a", 6))
    finally:
        writer.close()
        cp.close()
    audit = audit_topic(kafka_broker.bootstrap_servers, out)
    assert audit.committed_values() == [f"v{n}".encode() for n in range(6)]
    assert audit.aborted_count == 0 and audit.pending_count == 0


def test_a_new_commit_point_recovers_the_committed_checkpoint(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    source_topic = topic_factory(prefix="in", partitions=2)
    split = f"{source_topic}-1"
    config = commit_config(kafka_broker, group_id, checkpoint_topic)
    first = KafkaTransactionalCommitPoint(config, split)
    assert first.recover() is None
    first.commit(CommittedCheckpoint(1, "chk-000000001-a", 5))
    first.commit(CommittedCheckpoint(2, "chk-000000002-a", 9))
    first.close()

    second = KafkaTransactionalCommitPoint(config, split)
    try:
        assert second.recover() == CommittedCheckpoint(2, "chk-000000002-a", 9)
        state = second.recovered_state
        assert state is not None and state.offset == 9 and state.marker is not None
        assert state.marker.transactional_id == f"tx-{group_id}-{split}"
        # Apache Kafka keeps offset metadata (read first); Tansu 0.6.0 drops it (the marker is used).
        assert state.metadata in (None, encode_metadata(2, "chk-000000002-a"))
        assert state.resolution == "marker"
    finally:
        second.close()
    # the group's committed offset is the split's position, as any Kafka tool shows it
    assert committed_offset(kafka_broker, group_id, source_topic, 1).offset == 9
    # the savepoint CLI's view of all splits
    states = read_committed_checkpoints(config, [f"{source_topic}-0", split])
    assert states[f"{source_topic}-0"].checkpoint is None and states[f"{source_topic}-0"].resolution == "none"
    assert states[split].checkpoint == CommittedCheckpoint(2, "chk-000000002-a", 9)


def test_checkpoint_without_position_round_trips(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    split = f"{topic_factory(prefix='in')}-0"
    config = commit_config(kafka_broker, group_id, checkpoint_topic)
    cp = KafkaTransactionalCommitPoint(config, split)
    cp.recover()
    cp.commit(CommittedCheckpoint(1, "chk-000000001-a", None))  # e.g. timers fired before any record
    cp.close()
    again = KafkaTransactionalCommitPoint(config, split)
    try:
        assert again.recover() == CommittedCheckpoint(1, "chk-000000001-a", None)
    finally:
        again.close()


def test_zombie_is_fenced_and_its_open_transaction_aborted(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    source_topic, out = topic_factory(prefix="in"), topic_factory(prefix="out")
    split = f"{source_topic}-0"
    config = commit_config(kafka_broker, group_id, checkpoint_topic)
    zombie = KafkaTransactionalCommitPoint(config, split)
    zombie.recover()
    zombie_writer = eo_writer(kafka_broker, out, split, zombie)
    zombie_writer.write("a1", None)
    zombie_writer.flush()
    zombie.commit(CommittedCheckpoint(1, "chk-000000001-old", 1))
    zombie_writer.write("a2-zombie", None)  # in A's open transaction when B takes over
    zombie_writer.flush()

    owner = KafkaTransactionalCommitPoint(config, split)
    try:
        assert owner.recover() == CommittedCheckpoint(1, "chk-000000001-old", 1)
        # Whoever uses the fenced producer first learns it: the sink or the commit (timing-dependent).
        with contextlib.suppress(ProducerFencedError):
            zombie_writer.write("a3-zombie", None)
            zombie_writer.flush()
        with pytest.raises(ProducerFencedError) as fenced:
            zombie.commit(CommittedCheckpoint(2, "chk-000000002-old", 3))
        assert fenced.value.split == split
        with pytest.raises(CheckpointError, match="recover"):
            zombie.commit(CommittedCheckpoint(2, "chk-000000002-old", 3))
        zombie_writer.close()
        zombie.close()  # must not raise

        owner_writer = eo_writer(kafka_broker, out, split, owner)
        owner_writer.write("b1", None)
        owner_writer.flush()
        owner.commit(CommittedCheckpoint(2, "chk-000000002-new", 2))
        owner_writer.close()
    finally:
        owner.close()

    audit = audit_topic(kafka_broker.bootstrap_servers, out)
    assert audit.committed_values() == [b"a1", b"b1"], audit.summary()
    assert b"a2-zombie" in [r.value for p in audit.partitions.values() for r in p.aborted]
    if kafka_broker.hides_aborted_transactions:
        assert values(kafka_broker, out) == [b"a1", b"b1"]
    successor = KafkaTransactionalCommitPoint(config, split)
    try:
        assert successor.recover() == CommittedCheckpoint(2, "chk-000000002-new", 2)
    finally:
        successor.close()


def test_crash_before_commit_transaction_recovers_the_previous_checkpoint(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    """The marker and offsets of checkpoint 2 were sent, then the process died before
    commit_transaction: Tansu still shows the aborted marker to readers, recovery must ignore it."""
    split = f"{topic_factory(prefix='in')}-0"
    config = commit_config(kafka_broker, group_id, checkpoint_topic)
    crashed = KafkaTransactionalCommitPoint(config, split)
    crashed.recover()
    crashed.commit(CommittedCheckpoint(1, "chk-000000001-a", 3))
    transaction = crashed.transaction
    assert transaction is not None
    producer = transaction.producer
    marker = CheckpointMarker(group_id, split, 2, "chk-000000002-a", 7)
    producer.produce(checkpoint_topic, marker.to_bytes(), key=marker.key, partition=0)
    assert producer.flush(10) == 0
    topic, partition = split.rsplit("-", 1)
    metadata = encode_metadata(2, "chk-000000002-a")
    producer.send_offsets_to_transaction(
        [TopicPartition(topic, int(partition), 7, metadata=metadata)],
        Consumer(
            {"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": group_id}
        ).consumer_group_metadata(),
        10,
    )
    # ... and the process is gone (no commit_transaction, no abort).

    recovered = KafkaTransactionalCommitPoint(config, split)
    try:
        assert recovered.recover() == CommittedCheckpoint(1, "chk-000000001-a", 3)
    finally:
        recovered.close()
    markers = audit_topic(kafka_broker.bootstrap_servers, checkpoint_topic)
    # Besides markers, the topic holds the ownership claims of each recovery (key ".../owner").
    assert [
        orjson.loads(r.value or b"")["checkpoint_id"] for r in markers.committed if r.key == marker.key
    ] == [1]
    assert sum(r.key == marker.key + b"/owner" for r in markers.committed) == 2
    assert markers.aborted_count == 1, markers.summary()
    del crashed  # never closed: it "crashed"


def test_at_least_once_commit_point_round_trip(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    source_topic = topic_factory(prefix="in")
    split = f"{source_topic}-0"
    config = commit_config(kafka_broker, group_id, checkpoint_topic)
    cp = KafkaOffsetsCommitPoint(config, split)
    assert isinstance(cp, CommitPoint)
    assert cp.recover() is None and cp.transaction is None
    cp.commit(CommittedCheckpoint(1, "chk-000000001-a", 4))
    cp.commit(CommittedCheckpoint(2, "chk-000000002-a", 8))
    cp.close()
    assert committed_offset(kafka_broker, group_id, source_topic, 0).offset == 8
    again = KafkaOffsetsCommitPoint(config, split)
    try:
        assert again.recover() == CommittedCheckpoint(2, "chk-000000002-a", 8)
    finally:
        again.close()
    # an exactly-once commit point reads what the at-least-once one wrote (switching modes works)
    switched = KafkaTransactionalCommitPoint(config, split)
    try:
        assert switched.recover() == CommittedCheckpoint(2, "chk-000000002-a", 8)
    finally:
        switched.close()


def test_foreign_committed_offset_is_a_position_without_checkpoint(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    source_topic = topic_factory(prefix="in")
    produce(kafka_broker.bootstrap_servers, source_topic, [OutRecord(None, b"%d" % n) for n in range(10)])
    other_tool = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": group_id})
    other_tool.commit(offsets=[TopicPartition(source_topic, 0, 6, metadata="not ours")], asynchronous=False)
    other_tool.close()
    source: KafkaSource[Any] = KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=kafka_broker.bootstrap_servers,
            topics=[source_topic],
            group_id=group_id,
            checkpoint_topic=checkpoint_topic,
            bounded=True,
        )
    )
    cp = source.create_commit_point("job", f"{source_topic}-0", exactly_once=True)
    assert isinstance(cp, KafkaTransactionalCommitPoint)
    assert cp.transactional_id == f"job-{source_topic}-0"
    try:
        assert cp.recover() is None
        assert cp.foreign_offset == 6
        assert cp.recovered_state is not None and cp.recovered_state.resolution == "foreign-offset"
    finally:
        cp.close()
    # ... and the source's default StartPosition.committed() starts there
    reader = source.create_reader(source.splits(), {})
    try:
        assert [r.value for r in drain(reader)] == [b"6", b"7", b"8", b"9"]
    finally:
        reader.close()
    assert isinstance(
        source.create_commit_point("job", f"{source_topic}-0", exactly_once=False), KafkaOffsetsCommitPoint
    )


def test_checkpoint_topic_is_created_when_missing(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    split = f"{topic_factory(prefix='in')}-0"
    missing = f"checkpoints-{group_id}"
    strict = commit_config(kafka_broker, group_id, missing)
    with pytest.raises(CheckpointError, match="does not exist"):
        KafkaTransactionalCommitPoint(strict, split).recover()
    config = commit_config(kafka_broker, group_id, missing, create_checkpoint_topic=True)
    cp = KafkaTransactionalCommitPoint(config, split)
    try:
        cp.recover()
        cp.commit(CommittedCheckpoint(1, "chk-000000001-a", 0))
    finally:
        cp.close()
    records = consume_all(kafka_broker.bootstrap_servers, missing)
    assert [r.key.endswith(b"/owner") for r in records] == [True, False], "the claim, then the marker"


def test_a_pointer_without_its_marker_refuses_to_start(kafka_broker: Any, topic_factory: Any) -> None:
    """If the checkpoint topic loses the markers (deleted and recreated), recovery must not continue
    with empty state from the group's committed offset."""
    from confluent_kafka.admin import AdminClient

    from eventapp.checkpoint.commit import CommittedCheckpoint
    from eventapp.connectors.kafka import KafkaCommitConfig, KafkaSourceConfig, KafkaTransactionalCommitPoint
    from eventapp.errors import CheckpointError
    from tests.support.broker import create_topic

    bootstrap = kafka_broker.bootstrap_servers
    source_topic = topic_factory("lost-markers-in", partitions=1)
    checkpoints = topic_factory("lost-markers-chk", partitions=1)
    config = KafkaCommitConfig.for_source(
        KafkaSourceConfig(
            bootstrap_servers=bootstrap,
            topics=[source_topic],
            group_id=f"{source_topic}-g",
            checkpoint_topic=checkpoints,
        ),
        "lost-markers",
    )
    split = f"{source_topic}-0"
    first = KafkaTransactionalCommitPoint(config, split)
    first.recover()
    for i in (1, 2):
        first.commit(CommittedCheckpoint(i, f"chk-{i}", 10 * i))
    first.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([checkpoints])[checkpoints].result(30)
    deadline = time.monotonic() + 30
    while checkpoints in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "topic deletion did not finish"
        time.sleep(0.1)
    create_topic(bootstrap, checkpoints, 1)

    second = KafkaTransactionalCommitPoint(config, split)
    with pytest.raises(CheckpointError, match="Refusing to start rather than continue without their state"):
        second.recover()
    second.close()


def test_a_marker_left_in_an_open_transaction_is_waited_for_then_refused_or_ignored(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    """A checkpoint marker of the split in a transaction that never ends: the scan waits
    ``operation_timeout_s``; then, if the caller has not fenced the split's previous owner, it refuses
    (another instance may still be running); if it has (commit point recovery), the marker is a write
    of a fenced epoch that can never commit, and the last committed checkpoint is used."""
    from confluent_kafka import Producer

    from eventapp.connectors.kafka.offsets import scan_committed_markers
    from tests.support.broker import transactional_producer_config

    config = commit_config(kafka_broker, group_id, checkpoint_topic, operation_timeout_s=2.0)
    split = f"{topic_factory(prefix='in')}-0"
    owner = KafkaTransactionalCommitPoint(config, split)
    owner.recover()
    owner.commit(CommittedCheckpoint(1, "chk-000000001-a", 5))
    owner.close()
    committed = read_committed_checkpoints(config, [split])[split]
    assert committed.checkpoint == CommittedCheckpoint(1, "chk-000000001-a", 5)

    stray = Producer(transactional_producer_config(kafka_broker.bootstrap_servers, f"{group_id}-stray"))
    stray.init_transactions(10)
    stray.begin_transaction()
    marker = CheckpointMarker(group_id, split, 2, "chk-000000002-zombie", 9, "job", "t", 0)
    stray.produce(checkpoint_topic, marker.to_bytes(), key=marker.key, partition=0)
    assert stray.flush(10) == 0
    try:
        pointers = {split: committed.marker_offset}
        began = time.monotonic()
        with pytest.raises(CheckpointError, match="stay in open transactions"):
            scan_committed_markers(config, pointers)
        assert time.monotonic() - began >= 2.0, "the scan must wait for the open transaction first"
        latest = scan_committed_markers(config, pointers, previous_owners_fenced=True)
        assert latest[split][1].checkpoint_id == 1
        assert latest[split][1].snapshot == "chk-000000001-a"
    finally:
        stray.abort_transaction(10)
    # Once aborted, nothing is pending: checkpoint 1 again, without fencing (it would refuse otherwise).
    assert scan_committed_markers(config, pointers)[split][1].checkpoint_id == 1


def test_without_broker_quirks_recovery_reads_the_marker_the_pointer_names(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    """Apache Kafka's behaviour (the default, BrokerQuirks.none()): the committed pointer is exact, so
    recovery reads the one marker it names and never scans the checkpoint topic."""
    from structlog.testing import capture_logs

    from eventapp.connectors.kafka.quirks import BrokerQuirks

    split = f"{topic_factory(prefix='in')}-0"
    config = commit_config(kafka_broker, group_id, checkpoint_topic, broker_quirks=BrokerQuirks.none())
    owner = KafkaTransactionalCommitPoint(config, split)
    try:
        owner.recover()
        owner.commit(CommittedCheckpoint(1, "chk-000000001-a", 4))
        owner.commit(CommittedCheckpoint(2, "chk-000000002-a", 9))
    finally:
        owner.close()
    with capture_logs() as logs:
        again = KafkaTransactionalCommitPoint(config, split)
        try:
            assert again.recover() == CommittedCheckpoint(2, "chk-000000002-a", 9)
        finally:
            again.close()
    events = [e["event"] for e in logs]
    assert "kafka.commit_point.recovered" in events
    assert not any(e.startswith("kafka.checkpoint_marker.scan") for e in events), events
    assert again.recovered_state is not None and again.recovered_state.resolution == "marker"


def test_the_tail_scan_widens_until_it_finds_an_old_marker(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str
) -> None:
    """With stale-transactional-offsets the marker is found in the topic's tail; a split whose last
    marker lies below the first window (other writers appended many markers since) is found by
    widening the window, and a split that was never checkpointed costs no scan at all."""
    from confluent_kafka import Producer
    from structlog.testing import capture_logs

    from eventapp.connectors.kafka.offsets import SCAN_FIRST_WINDOW
    from eventapp.connectors.kafka.quirks import BrokerQuirks

    split = f"{topic_factory(prefix='in')}-0"
    config = commit_config(kafka_broker, group_id, checkpoint_topic, broker_quirks=BrokerQuirks.tansu())
    owner = KafkaTransactionalCommitPoint(config, split)
    try:
        owner.recover()
        owner.commit(CommittedCheckpoint(7, "chk-000000007-a", 70))
    finally:
        owner.close()
    foreign = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers, "linger.ms": 5})
    for i in range(SCAN_FIRST_WINDOW + 500):
        marker = CheckpointMarker("another-job", split, i, f"chk-{i:09d}-x", i)
        foreign.produce(checkpoint_topic, marker.to_bytes(), key=marker.key, partition=0)
        if i % 1000 == 0:
            foreign.poll(0)
    assert foreign.flush(30) == 0
    with capture_logs() as logs:
        again = KafkaTransactionalCommitPoint(config, split)
        try:
            assert again.recover() == CommittedCheckpoint(7, "chk-000000007-a", 70)
        finally:
            again.close()
    assert "kafka.checkpoint_marker.scan_widened" in [e["event"] for e in logs]

    never = f"{topic_factory(prefix='in')}-0"
    with capture_logs() as logs:
        fresh = KafkaTransactionalCommitPoint(config, never)
        try:
            assert fresh.recover(has_committed_snapshots=False) is None
        finally:
            fresh.close()
    assert not any(e["event"].startswith("kafka.checkpoint_marker.scan") for e in logs)


def test_broker_quirks_are_named_or_refused() -> None:
    from eventapp.connectors.kafka.quirks import BrokerQuirks
    from eventapp.errors import ConfigurationError

    assert BrokerQuirks.parse("") == BrokerQuirks.none() == BrokerQuirks()
    assert BrokerQuirks.parse("tansu").stale_transactional_offsets
    assert BrokerQuirks.parse(" stale-transactional-offsets ").names == ("stale-transactional-offsets",)
    with pytest.raises(
        ConfigurationError, match=r"unknown broker quirk 'redpanda'.*Leave it empty for Apache Kafka"
    ):
        BrokerQuirks.parse("redpanda")
