"""Configuration validation of the Kafka connector (no broker needed)."""

from __future__ import annotations

from typing import Any

import pytest

from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaCommitConfig,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
    OffsetReset,
    StartPosition,
    parse_split,
    split_id,
    validate_transaction_timeout,
)
from eventapp.connectors.kafka.quirks import BrokerQuirks
from eventapp.errors import ConfigurationError
from eventapp.serialization import JsonSerializer

BS = "127.0.0.1:9092"


def source(**overrides: Any) -> KafkaSourceConfig:
    params: dict[str, Any] = {"bootstrap_servers": BS, "topics": ["orders"], "group_id": "g"}
    params.update(overrides)
    return KafkaSourceConfig(**params)


def test_split_ids_round_trip_with_dashes_in_topic_names() -> None:
    assert split_id("orders-eu", 12) == "orders-eu-12"
    assert parse_split("orders-eu-12") == ("orders-eu", 12)
    for bad in ("orders", "orders-", "-3", "orders-x"):
        with pytest.raises(ConfigurationError, match="<topic>-<partition>"):
            parse_split(bad)


def test_consumer_settings_have_the_required_values_and_pass_extras_through() -> None:
    settings = source(consumer_config={"client.id": "me", "fetch.wait.max.ms": 20}).consumer_settings()
    assert settings["enable.auto.commit"] is False
    assert settings["enable.auto.offset.store"] is False
    assert settings["isolation.level"] == "read_committed"
    assert settings["enable.partition.eof"] is True
    assert settings["fetch.queue.backoff.ms"] == 10
    assert settings["fetch.wait.max.ms"] == 20  # user value wins over our default
    assert settings["client.id"] == "me"
    assert settings["group.id"] == "g"
    assert settings["auto.offset.reset"] == "earliest"


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("enable.auto.commit", True, "enable.auto.commit=True is not supported"),
        ("enable.auto.commit", "true", "committed only by the commit point"),
        ("isolation.level", "read_uncommitted", "open or aborted upstream transactions"),
        ("enable.partition.eof", False, "end-of-partition"),
        ("group.id", "other", "group_id="),
        ("auto.offset.reset", "latest", "StartPosition"),
        ("fetch_wait_max_ms", 5, "'fetch.wait.max.ms'"),
    ],
)
def test_consumer_settings_that_break_the_contract_are_rejected(key: str, value: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        source(consumer_config={key: value})


def test_harmless_spellings_of_required_values_are_accepted() -> None:
    settings = source(consumer_config={"enable.auto.commit": "false", "isolation.level": "READ_COMMITTED"})
    assert settings.consumer_settings()["enable.auto.commit"] is False


def test_start_positions() -> None:
    assert source().start_position == StartPosition.committed()
    latest_reset = source(start_position=StartPosition.committed(reset=OffsetReset.LATEST))
    assert latest_reset.consumer_settings()["auto.offset.reset"] == "latest"
    failing = source(start_position=StartPosition.committed(reset=OffsetReset.FAIL))
    assert failing.consumer_settings()["auto.offset.reset"] == "error"
    assert source(start_position=StartPosition.latest()).consumer_settings()["auto.offset.reset"] == "latest"
    assert StartPosition.from_timestamp(5).timestamp_ms == 5
    with pytest.raises(ConfigurationError, match="epoch milliseconds"):
        StartPosition.from_timestamp(-1)
    with pytest.raises(ConfigurationError, match="StartPosition"):
        source(start_position="earliest")


def test_source_config_validation_messages() -> None:
    with pytest.raises(ConfigurationError, match="non-empty list of topic names"):
        source(topics=[])
    with pytest.raises(ConfigurationError, match="not a valid Kafka topic name"):
        source(topics=["bad topic"])
    with pytest.raises(ConfigurationError, match="twice"):
        source(topics=["a", "a"])
    with pytest.raises(ConfigurationError, match="group_id"):
        source(group_id="")
    with pytest.raises(ConfigurationError, match="bootstrap_servers"):
        source(bootstrap_servers=" ")
    with pytest.raises(ConfigurationError, match="as_kafka_record=True"):
        source(key_deserializer="str")
    with pytest.raises(ConfigurationError, match="not a known format"):
        source(value_deserializer="yaml")
    with pytest.raises(ConfigurationError, match="also an input topic"):
        source(checkpoint_topic="orders")
    with pytest.raises(ConfigurationError, match="transaction_timeout_ms"):
        source(transaction_timeout_ms=10)
    with pytest.raises(ConfigurationError, match="transactional_id_prefix"):
        source(producer_config={"transactional.id": "x"})
    with pytest.raises(ConfigurationError, match="acks"):
        source(producer_config={"acks": "1"})
    assert source(topics="orders").topics == ("orders",)


def test_deserializer_specs_resolve() -> None:
    assert source(value_deserializer="json").value_decoder.decode(b'{"a": 1}') == {"a": 1}
    assert source(value_deserializer="str").value_decoder.decode(b"hi") == "hi"
    assert source(value_deserializer=JsonSerializer()).value_decoder.decode(b"[1]") == [1]
    assert source(value_deserializer=lambda b: b[::-1]).value_decoder.decode(b"ab") == b"ba"
    config = source(as_kafka_record=True)
    assert config.key_decoder is not None and config.key_decoder.decode(b"k") == b"k"


def test_commit_config_for_source() -> None:
    config = KafkaCommitConfig.for_source(source(consumer_config={"client.id": "c"}), job="job1")
    assert config.transactional_id("orders-3") == "job1-orders-3"
    assert config.pointer_group_id == "g.eventapp-checkpoints"
    producer = config.producer_settings(config.transactional_id("orders-3"))
    assert producer["transactional.id"] == "job1-orders-3"
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert producer["transaction.timeout.ms"] == 60_000
    explicit = KafkaCommitConfig.for_source(source(transactional_id_prefix="app-v1"), job="job1")
    assert explicit.transactional_id("orders-0") == "app-v1-orders-0"
    consumer = config.consumer_settings("grp")
    assert consumer["isolation.level"] == "read_committed" and consumer["client.id"] == "c"


def sink(**overrides: Any) -> KafkaSinkConfig:
    params: dict[str, Any] = {"bootstrap_servers": BS, "topic": "out"}
    params.update(overrides)
    return KafkaSinkConfig(**params)


def test_sink_config() -> None:
    settings = sink().producer_settings()
    assert settings["enable.idempotence"] is True and settings["acks"] == "all"
    assert sink(producer_config={"acks": "-1"}).producer_settings()["acks"] == "all"
    assert "enable.idempotence" not in sink(delivery_guarantee=DeliveryGuarantee.NONE).producer_settings()
    with pytest.raises(ConfigurationError, match="topic"):
        sink(topic=None)
    with pytest.raises(ConfigurationError, match="acks"):
        sink(producer_config={"acks": 1})
    with pytest.raises(ConfigurationError, match=r"enable\.idempotence"):
        sink(producer_config={"enable.idempotence": False})
    with pytest.raises(ConfigurationError, match=r"KafkaSourceConfig\.producer_config"):
        sink(delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE, producer_config={"linger.ms": 1})
    with pytest.raises(ConfigurationError, match="transactional"):
        sink(producer_config={"transactional.id": "x"})
    with pytest.raises(ConfigurationError, match="DeliveryGuarantee"):
        sink(delivery_guarantee="exactly_once")
    with pytest.raises(ConfigurationError, match="callable"):
        sink(key_selector="id")
    assert sink(topic=None, topic_selector=lambda v: "x").topic is None


def test_validate_transaction_timeout() -> None:
    validate_transaction_timeout(60_000, 5_000)
    validate_transaction_timeout(900_000, 300_000)
    with pytest.raises(ConfigurationError, match="at least 30000") as too_short:
        validate_transaction_timeout(20_000, 10_000)
    assert "checkpoint interval to at most 6666 ms" in str(too_short.value)
    with pytest.raises(ConfigurationError, match=r"transaction\.max\.timeout\.ms"):
        validate_transaction_timeout(1_000_000, 5_000)
    with pytest.raises(ConfigurationError, match=r"checkpoint more often \(interval_ms <= 300000\)"):
        validate_transaction_timeout(900_000, 600_000)
    # Neither knob alone: both limits are named, each with the interval it allows.
    with pytest.raises(ConfigurationError) as beyond_max:
        validate_transaction_timeout(60_000, 1_000_000)
    text = str(beyond_max.value)
    assert "at most 20000 ms" in text
    assert "raise transaction_timeout_ms to 900000 and lower the interval to at most 300000 ms" in text
    validate_transaction_timeout(3_600_000, 60_000, broker_max_ms=3_600_000)


def test_runner_validates_transaction_timeout_against_checkpoint_interval() -> None:
    """Checked when the job starts, before any broker is contacted."""
    from eventapp import CheckpointConfig, CheckpointingMode, ConfigurationError, Job, JobConfig
    from eventapp.connectors.kafka import KafkaSource, KafkaSourceConfig

    source = KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers="127.0.0.1:1",
            topics=["t"],
            group_id="g",
            transaction_timeout_ms=10_000,
        )
    )
    job = Job(
        "tx-timeout",
        JobConfig(
            checkpoint=CheckpointConfig(
                storage="/tmp/unused", interval_ms=5_000, mode=CheckpointingMode.EXACTLY_ONCE
            )
        ),
    )
    job.from_source(source)
    runner = job.runner(splits=[])
    with pytest.raises(ConfigurationError, match="less than 3x the checkpoint interval"):
        runner.open()


def test_group_assignment_settings() -> None:
    """Group mode subscribes with cooperative-sticky and static membership (the group reader's
    consumer settings); Tansu's no-static-membership quirk drops the instance id; ownership claims
    are off in group mode."""
    base = {"bootstrap_servers": "localhost:9092", "topics": ["t"], "group_id": "g"}
    config = KafkaSourceConfig(
        **base, group_assignment=True, group_instance_id="job-host-0", broker_quirks=BrokerQuirks.none()
    )
    settings = config.consumer_settings()
    assert settings["partition.assignment.strategy"] == "cooperative-sticky"
    assert settings["group.instance.id"] == "job-host-0"
    assert KafkaCommitConfig.for_source(config, "job").ownership_claims is False
    assert KafkaCommitConfig.for_source(KafkaSourceConfig(**base), "job").ownership_claims is True
    tansu = KafkaSourceConfig(
        **base, group_assignment=True, group_instance_id="x", broker_quirks=BrokerQuirks.tansu()
    )
    assert "group.instance.id" not in tansu.consumer_settings()
    assert "group.instance.id" not in KafkaSourceConfig(**base).consumer_settings()
    with pytest.raises(ConfigurationError, match="set group_assignment=True too"):
        KafkaSourceConfig(**base, group_instance_id="x")
    with pytest.raises(ConfigurationError, match=r"needs partition\.assignment\.strategy=cooperative-sticky"):
        KafkaSourceConfig(
            **base, group_assignment=True, consumer_config={"partition.assignment.strategy": "range"}
        )
    with pytest.raises(ConfigurationError, match="bounded=True"):
        KafkaSourceConfig(**base, group_assignment=True, bounded=True)
    with pytest.raises(ConfigurationError, match="eventapp run JOB --group"):
        KafkaSource(config).create_reader(["t-0"], {})
