"""Fraud detection (:mod:`examples.fraud_patterns`: small-then-large, velocity, impossible travel,
rules updated at run time through broadcast state) with real I/O: transactions and rule updates
from a Redis stream (or a Kafka topic), alerts exactly-once to Redis (and to Kafka), RocksDB state,
checkpoints every 200 ms. Runs on embedded defaults: a redis-server and, with ``--kafka``, the
embedded Kafka-protocol broker, both started here (``EXAMPLE_REDIS_URL`` /
``EXAMPLE_BOOTSTRAP_SERVERS`` name existing ones).

    python -m examples.fraud_redis            # Redis stream in, Redis out
    python -m examples.fraud_redis --kafka    # Kafka in (4 partitions, key_by shuffles), Redis and Kafka out

With ``--kafka`` the transactions are spread over 4 partitions and the rule updates reach the
detector through broadcast state while the transactions cross the ``key_by`` shuffle: which
transactions an update applies to (those that reach the detector after it) then depends on the
order they arrive in, as with Flink's broadcast state pattern; the Redis run reads one stream, in
order.

Redis layout: ``fraud:alerts`` (a stream of every alert), ``fraud:card:<card>`` (a hash per card:
its last alert of each type), ``fraud:alert-counts`` (a hash of counts by type). Every alert is
written once: an ``INCRBY``-style count that a replay after a crash would double stays exact.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import redis

from eventapp import CheckpointConfig, JobConfig, Sink, Source, configure_logging
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
)
from eventapp.connectors.kafka.txnlog import audit_topic
from eventapp.connectors.redis import (
    HIncrBy,
    HSet,
    RedisCommand,
    RedisSink,
    RedisSinkConfig,
    RedisStreamSource,
    RedisStreamSourceConfig,
    XAdd,
)
from eventapp.statebackends import RocksDBStateBackend
from examples.fraud_patterns import Alert, build_job, demo_events
from examples.io_defaults import kafka, redis_url, write_kafka, write_streams

INPUT_STREAM = "cards:transactions"


def alert_commands(alert: Alert) -> list[RedisCommand]:
    text = orjson.dumps(alert).decode()
    fields = {k: v for k, v in alert.items() if isinstance(v, str | int | float)}
    return [
        XAdd("fraud:alerts", fields, maxlen=100_000),
        HSet(f"fraud:card:{alert['card']}", {f"last_{alert['type']}": text}),
        HIncrBy("fraud:alert-counts", alert["type"]),
    ]


def timed_events() -> list[dict[str, Any]]:
    """The demo events, each rule update given the event time of the event before it. A rule update
    without ``ts`` would take the source's timestamp: for a Redis entry id or a Kafka record, the
    wall-clock time it was written, far ahead of the transactions' 2026-01-01 event time, so the
    watermark would jump there and every later transaction would be late."""
    events, last = [], 0
    for event in demo_events():
        if "ts" not in event:
            event = {**event, "ts": last}
        last = event["ts"]
        events.append(event)
    return events


def run(use_kafka: bool, work_dir: Path) -> dict[str, Any]:
    events = timed_events()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_url())
        bootstrap = stack.enter_context(kafka()) if use_kafka else None
        alerts: list[Sink[Alert]] = [
            RedisSink(RedisSinkConfig(url=url, mapper=alert_commands, name="fraud-alerts"))
        ]
        source: Source[Any]
        if bootstrap is None:
            write_streams(url, [INPUT_STREAM], events, key="card")
            source = RedisStreamSource(
                RedisStreamSourceConfig(url=url, streams=[INPUT_STREAM], value_field="json")
            )
        else:
            topic = write_kafka(bootstrap, events, key="card", partitions=4)
            source = KafkaSource(
                KafkaSourceConfig(
                    bootstrap_servers=bootstrap,
                    topics=[topic],
                    group_id=f"{topic}-fraud",
                    value_deserializer="json",
                )
            )
            alerts.append(
                KafkaSink(
                    KafkaSinkConfig(
                        bootstrap_servers=bootstrap,
                        topic=f"{topic}-alerts",
                        key_selector=lambda a: str(a["card"]),
                        delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                    )
                )
            )
        config = JobConfig(
            state_backend=RocksDBStateBackend(work_dir / "state"),
            checkpoint=CheckpointConfig(storage=work_dir / "checkpoints", interval_ms=200),
            max_batch_records=1,
            poll_timeout_s=0.2,
        )
        job = build_job(source, alerts, config=config)
        runner = job.runner()
        # Until every event went through (a Kafka run also reads them back from the shuffle), then a
        # drain (Flink's stop --drain): the watermark goes to +inf, so every transaction still
        # waiting for it is judged, and a final checkpoint applies the alerts.
        read = 0
        while read < len(events) * (2 if bootstrap else 1):
            runner.step()
            read = runner.result().records_read
        runner.request_stop("demo done", drain=True)
        runner.run()
        shown = dashboard(url)
        if bootstrap is not None:
            committed = audit_topic(bootstrap, f"{topic}-alerts", verify_crc=False).committed
            shown["kafka alerts"] = [orjson.loads(r.value) for r in committed if r.value is not None]
        return shown


def dashboard(url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {
            "fraud:alerts": [fields for _, fields in client.xrange("fraud:alerts")],
            "fraud:alert-counts": client.hgetall("fraud:alert-counts"),
            **{key: client.hgetall(key) for key in sorted(client.keys("fraud:card:*"))},
        }
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kafka", action="store_true", help="read the events from Kafka (embedded broker)")
    args = parser.parse_args(argv)
    configure_logging(level="WARNING")
    with tempfile.TemporaryDirectory(prefix="eventapp-fraud-") as tmp:
        for key, value in run(args.kafka, Path(tmp)).items():
            print(f"{key}: {orjson.dumps(value).decode()}")


if __name__ == "__main__":
    main()
