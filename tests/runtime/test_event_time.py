"""Flink's event-time semantics in the runtime: watermarks forwarded operator by operator (timer
outputs of one keyed operator reach the next before the watermark that fired them), the timestamp
of processing-time timers, fair interleaving of splits and split-level watermark alignment.

Each test here failed on the runtime before the v2 core (issue 7)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from eventapp import (
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ManualClock,
    OnTimerContext,
    TimeDomain,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource


class TumblingCount(KeyedProcessFunction[Any, tuple[Any, int], tuple[Any, int, int]]):
    """A tumbling event-time window as a process function, dropping late records as Flink's window
    operator does: emits ``(key, window_end, count)`` when the watermark passes the window."""

    def __init__(self, size_ms: int, weight: int = 0) -> None:
        self.size = size_ms
        self.weight = weight  # 0: count records, else sum field [2] of the input
        self.late: list[Any] = []

    def process_element(self, value: Any, ctx: Context, out: Collector[Any]) -> None:
        ts = ctx.timestamp
        assert ts is not None
        if ts <= ctx.timer_service.current_watermark():
            self.late.append(value)
            return
        end = ts - ts % self.size + self.size - 1
        state = ctx.get_state(ValueStateDescriptor[int](f"w{end}", default=0))
        state.update((state.value() or 0) + (value[2] if self.weight else 1))
        ctx.timer_service.register_event_time_timer(end)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Any]) -> None:
        state = ctx.get_state(ValueStateDescriptor[int](f"w{timestamp}", default=0))
        out.collect((ctx.current_key, timestamp, state.value() or 0))
        state.clear()


def test_timer_outputs_reach_the_next_event_time_operator_before_the_watermark_that_fired_them() -> None:
    # Windows of windows: 10 ms counts per key, then 100 ms sums of those counts over all keys.
    records = [(f"k{i % 3}", ts) for i, ts in enumerate(range(0, 1_000, 5))]
    inner = TumblingCount(10)
    outer = TumblingCount(100, weight=1)
    sink: CollectionSink[Any] = CollectionSink()
    job = Job("windows-of-windows", JobConfig(max_batch_records=7))
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v[1])
    (
        job.from_source(CollectionSource(records), strategy)
        .key_by(lambda v: v[0])
        .process(inner, uid="inner")
        .key_by(lambda v: "all")
        .process(outer, uid="outer")
        .sink_to(sink)
    )
    job.run()
    assert inner.late == [] and outer.late == [], "no timer output of 'inner' may be late at 'outer'"
    assert sorted(sink.values) == [("all", end, 20) for end in range(99, 1_000, 100)]


def test_chained_timer_outputs_carry_the_timer_timestamp_downstream() -> None:
    seen: list[tuple[Any, int | None]] = []

    class Stamp(KeyedProcessFunction[Any, Any, Any]):
        def process_element(self, value: Any, ctx: Context, out: Collector[Any]) -> None:
            seen.append((value, ctx.timestamp))

    job = Job("stamps")
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v[1])
    (
        job.from_source(CollectionSource([("a", 3), ("a", 15)]), strategy)
        .key_by(lambda v: v[0])
        .process(TumblingCount(10), uid="inner")
        .key_by(lambda v: v[0])
        .process(Stamp(), uid="stamp")
    )
    job.run()
    assert seen == [(("a", 9, 1), 9), (("a", 19, 1), 19)]


class ProcessingTimeProbe(KeyedProcessFunction[str, str, tuple[str, int | None, int]]):
    def process_element(self, value: str, ctx: Context, out: Collector[Any]) -> None:
        ctx.timer_service.register_processing_time_timer(ctx.timer_service.current_processing_time() + 500)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Any]) -> None:
        assert ctx.time_domain is TimeDomain.PROCESSING_TIME
        out.collect((ctx.current_key, ctx.timestamp, timestamp))


def test_processing_time_timer_context_timestamp_is_the_timer_timestamp() -> None:
    clock = ManualClock(1_000)
    source: CollectionSource[str] = CollectionSource(["a"], bounded=False)
    sink: CollectionSink[Any] = CollectionSink()
    job = Job("proc-ts", JobConfig(clock=clock))
    job.from_source(source).key_by(lambda v: v).process(ProcessingTimeProbe(), uid="probe").sink_to(sink)
    runner = job.runner()
    runner.run_until_idle()
    clock.set(1_500)
    runner.run_until_idle()
    runner.close()
    assert sink.values == [("a", 1_500, 1_500)], (
        "as in Flink: ctx.timestamp() in on_timer is the timer's time"
    )
    assert sink.records == [(("a", 1_500, 1_500), None)], "outputs carry no event time"


def test_a_worker_interleaves_its_splits_instead_of_draining_one_first() -> None:
    order: list[int] = []
    source = CollectionSource(range(4_000), splits=4, partitioner=lambda v: v % 4)
    job = Job("fair", JobConfig(max_batch_records=100))
    job.from_source(source).map(lambda v: order.append(v % 4)).sink_to(CollectionSink())
    job.run()
    first_quarter = Counter(order[:1_000])
    assert len(order) == 4_000
    assert all(200 <= first_quarter[s] <= 300 for s in range(4)), first_quarter


def test_watermark_alignment_pauses_splits_that_run_ahead() -> None:
    # Split 0's event time runs 100x faster than split 1's.
    fast = [(0, i * 100) for i in range(1_000)]
    slow = [(1, i) for i in range(1_000)]
    max_seen = {0: 0, 1: 0}
    drift: list[int] = []

    def observe(v: tuple[int, int]) -> tuple[int, int]:
        max_seen[v[0]] = max(max_seen[v[0]], v[1])
        if max_seen[1] < slow[-1][1]:
            # Only while the slow split has records left: a finished split holds nobody back.
            drift.append(max_seen[0] - max_seen[1])
        return v

    def run(strategy: WatermarkStrategy[Any]) -> int:
        max_seen.update({0: 0, 1: 0})
        drift.clear()
        source = CollectionSource(fast + slow, splits=2, partitioner=lambda v: v[0])
        job = Job("aligned", JobConfig(max_batch_records=10))
        job.from_source(source, strategy.with_timestamp_assigner(lambda v, _: v[1])).map(observe).sink_to(
            CollectionSink()
        )
        result = job.run()
        assert result.records_read == 2_000, "pausing must not lose records"
        return max(drift)

    unaligned = run(WatermarkStrategy.for_monotonous_timestamps())
    aligned = run(WatermarkStrategy.for_monotonous_timestamps().with_watermark_alignment(1_000))
    assert unaligned > 50_000
    # One poll hands split 0 at most 10 records (1,000 ms of its event time) past the limit.
    assert aligned <= 1_000 + 1_000, aligned


def test_a_finished_split_no_longer_holds_the_watermark_back() -> None:
    # Split 1 has one record; split 0 goes on to ts 1,000. Once split 1 has handed out its last
    # record, the watermark follows split 0 alone (Flink releases a finished split's watermark),
    # instead of staying at split 1's timestamp until the whole input ends.
    records = [(0, ts) for ts in range(0, 1_001, 10)] + [(1, 0)]
    seen: list[int] = []

    class Watch(KeyedProcessFunction[Any, Any, Any]):
        def process_element(self, value: Any, ctx: Context, out: Collector[Any]) -> None:
            if value[0] == 0:
                seen.append(ctx.timer_service.current_watermark())

    job = Job("finished-split", JobConfig(max_batch_records=4))
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v[1])
    source = CollectionSource(records, splits=2, partitioner=lambda v: v[0])
    job.from_source(source, strategy).key_by(lambda v: v[0], partitioned_by_source=True).process(
        Watch(), uid="watch"
    )
    job.run()
    assert len(seen) == 101
    assert seen[-1] >= 900, f"the watermark stayed at the finished split's {max(seen)}"
