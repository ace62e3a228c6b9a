"""key_by through a repartition topic: records of one key spread over every input partition end up
in one split's state, exactly once, through a real broker (Flink's keyBy semantics)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from eventapp import (
    AggregateFunction,
    CheckpointConfig,
    Collector,
    Context,
    ErrorPolicy,
    Job,
    JobConfig,
    KeyedProcessFunction,
    OutputTag,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
)
from eventapp.connectors.kafka.quirks import BrokerQuirks
from eventapp.errors import ConfigurationError
from eventapp.windows import ProcessWindowFunction, TimeWindow, TumblingEventTimeWindows, WindowContext
from tests.support.broker import KafkaBroker, OutRecord, produce
from tests.support.kafka_audit import audit_topic

pytestmark = pytest.mark.kafka


class RunningCount(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[dict[str, Any]]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect({"k": ctx.current_key, "n": value["n"], "count": n})


def _source(broker: KafkaBroker, topic: str, group_id: str) -> KafkaSource[dict[str, Any]]:
    return KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=broker.bootstrap_servers,
            topics=[topic],
            group_id=group_id,
            value_deserializer="json",
            bounded=True,
        )
    )


def _spread(topic: str, broker: KafkaBroker, count: int, keys: int, partitions: int) -> None:
    """Record n has key k<n % keys> and goes to partition n % partitions: every key in every
    partition (the input is *not* partitioned by the key)."""
    produce(
        broker.bootstrap_servers,
        topic,
        [
            OutRecord(None, orjson.dumps({"k": f"k{n % keys}", "n": n, "ts": n * 10}), n % partitions)
            for n in range(count)
        ],
    )


def test_key_by_shuffles_so_each_key_has_one_state_exactly_once(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, tmp_path: Path
) -> None:
    source_topic, out = topic_factory(prefix="in", partitions=4), topic_factory(prefix="out", partitions=2)
    _spread(source_topic, kafka_broker, 400, keys=7, partitions=4)
    name = f"shuffle-{group_id}"
    job = Job(name, JobConfig(checkpoint=CheckpointConfig(storage=tmp_path, interval_ms=100)))
    sink: KafkaSink[dict[str, Any]] = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=kafka_broker.bootstrap_servers,
            topic=out,
            key_selector=lambda v: v["k"],
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
        )
    )
    job.from_source(_source(kafka_broker, source_topic, group_id)).key_by(lambda v: v["k"]).process(
        RunningCount(), uid="count"
    ).sink_to(sink)
    # The job's splits, what `eventapp splits` and the job manager divide among subtasks: the input's,
    # then the shuffle's.
    shuffle_splits = [f"{name}-count-repartition-{p}" for p in range(4)]
    assert job.splits() == [f"{source_topic}-{p}" for p in range(4)] + shuffle_splits
    runner = job.runner()
    assert [s.topic for s in runner.plan.shuffles] == [f"{name}-count-repartition"]
    assert runner.plan.shuffles[0].partitions == 4  # the input's partition count by default
    result = runner.run()
    assert result.records_read == 800  # 400 from the input, then 400 back from the shuffle

    audit = audit_topic(kafka_broker.bootstrap_servers, out)
    assert audit.aborted_count == 0 and audit.pending_count == 0, audit.summary()
    outputs = [orjson.loads(v or b"") for v in audit.committed_values()]
    assert sorted(o["n"] for o in outputs) == list(range(400))  # each input exactly once
    per_key = Counter(o["k"] for o in outputs)
    for key, total in per_key.items():
        # One state per key across the job: its counts are 1..total, not partial per partition.
        assert sorted(o["count"] for o in outputs if o["k"] == key) == list(range(1, total + 1))

    # A second run reads nothing new: both the input's and the shuffle's positions were committed.
    again = Job(name, JobConfig(checkpoint=CheckpointConfig(storage=tmp_path, interval_ms=100)))
    again.from_source(_source(kafka_broker, source_topic, group_id)).key_by(lambda v: v["k"]).process(
        RunningCount(), uid="count"
    ).sink_to(CollectionSink())
    assert again.run().records_read == 0


def test_without_the_shuffle_a_key_spread_over_partitions_has_partial_state(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, tmp_path: Path
) -> None:
    """What partitioned_by_source=True costs when the input is not partitioned by the key."""
    source_topic = topic_factory(prefix="in", partitions=2)
    _spread(source_topic, kafka_broker, 42, keys=3, partitions=2)  # 14 records per key, both partitions
    sink: CollectionSink[dict[str, Any]] = CollectionSink()
    job = Job(f"noshuffle-{group_id}")
    job.from_source(_source(kafka_broker, source_topic, group_id)).key_by(
        lambda v: v["k"], partitioned_by_source=True
    ).process(RunningCount(), uid="count").sink_to(sink)
    assert job.runner().plan.shuffles == ()
    job.run()
    assert max(o["count"] for o in sink.values) == 7  # each partition's half of the key, not 14


def test_windows_after_a_shuffle_see_every_record_of_the_key_and_the_watermark_crosses_it(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, tmp_path: Path
) -> None:
    source_topic = topic_factory(prefix="in", partitions=3)
    _spread(source_topic, kafka_broker, 300, keys=4, partitions=3)
    sink: CollectionSink[tuple[str, int, int]] = CollectionSink()
    job = Job(
        f"shufflewin-{group_id}", JobConfig(checkpoint=CheckpointConfig(storage=tmp_path, interval_ms=100))
    )
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v["ts"])
    late_tag = OutputTag[Any]("late")
    windows = (
        job.from_source(_source(kafka_broker, source_topic, group_id), strategy)
        .key_by(lambda v: v["k"])
        .window(TumblingEventTimeWindows.of(500))
        .side_output_late_data(late_tag)
        .aggregate(_CountAgg(), _KeyWindowCount(), uid="win")
    )
    windows.sink_to(sink)
    late: CollectionSink[Any] = CollectionSink()
    windows.side_output(late_tag).sink_to(late)
    runner = job.runner()
    result = runner.run()
    per_split = {s.split: s.records_in for s in runner.stats().splits}
    # Every record read twice (input, shuffle) and none late: the watermark crossed the shuffle
    # behind the records. (A failure here names the splits that read short, or the late records.)
    assert result.records_read == 600 and late.values == [], (per_split, late.values[:5])
    expected = Counter((f"k{n % 4}", (n * 10) // 500 * 500) for n in range(300))
    found = Counter({(k, start): count for k, start, count in sink.values})
    assert found == expected


class _CountAgg(AggregateFunction[Any, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, acc: int) -> int:
        return acc + 1

    def get_result(self, acc: int) -> int:
        return acc

    def merge(self, a: int, b: int) -> int:
        return a + b


class _KeyWindowCount(ProcessWindowFunction[int, tuple[str, int, int], str, TimeWindow]):
    def process(
        self, key: str, context: WindowContext[TimeWindow], elements: Iterable[int], out: Collector[Any]
    ) -> None:
        out.collect((key, context.window.start, next(iter(elements))))


def test_a_repartition_topic_with_another_partition_count_is_refused_with_the_fix(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    source_topic = topic_factory(prefix="in", partitions=2)
    name = f"wrongcount-{group_id}"
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for future in admin.create_topics([NewTopic(f"{name}-count-repartition", 3)]).values():
        future.result(30)
    job = Job(name)
    job.from_source(_source(kafka_broker, source_topic, group_id)).key_by(
        lambda v: v["k"], partitions=2
    ).process(RunningCount(), uid="count").sink_to(CollectionSink())
    with pytest.raises(ConfigurationError, match=r"3.*2|2.*3") as refused:
        job.run()  # refused at start, before anything is read
    assert f"{name}-count-repartition" in str(refused.value)


def test_a_key_that_cannot_be_encoded_is_dead_lettered_naming_its_type(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, tmp_path: Path
) -> None:
    source_topic = topic_factory(prefix="in", partitions=2)
    _spread(source_topic, kafka_broker, 10, keys=2, partitions=2)
    dead: CollectionSink[Any] = CollectionSink()
    sink: CollectionSink[dict[str, Any]] = CollectionSink()
    job = Job(f"badkey-{group_id}", JobConfig(error_policy=ErrorPolicy.dead_letter(dead)))
    job.from_source(_source(kafka_broker, source_topic, group_id)).key_by(
        lambda v: v["k"] if v["n"] != 3 else {"a": object()}
    ).process(RunningCount(), uid="count").sink_to(sink)
    job.run()
    assert sorted(o["n"] for o in sink.values) == [n for n in range(10) if n != 3]
    assert len(dead.values) == 1
    assert "dict" in dead.values[0].error and "shuffle" in dead.values[0].error


def test_consumed_shuffle_records_are_purged_unless_the_broker_cannot_delete_records(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str
) -> None:
    """Apache Kafka's default: a purge after every shuffle checkpoint. Quirk no-delete-records
    (Tansu 0.6.0 panics on DeleteRecords): none."""
    anchor = topic_factory(prefix="in", partitions=1)
    for quirks, purges in [(BrokerQuirks.none(), True), (BrokerQuirks.parse("no-delete-records"), False)]:
        source: KafkaSource[Any] = KafkaSource(
            KafkaSourceConfig(
                bootstrap_servers=kafka_broker.bootstrap_servers,
                topics=[anchor],
                group_id=group_id,
                broker_quirks=quirks,
            )
        )
        channel = source.shuffle_channel(f"{anchor}-repartition", 2, exactly_once=False)
        assert (channel.purge is not None) is purges
