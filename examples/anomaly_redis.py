"""Anomaly detection (:mod:`examples.anomaly_detection`) with real I/O: readings from a Redis stream
(or a Kafka topic), alerts exactly-once to Redis in a dashboard-friendly layout (and to Kafka),
RocksDB state, checkpoints every 200 ms. Runs on embedded defaults: a redis-server and, with
``--kafka``, the embedded Kafka-protocol broker, both started here (``EXAMPLE_REDIS_URL`` /
``EXAMPLE_BOOTSTRAP_SERVERS`` name existing ones).

    python -m examples.anomaly_redis            # Redis stream in, Redis out
    python -m examples.anomaly_redis --kafka    # Kafka topic in, Redis and Kafka out

Redis layout (what a dashboard reads):

- ``anomaly:alerts``: a stream of every alert (``XRANGE``/``XREAD``; capped near 10,000 entries);
- ``anomaly:sensor:<sensor>``: a hash per sensor with its last alert of each type (7-day TTL);
- ``anomaly:alert-counts``: a hash of alert counts by type;
- ``anomaly:late``: a stream of the readings that arrived behind the watermark;
- channel ``anomaly:live``: each alert published as JSON when its checkpoint commits.

The input is one stream (one partition): a split that stops receiving records holds event time
back for the whole job, and a silent sensor must not stop the others' heartbeat timers. With many
splits, give the source's watermark strategy idleness.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator, Sequence
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
    Publish,
    RedisCommand,
    RedisSink,
    RedisSinkConfig,
    RedisStreamSource,
    RedisStreamSourceConfig,
    XAdd,
)
from eventapp.statebackends import RocksDBStateBackend
from examples.anomaly_detection import Alert, AnomalyDetector, Reading, build_job, demo_readings
from examples.io_defaults import kafka, redis_url, write_kafka, write_streams

INPUT_STREAM = "sensors:readings"
WEEK_MS = 7 * 24 * 3_600_000


def alert_commands(alert: Alert) -> list[RedisCommand]:
    """One alert in the dashboard layout (module docstring)."""
    text = orjson.dumps(alert).decode()
    fields = {k: v for k, v in alert.items() if isinstance(v, str | int | float)}
    return [
        XAdd("anomaly:alerts", fields, maxlen=10_000),
        HSet(f"anomaly:sensor:{alert['sensor']}", {f"last_{alert['type']}": text}, ttl_ms=WEEK_MS),
        HIncrBy("anomaly:alert-counts", alert["type"]),
        Publish("anomaly:live", text),
    ]


def late_commands(reading: Reading) -> RedisCommand:
    fields = {k: v for k, v in reading.items() if isinstance(v, str | int | float)}
    return XAdd("anomaly:late", fields, maxlen=10_000)


def run(use_kafka: bool, work_dir: Path) -> dict[str, Any]:
    """Write the demo readings, run the job until it has read them all (then a final checkpoint),
    and return what Redis holds."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_url())
        bootstrap = stack.enter_context(kafka()) if use_kafka else None
        readings = demo_readings()
        source: Source[Any]
        alerts: list[Sink[Alert]] = [
            RedisSink(RedisSinkConfig(url=url, mapper=alert_commands, name="anomaly-alerts"))
        ]
        if bootstrap is None:
            write_streams(url, [INPUT_STREAM], readings, key="sensor")
            source = RedisStreamSource(
                RedisStreamSourceConfig(url=url, streams=[INPUT_STREAM], value_field="json")
            )
        else:
            topic = write_kafka(bootstrap, readings, key="sensor", partitions=1)
            source = KafkaSource(
                KafkaSourceConfig(bootstrap_servers=bootstrap, topics=[topic], group_id=f"{topic}-anomaly",
                                  value_deserializer="json")
            )  # fmt: skip
            alerts.append(
                KafkaSink(
                    KafkaSinkConfig(
                        bootstrap_servers=bootstrap,
                        topic=f"{topic}-alerts",
                        key_selector=lambda a: str(a["sensor"]),
                        delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                    )
                )
            )
        late = RedisSink(RedisSinkConfig(url=url, mapper=late_commands, name="anomaly-late"))
        config = JobConfig(
            state_backend=RocksDBStateBackend(work_dir / "state"),
            checkpoint=CheckpointConfig(storage=work_dir / "checkpoints", interval_ms=200),
            max_batch_records=1,  # the watermark follows every reading (the lateness demo needs it)
            poll_timeout_s=0.2,
        )
        job = build_job(source, alerts, late, detector=AnomalyDetector(heartbeat_ms=30_000), config=config)
        runner = job.runner()
        read = 0
        while read < len(readings):
            runner.step()
            read = runner.result().records_read
        runner.checkpoint()  # the alerts reach Redis when their checkpoint commits
        runner.close()
        shown = dashboard(url)
        if bootstrap is not None:  # read as read_committed should (honouring transaction markers)
            committed = audit_topic(bootstrap, f"{topic}-alerts", verify_crc=False).committed
            shown["kafka alerts"] = [orjson.loads(r.value) for r in committed if r.value is not None]
        return shown


def dashboard(url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {
            "anomaly:alerts": [fields for _, fields in client.xrange("anomaly:alerts")],
            "anomaly:alert-counts": client.hgetall("anomaly:alert-counts"),
            **{key: client.hgetall(key) for key in sorted(client.keys("anomaly:sensor:*"))},
            "anomaly:late": [fields for _, fields in client.xrange("anomaly:late")],
        }
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kafka", action="store_true", help="read the readings from Kafka (embedded broker)")
    args = parser.parse_args(argv)
    configure_logging(level="WARNING")
    with _work_dir() as work_dir:
        for key, value in run(args.kafka, work_dir).items():
            print(f"{key}: {orjson.dumps(value).decode()}")


@contextlib.contextmanager
def _work_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="eventapp-anomaly-") as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    main()
