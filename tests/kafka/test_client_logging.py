"""librdkafka's logs through structlog, rate limited, and one ``kafka.broker_unreachable`` per outage.

Unit level (a fake clock, records shaped like confluent-kafka's): the rate limit and its summary, the
outage / repeat / recovery state machine, user callbacks kept. Real: the CLI worker against a closed
loopback port prints only JSON and names the bootstrap servers; a consumer sees an embedded broker go
away and come back.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from confluent_kafka import Consumer, KafkaError, TopicPartition
from structlog.testing import capture_logs

from eventapp.connectors.kafka import KafkaCommitConfig, KafkaSinkConfig, KafkaSourceConfig
from eventapp.connectors.kafka.clientlog import (
    STATS_INTERVAL_MS,
    ClientLog,
    client_log_of,
    with_client_logging,
)
from eventapp.connectors.kafka.config import admin_settings
from eventapp.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
#: A raw librdkafka log line, as librdkafka prints it without a logger: ``%3|1700000000.123|FAIL|...``.
RAW_LIBRDKAFKA_LINE = re.compile(r"^%\d\|")


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Captured structlog events, debug level included."""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as entries:
            yield entries
    finally:
        structlog.configure(**old)


def librdkafka_line(state: ClientLog, facility: str, text: str, level: int = logging.ERROR) -> None:
    """Log a line exactly as confluent-kafka does: ``logger.log(level, "%s [%s] %s", fac, name, buf)``."""
    state.logger.log(level, "%s [%s] %s", facility, "rdkafka#consumer-7", text)


def events(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["event"] == name]


def test_log_lines_are_rate_limited_per_facility_then_summarised(logs: list[dict[str, Any]]) -> None:
    clock = FakeClock()
    state = ClientLog("source-consumer:g", "h:9092", lines_per_interval=3, interval_s=10.0, clock=clock)
    for i in range(20):
        librdkafka_line(state, "FAIL", f"connect failed {i}")
    librdkafka_line(state, "CLUSTERID", "other cluster", logging.WARNING)
    for i in range(10):  # debug lines exist only when the user asked for them (debug=...): all pass
        librdkafka_line(state, "BROKER", f"debug {i}", logging.DEBUG)

    lines = events(logs, "kafka.client_log")
    fail = [e for e in lines if e["facility"] == "FAIL"]
    assert [e["message"] for e in fail] == ["connect failed 0", "connect failed 1", "connect failed 2"]
    assert fail[0] == {
        "event": "kafka.client_log",
        "log_level": "error",
        "client": "source-consumer:g",
        "instance": "rdkafka#consumer-7",
        "facility": "FAIL",
        "message": "connect failed 0",
    }
    assert [e["message"] for e in lines if e["facility"] == "CLUSTERID"] == ["other cluster"]
    assert len([e for e in lines if e["facility"] == "BROKER"]) == 10
    assert events(logs, "kafka.client_log_suppressed") == []  # reported with the next window

    logs.clear()
    clock.now += 10.0
    librdkafka_line(state, "FAIL", "connect failed 20")
    assert logs == [
        {
            "event": "kafka.client_log_suppressed",
            "log_level": "error",
            "client": "source-consumer:g",
            "facility": "FAIL",
            "suppressed": 17,
            "interval_s": 10.0,
        },
        {
            "event": "kafka.client_log",
            "log_level": "error",
            "client": "source-consumer:g",
            "instance": "rdkafka#consumer-7",
            "facility": "FAIL",
            "message": "connect failed 20",
        },
    ]


def test_one_unreachable_event_per_outage_repeats_and_recovery(logs: list[dict[str, Any]]) -> None:
    clock = FakeClock(100.0)
    seen_by_user: list[int] = []
    state = ClientLog(
        "source-consumer:g",
        "a:9092,b:9092",
        clock=clock,
        user_error_cb=lambda e: seen_by_user.append(e.code()),
    )
    refused = KafkaError(
        KafkaError._TRANSPORT, "a:9092/bootstrap: Connect to a:9092 failed: Connection refused"
    )
    all_down = KafkaError(KafkaError._ALL_BROKERS_DOWN, "2/2 brokers are down")

    clock.now = 103.0
    state.error_cb(refused)  # one connection error is not an outage (idle close, one broker of many)
    assert events(logs, "kafka.broker_unreachable") == []
    state.error_cb(all_down)
    for _ in range(50):  # librdkafka reports ~20 connection errors a second while it retries
        clock.now += 0.3
        state.error_cb(refused)
    unreachable = events(logs, "kafka.broker_unreachable")
    assert unreachable == [
        {
            "event": "kafka.broker_unreachable",
            "log_level": "warning",
            "client": "source-consumer:g",
            "bootstrap_servers": "a:9092,b:9092",
            "unreachable_for_s": 3.0,  # never reached a broker: counted from the client's creation
            "reason": "a:9092/bootstrap: Connect to a:9092 failed: Connection refused",
            "repeat": 0,
        }
    ]
    assert state.unreachable

    clock.now = 133.0
    state.error_cb(refused)
    clock.now = 150.0
    state.stats_cb(json.dumps({"brokers": {"a:9092/bootstrap": {"state": "INIT", "source": "configured"}}}))
    clock.now = 163.5
    state.stats_cb(
        json.dumps({"brokers": {"a:9092/bootstrap": {"state": "CONNECT", "source": "configured"}}})
    )
    repeats = events(logs, "kafka.broker_unreachable")[1:]
    assert [(e["repeat"], e["unreachable_for_s"]) for e in repeats] == [(1, 33.0), (2, 63.5)]

    clock.now = 170.0
    state.stats_cb(json.dumps({"brokers": {"a:9092/1": {"state": "UP", "source": "learned"}}}))
    assert events(logs, "kafka.broker_reachable_again") == [
        {
            "event": "kafka.broker_reachable_again",
            "log_level": "info",
            "client": "source-consumer:g",
            "bootstrap_servers": "a:9092,b:9092",
            "unreachable_for_s": 70.0,
        }
    ]
    assert not state.unreachable

    logs.clear()
    clock.now = 500.0
    state.error_cb(all_down)  # a second outage of a client that was connected: counted from now
    state.error_cb(KafkaError(KafkaError._MSG_TIMED_OUT, "message timed out"))
    assert [(e["event"], e.get("unreachable_for_s"), e.get("repeat"), e["log_level"]) for e in logs] == [
        ("kafka.broker_unreachable", 0.0, 0, "warning"),
        ("kafka.client_error", None, None, "debug"),
    ]
    assert (
        seen_by_user.count(KafkaError._TRANSPORT) == 52
        and seen_by_user.count(KafkaError._ALL_BROKERS_DOWN) == 2
    )


def test_every_settings_function_adds_the_logger_and_keeps_user_callbacks() -> None:
    source = KafkaSourceConfig(bootstrap_servers="h:9092", topics=["in"], group_id="g")
    consumer = source.consumer_settings()
    state = client_log_of(consumer)
    assert state is not None and state.client == "source-consumer:g" and state.bootstrap_servers == "h:9092"
    assert consumer["logger"] is state.logger and isinstance(state.logger, logging.Logger)
    assert consumer["stats_cb"] == state.stats_cb
    assert consumer["statistics.interval.ms"] == STATS_INTERVAL_MS

    commit = KafkaCommitConfig.for_source(source, "job")
    clients = {
        "admin": admin_settings("h:9092", source.consumer_config),
        "commit-producer:job-in-0": commit.producer_settings("job-in-0"),
        "commit-producer:g": commit.producer_settings(None),
        "commit-consumer:g": commit.consumer_settings("g"),
        "sink-producer:kafka:out": KafkaSinkConfig(
            bootstrap_servers="h:9092", topic="out"
        ).producer_settings(),
    }
    for name, settings in clients.items():
        found = client_log_of(settings)
        assert found is not None and found.client == name, name
        assert settings["logger"] is found.logger
    # Clients eventapp does not poll all the time get no statistics: their reports would pile up.
    for name in ("admin", "commit-consumer:g"):
        assert "stats_cb" not in clients[name] and "statistics.interval.ms" not in clients[name]

    own_logger = logging.getLogger("my.kafka")
    errors: list[KafkaError] = []
    stats: list[str] = []
    mine = KafkaSourceConfig(
        bootstrap_servers="h:9092",
        topics=["in"],
        group_id="g",
        consumer_config={
            "logger": own_logger,
            "error_cb": errors.append,
            "stats_cb": stats.append,
            "statistics.interval.ms": 1000,
        },
    ).consumer_settings()
    assert mine["logger"] is own_logger  # the user's logger wins: they asked for the raw lines
    assert mine["statistics.interval.ms"] == 1000
    error = KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")
    with capture_logs() as entries:
        mine["error_cb"](error)
        mine["stats_cb"]('{"brokers": {}}')
    assert errors == [error] and stats == ['{"brokers": {}}']  # wrapped: eventapp's runs first
    assert [e["event"] for e in entries] == ["kafka.broker_unreachable"]
    wrapped = client_log_of(mine)
    assert with_client_logging(mine, "again", polled=True) is mine  # settings passed twice: unchanged
    assert client_log_of(mine) is wrapped


def closed_loopback_port() -> int:
    """A loopback port nothing listens on: bound, then closed (connecting to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_cli_worker_reports_the_unreachable_broker_in_json_and_prints_no_raw_lines(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{closed_loopback_port()}"
    env = {**os.environ, "UNREACHABLE_BOOTSTRAP": bootstrap, "PYTHONPATH": str(ROOT)}
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "eventapp.cli",
                "run",
                "tests.kafka.unreachable_job:build_job",
                "--json-logs",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
        )
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout: list[str] = []
    found: dict[str, Any] | None = None
    deadline = time.monotonic() + 120
    try:
        while found is None:
            raw = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if raw is None:
                break  # the worker exited
            line = raw.decode()
            stdout.append(line)
            if '"kafka.broker_unreachable"' in line:
                found = json.loads(line)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        reader.join(timeout=60)
    while not lines.empty():
        raw = lines.get()
        if raw is not None:
            stdout.append(raw.decode())
    stderr_text = stderr_path.read_text()

    assert found is not None, (
        f"no kafka.broker_unreachable; stdout:\n{''.join(stdout)}\nstderr:\n{stderr_text}"
    )
    assert found["bootstrap_servers"] == bootstrap
    assert found["client"] == "admin" and found["level"] == "warning" and found["repeat"] == 0
    assert isinstance(found["unreachable_for_s"], float) and found["unreachable_for_s"] >= 0
    assert "Connection refused" in found["reason"]
    parsed = [json.loads(line) for line in stdout]  # every stdout line is JSON
    client_lines = [e for e in parsed if e["event"] == "kafka.client_log"]
    assert client_lines and all(bootstrap in e["message"] for e in client_lines)
    raw_lines = [line for line in stderr_text.splitlines() + stdout if RAW_LIBRDKAFKA_LINE.match(line)]
    assert raw_lines == []
    assert "%3|" not in stderr_text and "%6|" not in stderr_text


def poll_until(
    consumer: Consumer, entries: list[dict[str, Any]], event: str, timeout: float = 120.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll(0.1)  # delivers the client's logs, errors and statistics
        matching = events(entries, event)
        if matching:
            return matching[0]
    raise AssertionError(f"no {event} within {timeout}s: {[e['event'] for e in entries]}")


@pytest.mark.kafka
def test_consumer_reports_an_outage_of_a_real_broker_and_its_return(logs: list[dict[str, Any]]) -> None:
    from eventapp.embedded_broker import EmbeddedBroker

    try:
        broker = EmbeddedBroker().start()
    except ConfigurationError as exc:
        pytest.skip(f"no embedded broker: {exc}")
    port = broker.port
    restarted: EmbeddedBroker | None = None
    config = KafkaSourceConfig(
        bootstrap_servers=broker.bootstrap_servers,
        topics=["outage"],
        group_id="outage-test",
        consumer_config={"statistics.interval.ms": 200},  # a user value is kept: a quicker recovery event
    )
    consumer = Consumer(config.consumer_settings())
    try:
        consumer.assign([TopicPartition("outage", 0, 0)])
        broker.stop()
        down = poll_until(consumer, logs, "kafka.broker_unreachable")
        assert down["client"] == "source-consumer:outage-test"
        assert down["bootstrap_servers"] == f"127.0.0.1:{port}"
        restarted = EmbeddedBroker(port=port).start()
        up = poll_until(consumer, logs, "kafka.broker_reachable_again")
        assert up["client"] == "source-consumer:outage-test" and up["unreachable_for_s"] >= 0
        # One report when the outage began; anything after it is a numbered repeat, none after the return.
        repeats = [e["repeat"] for e in events(logs, "kafka.broker_unreachable")]
        assert repeats == list(range(len(repeats)))
        assert logs.index(up) > max(i for i, e in enumerate(logs) if e["event"] == "kafka.broker_unreachable")
    finally:
        consumer.close()
        broker.stop()
        if restarted is not None:
            restarted.stop()
