"""A job reading several sources: each source's splits are split tasks of their own, streams of
separate sources union and connect, and an operator fed by several inputs has the minimum of
their watermarks (Flink's multi-input operators)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from eventapp import (
    Collector,
    ConfigurationError,
    Context,
    Job,
    KeyedCoProcessFunction,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.windows import ProcessWindowFunction, TimeWindow, TumblingEventTimeWindows, WindowContext

Rec = tuple[str, int]
STRATEGY = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r[1])


class Describe(ProcessWindowFunction[Rec, tuple[str, int, int], str, TimeWindow]):
    def process(
        self, key: str, context: WindowContext[TimeWindow], elements: Iterable[Rec], out: Collector[Any]
    ) -> None:
        out.collect((key, context.window.start, len(list(elements))))


def _job(second_bounded: bool) -> tuple[Job, CollectionSource[Rec], CollectionSink[Any]]:
    job = Job("two-sources")
    first = job.from_source(CollectionSource([("a", 1), ("a", 50)], name="first"), STRATEGY)
    source: CollectionSource[Rec] = CollectionSource([("b", 2)], name="second", bounded=second_bounded)
    second = job.from_source(source, STRATEGY)
    sink: CollectionSink[Any] = CollectionSink()
    # Keys of one source never appear in the other, so each key's records are in one split.
    first.union(second).key_by(lambda r: r[0], partitioned_by_source=True).window(
        TumblingEventTimeWindows.of(10)
    ).process(Describe(), uid="windows").sink_to(sink)
    return job, source, sink


def test_the_watermark_after_a_union_of_two_sources_is_the_minimum_of_both() -> None:
    job, second, sink = _job(second_bounded=False)
    runner = job.runner()
    assert runner.plan.all_splits() == ["first-0", "second-0"]
    runner.open()
    try:
        runner.run_until_idle()
        # The first source is finished (+inf), the second is at 2: windows wait for the slower input.
        assert sink.values == []
        second.add(("b", 30))
        runner.run_until_idle()
        # The second input is at 29 now: [0, 10) of both keys fired, a's [50, 60) has not.
        assert sorted(sink.values) == [("a", 0, 1), ("b", 0, 1)]
        second.end()
        runner.run_until_idle()
    finally:
        runner.close()
    assert sorted(sink.values) == [("a", 0, 1), ("a", 50, 1), ("b", 0, 1), ("b", 30, 1)]


def test_a_bounded_job_of_two_sources_finishes_when_both_are_done() -> None:
    job, _, sink = _job(second_bounded=True)
    result = job.run()
    assert result.records_read == 3
    assert sorted(sink.values) == [("a", 0, 1), ("a", 50, 1), ("b", 0, 1)]


class Limits(KeyedCoProcessFunction[str, Rec, Rec, str]):
    limit = ValueStateDescriptor[int]("limit")

    def process_element1(self, value: Rec, ctx: Context, out: Collector[str]) -> None:
        limit = ctx.get_state(self.limit).value()
        if limit is not None and value[1] > limit:
            out.collect(f"{value[0]} over {limit}: {value[1]}")

    def process_element2(self, value: Rec, ctx: Context, out: Collector[str]) -> None:
        ctx.get_state(self.limit).update(value[1])


def test_connect_of_two_in_memory_sources_on_one_key_is_refused_it_needs_a_shuffle() -> None:
    job = Job("connect-sources")
    limits = job.from_source(CollectionSource([("acct", 100)], name="limits"))
    payments = job.from_source(CollectionSource([("acct", 50), ("acct", 150)], name="payments"))
    sink: CollectionSink[str] = CollectionSink()
    # Both inputs carry key "acct" in different splits: one state needs a shuffle, which needs Kafka.
    connected = payments.connect(limits).key_by(lambda p: p[0], lambda lim: lim[0])
    with pytest.raises(ConfigurationError, match="needs a shuffle"):
        connected.process(Limits(), uid="limit-check").sink_to(sink)
        job.runner().open()


def test_two_sources_reading_the_same_split_are_refused() -> None:
    job = Job("same-split")
    job.from_source(CollectionSource([1], name="same"))
    job.from_source(CollectionSource([2], name="same"))
    with pytest.raises(ConfigurationError, match="split 'same-0' belongs to sources"):
        job.runner().open()
