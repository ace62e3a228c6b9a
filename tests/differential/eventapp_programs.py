"""The differential programs on eventapp: the same functions as ``flink_programs.py``, written
against eventapp's API, run on a :class:`CollectionSource` with one split into
:class:`CollectionSink`\\ s.

Every ``run_*`` returns ``{output name: [{"value": ..., "ts": ...}, ...]}`` in the shape the Flink
driver writes (values normalised through JSON, so tuples become lists), output names as in
``flink_programs.build``.
"""

from __future__ import annotations

import json
from typing import Any

from eventapp import (
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ListStateDescriptor,
    ManualClock,
    MapStateDescriptor,
    OnTimerContext,
    OutputTag,
    RuntimeContext,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.watermarks import MIN_WATERMARK
from tests.differential import inputs

Output = list[dict[str, Any]]
Record = dict[str, Any]
LATE_TAG: OutputTag[Record] = OutputTag("late")
# The processing-time program advances a manual clock by this much per record, like the pacing of
# the Flink run (flink_programs.PACE_S); the clock starts at an arbitrary epoch time.
PACE_MS = 400
CLOCK_START_MS = 1_700_000_000_000


def normalise(sink: CollectionSink[Any]) -> Output:
    return [{"value": json.loads(json.dumps(v)), "ts": ts} for v, ts in sink.records]


def watermark(ctx: Context) -> int | None:
    wm = ctx.timer_service.current_watermark()
    return None if wm == MIN_WATERMARK else wm


def strategy(bound_ms: int) -> WatermarkStrategy[Any]:
    return WatermarkStrategy.for_bounded_out_of_orderness(bound_ms).with_timestamp_assigner(
        lambda r, _: int(r[1])
    )


# --- program 1: count per key, event-time timer at ts + delay -------------------------------------
class CountWithTimer(KeyedProcessFunction[str, tuple[str, int], Record]):
    seen_desc = ListStateDescriptor[int]("seen")

    def __init__(self, delay: int) -> None:
        self.delay = delay

    def open(self, ctx: RuntimeContext) -> None:
        self.seen = ctx.get_state(self.seen_desc)

    def process_element(self, value: tuple[str, int], ctx: Context, out: Collector[Record]) -> None:
        ts = ctx.timestamp
        assert ts is not None
        self.seen.add(ts)
        ctx.timer_service.register_event_time_timer(ts + self.delay)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Record]) -> None:
        seen = self.seen.get()
        out.collect(
            {
                "key": ctx.current_key,
                "timer": timestamp,
                "count_upto_timer": sum(1 for t in seen if t <= timestamp),
                "ctx_timestamp": ctx.timestamp,
                "count_seen": len(seen),
                "watermark": watermark(ctx),
            }
        )


def run_counts(max_batch_records: int = 1_000) -> dict[str, Output]:
    sink: CollectionSink[Record] = CollectionSink()
    job = Job("diff-counts", JobConfig(max_batch_records=max_batch_records))
    (
        job.from_source(CollectionSource(inputs.COUNTS), strategy(inputs.BOUND_MS))
        .key_by(lambda r: r[0])
        .process(CountWithTimer(inputs.COUNT_TIMER_DELAY_MS), uid="counts")
        .sink_to(sink)
    )
    job.run()
    return {"counts": normalise(sink)}


# --- program 2: windows of windows ----------------------------------------------------------------
class SmallWindowSum(KeyedProcessFunction[str, tuple[str, int, int], Record]):
    """Stage A: per user, tumbling event-time windows; emits at the window's last millisecond."""

    sums_desc = MapStateDescriptor[int, int]("sums")

    def __init__(self, size: int, groups: dict[str, str]) -> None:
        self.size = size
        self.groups = groups

    def open(self, ctx: RuntimeContext) -> None:
        self.sums = ctx.get_state(self.sums_desc)

    def process_element(self, value: tuple[str, int, int], ctx: Context, out: Collector[Record]) -> None:
        ts = ctx.timestamp
        assert ts is not None
        end = ts - ts % self.size + self.size
        self.sums.put(end, (self.sums.get(end) or 0) + value[2])
        ctx.timer_service.register_event_time_timer(end - 1)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Record]) -> None:
        end = timestamp + 1
        total = self.sums.get(end)
        self.sums.remove(end)
        user = ctx.current_key
        out.collect({"group": self.groups[user], "user": user, "start": end - self.size, "sum": total})


class LargeWindowSum(KeyedProcessFunction[str, Record, Record]):
    """Stage B: per group, tumbling windows over stage A's output timestamps; an input whose window
    ended at or below the watermark is late (Flink's window operator, allowed lateness 0)."""

    sums_desc = MapStateDescriptor[int, int]("sums")
    counts_desc = MapStateDescriptor[int, int]("counts")

    def __init__(self, size: int) -> None:
        self.size = size

    def open(self, ctx: RuntimeContext) -> None:
        self.sums = ctx.get_state(self.sums_desc)
        self.counts = ctx.get_state(self.counts_desc)

    def process_element(self, value: Record, ctx: Context, out: Collector[Record]) -> None:
        ts = ctx.timestamp
        assert ts is not None
        end = ts - ts % self.size + self.size
        if end - 1 <= ctx.timer_service.current_watermark():
            ctx.output(LATE_TAG, {**value, "ts": ts, "watermark": watermark(ctx)})
            return
        self.sums.put(end, (self.sums.get(end) or 0) + value["sum"])
        self.counts.put(end, (self.counts.get(end) or 0) + 1)
        ctx.timer_service.register_event_time_timer(end - 1)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Record]) -> None:
        end = timestamp + 1
        total, count = self.sums.get(end), self.counts.get(end)
        self.sums.remove(end)
        self.counts.remove(end)
        out.collect({"group": ctx.current_key, "start": end - self.size, "total": total, "inputs": count})


def run_windows(max_batch_records: int = 1_000) -> dict[str, Output]:
    small_sink: CollectionSink[Record] = CollectionSink("small")
    large_sink: CollectionSink[Record] = CollectionSink("large")
    late_sink: CollectionSink[Record] = CollectionSink("late")
    job = Job("diff-windows", JobConfig(max_batch_records=max_batch_records))
    small = (
        job.from_source(CollectionSource(inputs.WINDOWS), strategy(inputs.BOUND_MS))
        .key_by(lambda r: r[0])
        .process(SmallWindowSum(inputs.SMALL_WINDOW_MS, inputs.GROUPS), uid="small")
    )
    small.sink_to(small_sink)
    large = small.key_by(lambda r: r["group"]).process(LargeWindowSum(inputs.LARGE_WINDOW_MS), uid="large")
    large.sink_to(large_sink)
    large.side_output(LATE_TAG).sink_to(late_sink)
    job.run()
    return {
        "windows.small": normalise(small_sink),
        "windows.large": normalise(large_sink),
        "windows.late": normalise(late_sink),
    }


# --- program 3: processing-time timers ------------------------------------------------------------
class ProcessingTimers(KeyedProcessFunction[str, tuple[str, int, bool], Record]):
    far_desc = ValueStateDescriptor[int]("far_at")

    def __init__(self, near: int, far: int) -> None:
        self.near = near
        self.far = far

    def open(self, ctx: RuntimeContext) -> None:
        self.far_at = ctx.get_state(self.far_desc)

    def process_element(self, value: tuple[str, int, bool], ctx: Context, out: Collector[Record]) -> None:
        now = ctx.timer_service.current_processing_time()
        if value[2]:
            ctx.timer_service.register_processing_time_timer(now + self.near)
        if ctx.current_key == "far":
            self.far_at.update(now + self.far)
            ctx.timer_service.register_processing_time_timer(now + self.far)
            out.collect({"kind": "registered", "far_timer": now + self.far})

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Record]) -> None:
        out.collect(
            {
                "kind": "fired",
                "key": ctx.current_key,
                "domain": ctx.time_domain.name.lower(),
                "timer": timestamp,
                "ctx_timestamp": ctx.timestamp,
                "far": timestamp == self.far_at.value(),
            }
        )


def run_processing() -> dict[str, Output]:
    """Records PACE_MS apart on a manual clock: each record's near timer comes due before the next
    record, the far one only after the input ended (it must not fire)."""
    clock = ManualClock(CLOCK_START_MS)
    source: CollectionSource[tuple[str, int, bool]] = CollectionSource(bounded=False)
    sink: CollectionSink[Record] = CollectionSink()
    job = Job("diff-processing", JobConfig(clock=clock, max_batch_records=1))
    (
        job.from_source(source, strategy(inputs.BOUND_MS))
        .key_by(lambda r: r[0])
        .process(ProcessingTimers(inputs.NEAR_TIMER_MS, inputs.FAR_TIMER_MS), uid="processing")
        .sink_to(sink)
    )
    runner = job.runner()
    try:
        for record in inputs.PROCESSING:
            source.add(record)
            runner.run_until_idle()
            clock.advance(PACE_MS)
            runner.run_until_idle()
        source.end()
        runner.run_until_idle()
        assert runner.finished
    finally:
        runner.close()
    return {"processing": normalise(sink)}


# --- program 4: late records ----------------------------------------------------------------------
class LateProbe(KeyedProcessFunction[str, tuple[str, int], Record]):
    def process_element(self, value: tuple[str, int], ctx: Context, out: Collector[Record]) -> None:
        wm = watermark(ctx)
        ts = ctx.timestamp
        assert ts is not None
        ctx.timer_service.register_event_time_timer(ts)
        out.collect({"kind": "element", "ts": ts, "watermark": wm, "late": wm is not None and ts <= wm})

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Record]) -> None:
        out.collect(
            {"kind": "timer", "timer": timestamp, "ctx_timestamp": ctx.timestamp, "watermark": watermark(ctx)}
        )


def run_late(max_batch_records: int = 1) -> dict[str, Output]:
    """With one record per batch the watermark follows every record, as in the paced Flink run."""
    sink: CollectionSink[Record] = CollectionSink()
    job = Job("diff-late", JobConfig(max_batch_records=max_batch_records))
    (
        job.from_source(CollectionSource(inputs.LATE), strategy(inputs.LATE_BOUND_MS))
        .key_by(lambda r: r[0])
        .process(LateProbe(), uid="late")
        .sink_to(sink)
    )
    job.run()
    return {"late": normalise(sink)}
