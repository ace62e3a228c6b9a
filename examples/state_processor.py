"""The state processor API: migrate state from another system into a savepoint, start a job from
it, then rewrite the savepoint for the next version. Run it::

    python -m examples.state_processor

1. ``SavepointBuilder`` bootstraps the fraud detector's "small transaction" flags from a dict (say,
   exported from the system being replaced), placing each account's state in the split its
   records are read from (Kafka's murmur2 partitioner over the splits).
2. The job runs from that savepoint: bob's first large transaction raises an alert at once.
3. ``SavepointTransform`` rewrites the flags (drop the ones over 0.10) into a new savepoint and
   renames the operator for a new version; ``Savepoint`` reads it back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from eventapp import (
    Job,
    JobConfig,
    RestoreRequest,
    Savepoint,
    SavepointBuilder,
    SavepointTransform,
    configure_logging,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.partitioning import murmur2
from examples.fraud_detection import Alert, FraudDetector

JOB = "fraud-detection"
SPLITS = ["collection-0", "collection-1"]
#: State of the system being replaced: accounts whose last transaction was a small one.
LEGACY_FLAGS = {"bob": 0.25, "carol": 0.05, "dave": 0.75}


def partition(transaction: dict[str, Any]) -> int:
    return murmur2(transaction["account"].encode()) % len(SPLITS)


def run_from(savepoint: Path, transactions: list[dict[str, Any]], uid: str) -> list[Alert]:
    alerts: CollectionSink[Alert] = CollectionSink("alerts")
    job = Job(JOB, JobConfig())
    (
        job.from_source(CollectionSource(transactions, splits=len(SPLITS), partitioner=partition))
        .key_by(lambda t: t["account"], partitioned_by_source=True)
        .process(FraudDetector(), uid=uid)
        .sink_to(alerts)
    )
    job.runner(restore=RestoreRequest(from_savepoint=savepoint)).run()
    return alerts.values


def main() -> None:
    configure_logging()
    with tempfile.TemporaryDirectory(prefix="eventapp-state-processor-") as directory:
        migrate(Path(directory))


def migrate(target: Path) -> None:

    bootstrapped = (
        SavepointBuilder(JOB, SPLITS)
        .add_state("fraud-detector", FraudDetector.flag, LEGACY_FLAGS.items())
        .write(target)
    )
    print(f"bootstrapped {bootstrapped.name}")
    for alert in run_from(bootstrapped, [{"account": "bob", "amount": 900.0}], "fraud-detector"):
        print(f"ALERT {alert}")

    rewritten = (
        SavepointTransform(bootstrapped)
        .rewrite_state(
            "fraud-detector", FraudDetector.flag, lambda account, amount: amount if amount <= 0.10 else None
        )
        .rename_uid("fraud-detector", "fraud-detector-v2")
        .write(target)
    )
    flags = dict(Savepoint.open(rewritten).read_state("fraud-detector-v2", FraudDetector.flag))
    print(f"rewritten {rewritten.name}: flags {flags}")


if __name__ == "__main__":
    main()
