"""Broadcast state through a real broker: a rules topic read by one source reaches every split of
a keyed operator behind a shuffle, is checkpointed in each split, and is there after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from eventapp import (
    BroadcastContext,
    CheckpointConfig,
    Collector,
    Job,
    JobConfig,
    KeyedBroadcastProcessFunction,
    MapStateDescriptor,
    ReadOnlyBroadcastContext,
)
from eventapp.connectors.collection import CollectionSink
from eventapp.connectors.kafka import KafkaSource, KafkaSourceConfig
from tests.support.broker import KafkaBroker, OutRecord, produce

pytestmark = pytest.mark.kafka

LIMITS = MapStateDescriptor[str, float]("limits")


class OverLimit(KeyedBroadcastProcessFunction[str, dict[str, Any], dict[str, Any], str]):
    def process_element(
        self, value: dict[str, Any], ctx: ReadOnlyBroadcastContext, out: Collector[str]
    ) -> None:
        for name, limit in sorted(ctx.get_broadcast_state(LIMITS).items()):
            if value["amount"] > limit:
                out.collect(f"{value['n']}:{name}")

    def process_broadcast_element(
        self, value: dict[str, Any], ctx: BroadcastContext, out: Collector[str]
    ) -> None:
        ctx.get_broadcast_state(LIMITS).put(value["rule"], value["limit"])


def _run(
    broker: KafkaBroker, name: str, rules: str, transactions: str, storage: Path
) -> tuple[Any, list[str]]:
    def source(topic: str) -> KafkaSource[Any]:
        return KafkaSource(
            KafkaSourceConfig(
                bootstrap_servers=broker.bootstrap_servers,
                topics=[topic],
                group_id=f"{name}-group",
                value_deserializer="json",
                bounded=True,
            )
        )

    job = Job(name, JobConfig(checkpoint=CheckpointConfig(storage=storage, interval_ms=200)))
    updates = job.from_source(source(rules)).broadcast(LIMITS)
    sink: CollectionSink[str] = CollectionSink()
    job.from_source(source(transactions)).key_by(lambda t: t["acct"]).connect(updates).process(
        OverLimit(), uid="over-limit"
    ).sink_to(sink)
    return job.run(), sink.values


def test_every_split_gets_the_rules_and_keeps_them_across_a_restart(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, tmp_path: Path
) -> None:
    rules, transactions = (
        topic_factory(prefix="rules", partitions=1),
        topic_factory(prefix="tx", partitions=3),
    )
    bootstrap = kafka_broker.bootstrap_servers
    produce(
        bootstrap,
        rules,
        [
            OutRecord(None, orjson.dumps({"rule": r, "limit": x}), 0)
            for r, x in [("big", 100.0), ("huge", 1000.0)]
        ],
    )
    name = f"bcast-{group_id}"
    first, alerts = _run(kafka_broker, name, rules, transactions, tmp_path)
    # 2 rules read, then each written to the shuffle's 3 partitions and read back there.
    assert first.records_read == 2 + 2 * 3 and alerts == []

    # 60 transactions of 12 accounts spread over the 3 partitions: every shuffle split sees some.
    amounts = [5.0, 150.0, 5000.0]
    produce(
        bootstrap,
        transactions,
        [
            OutRecord(None, orjson.dumps({"acct": f"a{n % 12}", "n": n, "amount": amounts[n % 3]}), n % 3)
            for n in range(60)
        ],
    )
    second, alerts = _run(kafka_broker, name, rules, transactions, tmp_path)
    assert second.records_read == 60 * 2  # no rule read again: they were restored with the state
    expected = sorted(
        f"{n}:{rule}"
        for n in range(60)
        for rule, limit in [("big", 100.0), ("huge", 1000.0)]
        if amounts[n % 3] > limit
    )
    assert sorted(alerts) == expected
