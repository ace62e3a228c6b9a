"""The fraud detector as a Kafka job: exactly-once alerts, RocksDB state, checkpoints.

Run a worker with the CLI (configuration from the environment)::

    FRAUD_BOOTSTRAP=localhost:9092 eventapp run examples.fraud_kafka:build_job

Environment: ``FRAUD_BOOTSTRAP`` (required), ``FRAUD_TRANSACTIONS`` (input topic, default
``transactions``), ``FRAUD_ALERTS`` (default ``alerts``), ``FRAUD_DEAD_LETTERS`` (default
``transactions-dlq``), ``FRAUD_STATE_DIR`` / ``FRAUD_CHECKPOINT_DIR`` (default under ``.demo/``),
``FRAUD_BOUNDED=1`` to stop at the end of the input (demos, tests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from eventapp import (
    CheckpointConfig,
    CheckpointingMode,
    DeadLetter,
    ErrorPolicy,
    Job,
    JobConfig,
    WatermarkStrategy,
)
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
)
from eventapp.statebackends import RocksDBStateBackend
from examples.fraud_detection import Alert, FraudDetector


def alert_json(alert: Alert) -> bytes:
    return orjson.dumps(
        {
            "account": alert.account,
            "small": alert.small_amount,
            "large": alert.large_amount,
            "ts": alert.timestamp,
        }
    )


def dead_letter_json(letter: DeadLetter) -> bytes:
    return orjson.dumps(letter.to_dict(), default=str)


def build_job() -> Job:
    env = os.environ
    bootstrap = env.get("FRAUD_BOOTSTRAP")
    if not bootstrap:
        from eventapp import ConfigurationError

        raise ConfigurationError(
            "set FRAUD_BOOTSTRAP to the Kafka bootstrap servers (host:port), or run scripts/demo.sh "
            "which starts an embedded broker"
        )
    base = Path(env.get("FRAUD_DIR", ".demo"))
    transactions = env.get("FRAUD_TRANSACTIONS", "transactions")
    source: KafkaSource[Any] = KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=bootstrap,
            topics=[transactions],
            group_id="fraud-detection",
            value_deserializer="json",
            bounded=env.get("FRAUD_BOUNDED") == "1",
        )
    )
    alerts = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=bootstrap,
            topic=env.get("FRAUD_ALERTS", "alerts"),
            key_selector=lambda a: a.account,
            value_serializer=alert_json,
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
        )
    )
    dead_letters = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=bootstrap,
            topic=env.get("FRAUD_DEAD_LETTERS", f"{transactions}-dlq"),
            value_serializer=dead_letter_json,
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
        )
    )
    job = Job(
        "fraud-detection",
        JobConfig(
            state_backend=RocksDBStateBackend(env.get("FRAUD_STATE_DIR", str(base / "state"))),
            checkpoint=CheckpointConfig(
                storage=env.get("FRAUD_CHECKPOINT_DIR", str(base / "checkpoints")),
                interval_ms=500,
                mode=CheckpointingMode.EXACTLY_ONCE,
            ),
            error_policy=ErrorPolicy.dead_letter(dead_letters),
        ),
    )
    (
        job.from_source(
            source,
            WatermarkStrategy.for_bounded_out_of_orderness(5_000).with_timestamp_assigner(
                lambda t, _: int(t["ts"])
            ),
        )
        .key_by(lambda t: t["account"], partitioned_by_source=True)
        .process(FraudDetector(), uid="fraud-detector")
        .sink_to(alerts)
    )
    return job
