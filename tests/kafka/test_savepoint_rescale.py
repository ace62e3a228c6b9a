"""A savepoint of an exactly-once Kafka job on 8 partitions restored onto 12: every key's state
moves to the partition the default (murmur2) partitioner now sends it to, the job continues from
the saved offsets, and the committed output (audited, transaction markers honoured) holds every
key's counts 1..n exactly once over both phases.

The topic has 12 partitions from the start; phase 1 writes only partitions 0-7 (murmur2 % 8) and
the first job version reads splits 0-7, which is what a topic looks like right after it grew from
8 to 12 partitions (Tansu's CreatePartitions is not relied on)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from eventapp import (
    CheckpointConfig,
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    RestoreRequest,
    Savepoint,
    ValueStateDescriptor,
    create_savepoint,
)
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
)
from eventapp.partitioning import murmur2
from eventapp.statebackends import RocksDBStateBackend
from tests.support.broker import KafkaBroker, OutRecord, produce
from tests.support.kafka_audit import audit_topic


class Count(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[dict[str, Any]]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect({"k": value["k"], "n": n})


def build(bootstrap: str, topic: str, out: str, group: str, cp_topic: str, tmp: Path, state: str) -> Job:
    source = KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=bootstrap,
            topics=[topic],
            group_id=group,
            value_deserializer="json",
            bounded=True,
            checkpoint_topic=cp_topic,
        )
    )
    sink = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=bootstrap,
            topic=out,
            key_selector=lambda v: str(v["k"]),
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
        )
    )
    job = Job(
        "rescale-job",
        JobConfig(
            state_backend=RocksDBStateBackend(tmp / state),
            checkpoint=CheckpointConfig(storage=tmp / "checkpoints", interval_ms=200),
        ),
    )
    job.from_source(source).key_by(lambda v: v["k"], partitioned_by_source=True).process(
        Count(), uid="count"
    ).sink_to(sink)
    return job


def records(keys: list[str], partitions: int, tag: int) -> list[OutRecord]:
    return [
        OutRecord(k.encode(), orjson.dumps({"k": k, "tag": tag}), murmur2(k.encode()) % partitions)
        for k in keys
    ]


def test_restore_8_partition_savepoint_onto_12_partitions(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, checkpoint_topic: str, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic, out = topic_factory(prefix="in", partitions=12), topic_factory(prefix="out", partitions=12)
    keys = [f"card-{i}" for i in range(200)]
    phase1 = keys + keys[:120] + keys[:50]
    produce(bootstrap, topic, records(phase1, 8, 1))
    first = build(bootstrap, topic, out, group_id, checkpoint_topic, tmp_path, "rocks-1")
    old_splits = [f"{topic}-{p}" for p in range(8)]
    first.runner(old_splits).run()

    created = create_savepoint(
        CheckpointConfig(storage=tmp_path / "checkpoints").resolved_storage(),
        "rescale-job",
        old_splits,
        tmp_path / "savepoints",
        max_parallelism=128,
        partitioner="murmur2",
    )
    counts = Counter(phase1)
    assert dict(Savepoint.open(created.path).read_state("count", Count.count)) == dict(counts)

    phase2 = keys + keys[:30]
    produce(bootstrap, topic, records(phase2, 12, 2))
    second = build(bootstrap, topic, out, group_id, checkpoint_topic, tmp_path, "rocks-2")
    second.runner(restore=RestoreRequest(from_savepoint=created.path)).run()

    audit = audit_topic(bootstrap, out)
    assert audit.aborted_count == 0 and audit.pending_count == 0
    seen: dict[str, list[int]] = {}
    for value in audit.committed_values():
        item = orjson.loads(value)
        seen.setdefault(item["k"], []).append(item["n"])
    total = counts + Counter(phase2)
    assert {k: sorted(v) for k, v in seen.items()} == {k: list(range(1, total[k] + 1)) for k in keys}
