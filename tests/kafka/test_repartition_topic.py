"""The admin side of a repartition topic against a real broker: creating it (once, also when several
workers race), refusing another partition count with the fix, and purging consumed records."""

from __future__ import annotations

import threading
from collections.abc import MutableMapping, Sequence
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]
from structlog.testing import capture_logs

import eventapp.connectors.kafka.repartition_topic as repartition_topic
from eventapp.connectors.kafka.repartition_topic import (
    PURGE_FAILED_EVENT,
    RepartitionPurger,
    ensure_repartition_topic,
)
from eventapp.errors import ConfigurationError, SourceError
from tests.support.broker import KafkaBroker, OutRecord, consume_all, produce, unique_topic_name

pytestmark = pytest.mark.kafka


def _partitions(bootstrap: str, topic: str) -> int | None:
    """The topic's partition count from metadata of all topics (``None``: it does not exist)."""
    described = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics.get(topic)
    if described is None or described.error is not None:
        return None
    return len(described.partitions)


def _created_events(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "shuffle.repartition_topic_created"]


def test_creates_a_missing_topic_with_the_partition_count(kafka_broker: KafkaBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = unique_topic_name("job-count-repartition")
    assert _partitions(bootstrap, topic) is None
    with capture_logs() as logs:
        ensure_repartition_topic(bootstrap, topic, 4, timeout_s=10)
    assert _partitions(bootstrap, topic) == 4
    assert [(e["topic"], e["partitions"]) for e in _created_events(logs)] == [(topic, 4)]
    resource = ConfigResource("topic", topic)
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the future is done
    described = admin.describe_configs([resource])[resource].result(timeout=10)
    configs = {name: entry.value for name, entry in described.items()}
    assert configs.get("retention.ms") == "-1"
    assert configs.get("cleanup.policy") == "delete"

    with capture_logs() as logs:
        ensure_repartition_topic(bootstrap, topic, 4, timeout_s=10)  # a no-op
    assert _created_events(logs) == []
    assert _partitions(bootstrap, topic) == 4


def test_an_existing_topic_with_the_same_count_is_used(kafka_broker: KafkaBroker, topic_factory: Any) -> None:
    topic = topic_factory(partitions=3)
    with capture_logs() as logs:
        ensure_repartition_topic(kafka_broker.bootstrap_servers, topic, 3)
    assert _created_events(logs) == []


def test_workers_creating_the_topic_concurrently_all_succeed(kafka_broker: KafkaBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = unique_topic_name("raced-repartition")
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        try:
            ensure_repartition_topic(bootstrap, topic, 2, timeout_s=10)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert _partitions(bootstrap, topic) == 2


def test_another_partition_count_is_refused_with_the_fix(
    kafka_broker: KafkaBroker, topic_factory: Any
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=3)
    with pytest.raises(ConfigurationError) as refused:
        ensure_repartition_topic(bootstrap, topic, 5, timeout_s=10)
    message = str(refused.value)
    assert f"repartition topic {topic!r}" in message
    assert "has 3 partition(s), but this key_by shuffles into 5" in message
    assert "key_by(..., partitions=3)" in message  # fix 1: match the topic
    assert "delete the topic" in message and "--drain" in message  # fix 2: drain, then delete it
    assert _partitions(bootstrap, topic) == 3  # never changed


def test_invalid_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="partitions must be an int >= 1, got 0"):
        ensure_repartition_topic("localhost:9092", "t", 0)
    with pytest.raises(ConfigurationError, match="partitions must be an int >= 1, got True"):
        ensure_repartition_topic("localhost:9092", "t", True)
    with pytest.raises(ConfigurationError, match="not a valid Kafka topic name"):
        ensure_repartition_topic("localhost:9092", "no spaces", 1)
    with pytest.raises(ConfigurationError, match="timeout_s must be a number of seconds > 0"):
        ensure_repartition_topic("localhost:9092", "t", 1, timeout_s=0)
    with pytest.raises(ConfigurationError, match="bootstrap_servers must be a non-empty"):
        RepartitionPurger("", "t")


def test_an_unreachable_broker_is_a_source_error() -> None:
    with pytest.raises(SourceError, match=r"repartition topic 'orphan': cannot read topic metadata"):
        ensure_repartition_topic(
            "127.0.0.1:1",
            "orphan",
            1,
            timeout_s=1,
            client_config={"socket.connection.setup.timeout.ms": 1000},
        )


def _produce_ten(bootstrap: str, topic: str) -> None:
    produce(bootstrap, topic, [OutRecord(None, b"%d" % n, 0) for n in range(10)])


def _failures(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == PURGE_FAILED_EVENT]


def test_purge_deletes_consumed_records_or_warns_where_the_broker_cannot(
    kafka_broker: KafkaBroker, topic_factory: Any
) -> None:
    """Apache Kafka deletes the records before the offset. Tansu 0.6.0 does not implement
    DeleteRecords: the request panics its connection task (quirk no-delete-records, under which
    shuffles do not purge), so it is not sent to the shared test broker; the warning path is checked against an unreachable broker below."""
    if kafka_broker.is_tansu:
        pytest.skip("Tansu 0.6.0 panics on DeleteRecords (quirk no-delete-records)")
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=2)
    _produce_ten(bootstrap, topic)
    purger = RepartitionPurger(bootstrap, topic)
    try:
        with capture_logs() as logs:
            purger.purge({0: 5, 1: 0})  # partition 1: nothing consumed, nothing to delete
    finally:
        purger.close()
    offsets = [r.offset for r in consume_all(bootstrap, topic, partitions=[0])]
    failures = _failures(logs)
    if kafka_broker.flavor == "unknown":
        assert offsets in (list(range(5, 10)), list(range(10)))
    else:
        assert failures == []
        assert offsets == list(range(5, 10))


def test_a_failed_purge_warns_then_pauses_purging(
    kafka_broker: KafkaBroker, topic_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purge that fails (a partition the topic does not have; on Tansu, which cannot delete
    records, an unreachable broker) does not raise; purges are skipped for a while (nothing lost: a
    later purge deletes everything before its offsets)."""
    bootstrap = "127.0.0.1:1" if kafka_broker.is_tansu else kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=1)
    # The purges wait the whole timeout for the unreachable broker: 1 s, not the 10 s default.
    purger = RepartitionPurger(bootstrap, topic, {}, timeout_s=1)
    try:
        with capture_logs() as logs:
            purger.purge({9: 3})
        [failure] = _failures(logs)
        assert failure["topic"] == topic and failure["partitions"] == [9] and failure["error"]
        assert failure["retry_in_s"] == repartition_topic.PURGE_RETRY_INITIAL_S
        with capture_logs() as logs:
            purger.purge({9: 4})  # within the pause: not sent, not logged as a failure
        assert _failures(logs) == []

        monkeypatch.setattr(purger, "_skip_until", 0.0)  # as if the pause had passed
        with capture_logs() as logs:
            purger.purge({9: 5})  # the pause is over: tried (and failed) again, the pause doubled
        [failure] = _failures(logs)
        assert failure["retry_in_s"] == 2 * repartition_topic.PURGE_RETRY_INITIAL_S
    finally:
        purger.close()


def test_purge_after_close_warns_and_does_nothing(kafka_broker: KafkaBroker, topic_factory: Any) -> None:
    topic = topic_factory()
    purger = RepartitionPurger(kafka_broker.bootstrap_servers, topic)
    purger.close()
    purger.close()  # idempotent
    with capture_logs() as logs:
        purger.purge({0: 1})
    assert [(f["topic"], f["error"]) for f in _failures(logs)] == [(topic, "the purger is closed")]


def test_purge_sends_nothing_for_offsets_already_purged_or_zero(
    kafka_broker: KafkaBroker, topic_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = topic_factory(partitions=2)
    purger = RepartitionPurger(kafka_broker.bootstrap_servers, topic)
    sent: list[list[TopicPartition]] = []

    def record(admin: AdminClient, wanted: list[TopicPartition]) -> dict[int, str]:
        sent.append(wanted)
        return {}  # as if the broker deleted them

    monkeypatch.setattr(purger, "_delete", record)
    try:
        purger.purge({0: 0, 1: 0})
        purger.purge({0: 4, 1: 0})
        purger.purge({0: 4, 1: 2})
        purger.purge({0: 3, 1: 2})  # an older offset: already deleted
    finally:
        purger.close()
    assert [[(tp.partition, tp.offset) for tp in request] for request in sent] == [[(0, 4)], [(1, 2)]]
