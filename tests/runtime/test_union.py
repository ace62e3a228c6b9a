"""``DataStream.union``: records of several streams of one job reach one downstream operator (one
instance, one state), in arrival order; a stream given twice gives its records twice; streams of
another job are refused."""

from __future__ import annotations

from typing import Any

import pytest

from eventapp import (
    Collector,
    ConfigurationError,
    Context,
    Job,
    KeyedProcessFunction,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.windows import TumblingEventTimeWindows


class RunningCount(KeyedProcessFunction[str, Any, tuple[str, int]]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: Any, ctx: Context, out: Collector[tuple[str, int]]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect((ctx.current_key, n))


def test_union_feeds_one_keyed_operator_whose_state_spans_both_inputs() -> None:
    job = Job("union")
    stream = job.from_source(CollectionSource([("pay", "a"), ("refund", "a"), ("pay", "b"), ("pay", "a")]))
    payments = stream.filter(lambda r: r[0] == "pay").map(lambda r: r[1])
    refunds = stream.filter(lambda r: r[0] == "refund").map(lambda r: r[1])
    sink: CollectionSink[Any] = CollectionSink()
    payments.union(refunds).key_by(lambda k: k).process(RunningCount(), uid="count").sink_to(sink)
    job.run()
    assert sink.values == [("a", 1), ("a", 2), ("b", 1), ("a", 3)]


def test_a_stream_united_with_itself_gives_its_records_twice() -> None:
    job = Job("self-union")
    stream = job.from_source(CollectionSource([1, 2]))
    sink: CollectionSink[int] = CollectionSink()
    stream.union(stream).sink_to(sink)
    job.run()
    assert sink.values == [1, 1, 2, 2]


def test_windows_after_a_union_see_both_inputs() -> None:
    job = Job("union-windows")
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r[1])
    stream = job.from_source(CollectionSource([("x", 1, 1), ("y", 2, 10), ("x", 12, 100)]), strategy)
    left = stream.filter(lambda r: r[0] == "x")
    right = stream.filter(lambda r: r[0] == "y")
    sink: CollectionSink[Any] = CollectionSink()
    windows = left.union(right).key_by(lambda r: "all").window(TumblingEventTimeWindows.of(10))
    windows.reduce(lambda a, b: (a[0], a[1], a[2] + b[2]), uid="sum").map(lambda r: r[2]).sink_to(sink)
    job.run()
    assert sink.records == [(11, 9), (100, 19)]


def test_union_with_a_stream_of_another_job_is_refused() -> None:
    one, other = Job("one"), Job("other")
    a = one.from_source(CollectionSource([1]))
    b = other.from_source(CollectionSource([2]))
    with pytest.raises(ConfigurationError, match="union\\(\\) takes streams of the same job"):
        a.union(b)
