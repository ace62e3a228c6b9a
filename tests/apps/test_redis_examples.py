"""The Redis/Kafka examples end to end against the test Redis and broker: their dashboards in Redis
hold exactly the alerts the in-memory runs of the same applications emit."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from examples import anomaly_redis, fraud_redis
from tests.support.broker import KafkaBroker
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis]


def own_db(server: RedisServer, db: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples use fixed key names: give each test a database of its own, empty."""
    url = server.url.rsplit("/", 1)[0] + f"/{db}"
    redis.Redis.from_url(url).flushdb()
    monkeypatch.setenv("EXAMPLE_REDIS_URL", url)


@pytest.mark.parametrize("use_kafka", [False, True], ids=["redis-in", "kafka-in"])
def test_anomaly_example_writes_its_alerts_once(
    use_kafka: bool,
    redis_server: RedisServer,
    kafka_broker: KafkaBroker,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    own_db(redis_server, 3 + use_kafka, monkeypatch)
    monkeypatch.setenv("EXAMPLE_BOOTSTRAP_SERVERS", kafka_broker.bootstrap_servers)
    shown = anomaly_redis.run(use_kafka, tmp_path)
    assert [(a["type"], a["sensor"]) for a in shown["anomaly:alerts"]] == [
        ("anomaly", "boiler"),
        ("missing_heartbeat", "pump"),
    ]
    assert shown["anomaly:alert-counts"] == {"anomaly": "1", "missing_heartbeat": "1"}
    assert set(shown["anomaly:sensor:boiler"]) == {"last_anomaly"}
    assert [r["sensor"] for r in shown["anomaly:late"]] == ["fan"]
    if use_kafka:
        assert [(a["type"], a["sensor"]) for a in shown["kafka alerts"]] == [
            ("anomaly", "boiler"),
            ("missing_heartbeat", "pump"),
        ]


def test_fraud_example_writes_its_alerts_once(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own_db(redis_server, 5, monkeypatch)
    shown = fraud_redis.run(False, tmp_path)
    assert sorted((a["type"], a["card"]) for a in shown["fraud:alerts"]) == [
        ("impossible_travel", "card-3"),
        ("small_then_large", "card-1"),
        ("small_then_large", "card-5"),
        ("velocity", "card-2"),
        ("velocity", "card-2"),
    ]
    assert shown["fraud:alert-counts"] == {"small_then_large": "2", "velocity": "2", "impossible_travel": "1"}
