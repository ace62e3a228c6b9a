"""The local runtime: operator chain, side outputs, watermarks, end of input."""

from __future__ import annotations

from typing import Any

import pytest

from eventapp import (
    Collector,
    ConfigurationError,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ManualClock,
    OnTimerContext,
    OutputTag,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource

ODD: OutputTag[int] = OutputTag("odd")


class RunningSum(KeyedProcessFunction[str, tuple[str, int], tuple[str, int]]):
    total = ValueStateDescriptor[int]("total", default=0)

    def process_element(self, value: tuple[str, int], ctx: Context, out: Collector[tuple[str, int]]) -> None:
        state = ctx.get_state(self.total)
        new = (state.value() or 0) + value[1]
        state.update(new)
        out.collect((value[0], new))
        if value[1] % 2:
            ctx.output(ODD, value[1])


def test_chain_of_map_filter_flat_map_process_and_side_output() -> None:
    main: CollectionSink[tuple[str, int]] = CollectionSink()
    odd: CollectionSink[int] = CollectionSink()
    job = Job("chain")
    summed = (
        job.from_source(CollectionSource(["a:1", "b:2", "a:3", "skip", "b:x4,5"]))
        .filter(lambda s: s != "skip")
        .flat_map(lambda s: s.replace("x", "").split(","))
        .map(lambda s: (s.split(":")[0], int(s.split(":")[1])) if ":" in s else ("b", int(s)))
        .key_by(lambda kv: kv[0])
        .process(RunningSum(), uid="sum")
    )
    summed.sink_to(main)
    summed.side_output(ODD).sink_to(odd)
    result = job.run()
    assert main.values == [("a", 1), ("b", 2), ("a", 4), ("b", 6), ("b", 11)]
    assert odd.values == [1, 3, 5]
    assert result.records_read == 5


class EventTimeCounter(KeyedProcessFunction[str, dict[str, Any], tuple[str, int, int]]):
    """Counts records per key and emits the count when the watermark passes ts + 10."""

    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[Any]) -> None:
        state = ctx.get_state(self.count)
        state.update((state.value() or 0) + 1)
        assert ctx.timestamp is not None
        ctx.timer_service.register_event_time_timer(ctx.timestamp + 10)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Any]) -> None:
        out.collect((ctx.current_key, timestamp, ctx.get_state(self.count).value()))


def event_job(source: CollectionSource[Any], sink: CollectionSink[Any], **cfg: Any) -> Job:
    job = Job("events", JobConfig(**cfg))
    (
        job.from_source(
            source,
            WatermarkStrategy.for_bounded_out_of_orderness(5).with_timestamp_assigner(lambda v, _: v["ts"]),
        )
        .key_by(lambda v: v["k"])
        .process(EventTimeCounter(), uid="counter")
        .sink_to(sink)
    )
    return job


def test_event_time_timers_fire_with_the_watermark_and_carry_its_timestamp() -> None:
    source: CollectionSource[Any] = CollectionSource(bounded=False)
    sink: CollectionSink[Any] = CollectionSink()
    runner = event_job(source, sink, clock=ManualClock()).runner()
    source.add({"k": "a", "ts": 100})
    runner.run_until_idle()
    assert runner.watermark == 100 - 5 - 1
    source.add({"k": "a", "ts": 112})  # watermark 106: the timer at 110 must not fire yet
    runner.run_until_idle()
    assert sink.records == []
    source.add({"k": "b", "ts": 116})  # watermark 110: fires a@110
    runner.run_until_idle()
    assert sink.records == [(("a", 110, 2), 110)]
    source.end()
    runner.run_until_idle()
    assert runner.finished
    # End of input: watermark +inf fires the remaining timers in timestamp order.
    assert sink.records[1:] == [(("a", 122, 2), 122), (("b", 126, 1), 126)]
    runner.close()


def test_watermark_is_the_minimum_over_splits_and_idle_splits_are_skipped() -> None:
    clock = ManualClock()
    source: CollectionSource[Any] = CollectionSource(splits=2, partitioner=lambda v: v["p"], bounded=False)
    sink: CollectionSink[Any] = CollectionSink()
    job = Job("idle", JobConfig(clock=clock))
    (
        job.from_source(
            source,
            WatermarkStrategy.for_monotonous_timestamps()
            .with_timestamp_assigner(lambda v, _: v["ts"])
            .with_idleness(1_000),
        )
        .key_by(lambda v: v["k"], partitioned_by_source=True)
        .process(EventTimeCounter(), uid="counter")
        .sink_to(sink)
    )
    runner = job.runner()
    source.add({"p": 0, "k": "a", "ts": 500})
    source.add({"p": 1, "k": "b", "ts": 100})
    runner.run_until_idle()
    assert runner.watermark == 99, "minimum over both splits"
    clock.advance(600)
    source.add({"p": 0, "k": "a", "ts": 700})
    runner.run_until_idle()
    assert runner.watermark == 99, "split 1 is not idle yet"
    clock.advance(500)  # split 1 silent for 1_100 ms >= idleness, split 0 active 500 ms ago
    runner.run_until_idle()
    assert runner.watermark == 699, "the idle split no longer holds the watermark back"
    assert ("b", 110, 1) in sink.values
    runner.close()


def test_late_records_are_processed_with_their_timestamp_below_the_watermark() -> None:
    seen: list[tuple[int | None, int]] = []

    class Probe(KeyedProcessFunction[str, dict[str, Any], None]):
        def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[None]) -> None:
            seen.append((ctx.timestamp, ctx.timer_service.current_watermark()))

    job = Job("late", JobConfig(max_batch_records=1))
    (
        job.from_source(
            CollectionSource([{"ts": 100}, {"ts": 10}]),
            WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v["ts"]),
        )
        .key_by(lambda v: "k")
        .process(Probe(), uid="probe")
    )
    job.run()
    assert seen[1] == (10, 99)


def test_builder_validates_configuration() -> None:
    with pytest.raises(ConfigurationError, match="job name"):
        Job("bad name")
    job = Job("ok")
    stream = job.from_source(CollectionSource([1]))
    with pytest.raises(ConfigurationError, match="partition count must be an int >= 1"):
        stream.key_by(lambda v: v, partitions=0)
    with pytest.raises(ConfigurationError, match="there is no shuffle"):
        stream.key_by(lambda v: v, partitions=2, partitioned_by_source=True)
    stream.key_by(lambda v: v).process(RunningSum(), uid="same")
    with pytest.raises(ConfigurationError, match="used twice"):
        stream.key_by(lambda v: v).process(RunningSum(), uid="same")
    with pytest.raises(TypeError):
        stream.key_by(lambda v: v).process(RunningSum())  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="KeyedProcessFunction instance"):
        stream.key_by(lambda v: v).process(RunningSum, uid="cls")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_batch_records"):
        JobConfig(max_batch_records=0)
    with pytest.raises(ConfigurationError, match="out-of-orderness"):
        WatermarkStrategy.for_bounded_out_of_orderness(-1)
