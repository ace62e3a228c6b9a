"""A whole job through the Kafka connector: KafkaSource -> keyed state -> exactly-once KafkaSink,
stopped and restarted (state and positions come back from the Kafka commit points)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from eventapp import (
    CheckpointConfig,
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ValueStateDescriptor,
)
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
    StartPosition,
)
from tests.support.broker import KafkaBroker, OutRecord, produce
from tests.support.kafka_audit import audit_topic

pytestmark = pytest.mark.kafka


class RunningCount(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[dict[str, Any]]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect({"user": value["user"], "n": value["n"], "count": n})


def run_job(
    broker: KafkaBroker,
    name: str,
    source_topic: str,
    out: str,
    group_id: str,
    storage: Path,
    start_position: StartPosition | None = None,
) -> Any:
    job = Job(name, JobConfig(checkpoint=CheckpointConfig(storage=storage, interval_ms=100)))
    source: KafkaSource[dict[str, Any]] = KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=broker.bootstrap_servers,
            topics=[source_topic],
            group_id=group_id,
            value_deserializer="json",
            bounded=True,
            start_position=start_position or StartPosition.committed(),
        )
    )
    sink: KafkaSink[dict[str, Any]] = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=broker.bootstrap_servers,
            topic=out,
            key_selector=lambda v: v["user"],
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
        )
    )
    job.from_source(source).key_by(lambda v: v["user"], partitioned_by_source=True).process(
        RunningCount(), uid="count"
    ).sink_to(sink)
    return job.run()


def test_exactly_once_job_resumes_state_and_positions_from_kafka(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, tmp_path: Path
) -> None:
    source_topic, out = topic_factory(prefix="in", partitions=2), topic_factory(prefix="out", partitions=2)

    # Keyed state belongs to a split: user u<k> only ever appears in partition k % 2.
    def records(start: int, stop: int) -> list[OutRecord]:
        return [
            OutRecord(None, orjson.dumps({"user": f"u{n % 10}", "n": n}), n % 2) for n in range(start, stop)
        ]

    produce(kafka_broker.bootstrap_servers, source_topic, records(0, 200))
    first = run_job(kafka_broker, f"job-{group_id}", source_topic, out, group_id, tmp_path)
    assert first.records_read == 200
    produce(kafka_broker.bootstrap_servers, source_topic, records(200, 250))
    second = run_job(kafka_broker, f"job-{group_id}", source_topic, out, group_id, tmp_path)
    assert second.records_read == 50  # resumed at the committed positions

    audit = audit_topic(kafka_broker.bootstrap_servers, out)
    assert audit.aborted_count == 0 and audit.pending_count == 0, audit.summary()
    outputs = [orjson.loads(v or b"") for v in audit.committed_values()]
    assert sorted(o["n"] for o in outputs) == list(range(250))  # each input exactly once
    for user in {o["user"] for o in outputs}:
        counts = sorted(o["count"] for o in outputs if o["user"] == user)
        assert counts == list(range(1, 26))  # state survived the restart


def test_latest_start_is_checkpointed_before_the_first_record(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, tmp_path: Path
) -> None:
    """A job started at ``latest`` that is stopped before a split saw a record must resume where it
    started, not at ``latest`` again: records that arrived while it was down would be skipped."""
    source_topic, out = topic_factory(prefix="in", partitions=2), topic_factory(prefix="out", partitions=2)
    bootstrap = kafka_broker.bootstrap_servers

    def one_per_batch(start: int, stop: int) -> None:
        # One record per produce: Tansu's end offset (ListOffsets) is only right at a batch boundary.
        for n in range(start, stop):
            produce(
                bootstrap, source_topic, [OutRecord(None, orjson.dumps({"user": f"u{n % 4}", "n": n}), n % 2)]
            )

    one_per_batch(0, 6)  # before the first start: never read
    latest = StartPosition.latest()
    first = run_job(kafka_broker, f"job-{group_id}", source_topic, out, group_id, tmp_path, latest)
    assert first.records_read == 0
    one_per_batch(6, 10)  # while the job is down
    second = run_job(kafka_broker, f"job-{group_id}", source_topic, out, group_id, tmp_path, latest)
    assert second.records_read == 4
    outputs = [orjson.loads(v or b"") for v in audit_topic(bootstrap, out).committed_values()]
    assert sorted(o["n"] for o in outputs) == [6, 7, 8, 9]
