"""Windows on the local runtime (eventapp.windows), with Flink's semantics: tumbling, sliding,
session (merging) and global windows; reduce / aggregate / process with a ProcessWindowFunction;
results stamped window.max_timestamp(); allowed lateness with late firings and the late side
output; count, continuous and purging triggers; evictors; per-window state; windows that survive a
restore from a checkpoint; failures that name the window part that raised."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from eventapp import (
    AggregateFunction,
    CheckpointConfig,
    Collector,
    ErrorPolicy,
    Job,
    JobConfig,
    JobFailedError,
    ManualClock,
    OutputTag,
    RecordProcessingError,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.windows import (
    ContinuousEventTimeTrigger,
    CountEvictor,
    EventTimeSessionWindows,
    GlobalWindows,
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    TimeWindow,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowContext,
    WindowedStream,
)

Rec = tuple[str, int, int]  # (key, timestamp ms, value)
STRATEGY = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r[1])


def windowed(
    records: list[Rec], *, batch: int = 1000, name: str = "w"
) -> tuple[Job, WindowedStream[Any, Rec]]:
    job = Job(name, JobConfig(max_batch_records=batch))
    keyed = job.from_source(CollectionSource(records), STRATEGY).key_by(lambda r: r[0])
    return job, keyed.window(TumblingEventTimeWindows.of(10))


def run(job: Job, stream: Any) -> list[tuple[Any, int | None]]:
    sink: CollectionSink[Any] = CollectionSink()
    stream.sink_to(sink)
    job.run()
    return sink.records


class Describe(ProcessWindowFunction[Any, dict[str, Any], str, TimeWindow]):
    """Emits the window, the key and what the function received."""

    def process(
        self,
        key: str,
        context: WindowContext[TimeWindow],
        elements: Iterable[Any],
        out: Collector[dict[str, Any]],
    ) -> None:
        window = context.window
        out.collect({"key": key, "start": window.start, "end": window.end, "got": list(elements)})


class CountSum(AggregateFunction[Rec, list[int], tuple[int, int]]):
    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: Rec, accumulator: list[int]) -> list[int]:
        return [accumulator[0] + 1, accumulator[1] + value[2]]

    def get_result(self, accumulator: list[int]) -> tuple[int, int]:
        return (accumulator[0], accumulator[1])

    def merge(self, first: list[int], second: list[int]) -> list[int]:
        return [first[0] + second[0], first[1] + second[1]]


def test_tumbling_reduce_emits_one_result_per_window_stamped_with_its_max_timestamp() -> None:
    records: list[Rec] = [("a", 1, 1), ("b", 2, 10), ("a", 9, 2), ("a", 10, 4), ("b", 25, 20), ("a", 19, 8)]
    job, windows = windowed(records)
    out = run(
        job, windows.reduce(lambda x, y: (x[0], x[1], x[2] + y[2]), uid="sum").map(lambda r: (r[0], r[2]))
    )
    assert sorted(out) == sorted([(("a", 3), 9), (("b", 10), 9), (("a", 12), 19), (("b", 20), 29)])


def test_tumbling_window_start_follows_the_offset() -> None:
    job = Job("offset")
    stream = job.from_source(
        CollectionSource([("a", 2, 1), ("a", 3, 2), ("a", 12, 4), ("a", 13, 8)]), STRATEGY
    )
    windows = stream.key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(10, offset=3))
    out = run(job, windows.process(Describe(), uid="offset"))
    assert [(v["start"], v["end"], [r[2] for r in v["got"]], ts) for v, ts in out] == [
        (-7, 3, [1], 2),
        (3, 13, [2, 4], 12),
        (13, 23, [8], 22),
    ]


def test_sliding_aggregate_passes_the_aggregate_to_the_window_function() -> None:
    records: list[Rec] = [("a", 1, 1), ("a", 6, 2), ("a", 12, 4)]
    job = Job("sliding")
    keyed = job.from_source(CollectionSource(records), STRATEGY).key_by(lambda r: r[0])
    windows = keyed.window(SlidingEventTimeWindows.of(10, 5))
    out = run(job, windows.aggregate(CountSum(), Describe(), uid="slide"))
    got = sorted((v["start"], v["end"], v["got"][0], ts) for v, ts in out)
    assert got == [(-5, 5, (1, 1), 4), (0, 10, (2, 3), 9), (5, 15, (2, 6), 14), (10, 20, (1, 4), 19)]


def test_session_windows_merge_when_a_record_bridges_them() -> None:
    # a: 1 and 3 form [1, 8); 10 forms [10, 15); 6 ([6, 11)) bridges them into [1, 15); 30 alone.
    records: list[Rec] = [("a", 1, 1), ("a", 3, 2), ("a", 10, 4), ("a", 6, 8), ("a", 30, 16), ("b", 2, 32)]
    job = Job("sessions", JobConfig(max_batch_records=1))
    keyed = job.from_source(
        CollectionSource(records),
        WatermarkStrategy.for_bounded_out_of_orderness(100).with_timestamp_assigner(lambda r, _: r[1]),
    ).key_by(lambda r: r[0])
    sessions = keyed.window(EventTimeSessionWindows.with_gap(5))
    reduced = run(job, sessions.aggregate(CountSum(), Describe(), uid="sessions"))
    got = sorted((v["key"], v["start"], v["end"], v["got"][0], ts) for v, ts in reduced)
    assert got == [("a", 1, 15, (4, 15), 14), ("a", 30, 35, (1, 16), 34), ("b", 2, 7, (1, 32), 6)]


def test_session_windows_keep_every_element_for_a_process_function() -> None:
    records: list[Rec] = [("a", 1, 1), ("a", 10, 4), ("a", 6, 8)]
    job = Job("sessions-process", JobConfig(max_batch_records=1))
    keyed = job.from_source(
        CollectionSource(records),
        WatermarkStrategy.for_bounded_out_of_orderness(100).with_timestamp_assigner(lambda r, _: r[1]),
    ).key_by(lambda r: r[0])
    out = run(job, keyed.window(EventTimeSessionWindows.with_gap(5)).process(Describe(), uid="s"))
    assert [(v["start"], v["end"], sorted(r[2] for r in v["got"])) for v, _ in out] == [(1, 15, [1, 4, 8])]


class Firings(ProcessWindowFunction[Rec, tuple[int, int, int, int], str, TimeWindow]):
    """(window start, firing number, count, sum): the firing number is per-window state."""

    fired = ValueStateDescriptor[int]("fired", default=0)

    def __init__(self) -> None:
        self.cleared: list[int] = []

    def process(
        self, key: str, context: WindowContext[TimeWindow], elements: Iterable[Rec], out: Collector[Any]
    ) -> None:
        state = context.window_state(self.fired)
        firing = (state.value() or 0) + 1
        state.update(firing)
        values = [r[2] for r in elements]
        out.collect((context.window.start, firing, len(values), sum(values)))

    def clear(self, context: WindowContext[TimeWindow]) -> None:
        context.window_state(self.fired).clear()
        self.cleared.append(context.window.start)


def test_allowed_lateness_fires_again_per_late_record_then_sends_later_ones_to_the_side_output() -> None:
    # One record per batch: the watermark (monotonous: newest timestamp - 1) follows every record.
    records: list[Rec] = [("a", 1, 1), ("a", 5, 2), ("a", 12, 4), ("a", 3, 8), ("a", 20, 16), ("a", 4, 32)]
    late = OutputTag[Rec]("late")
    job = Job("lateness", JobConfig(max_batch_records=1))
    keyed = job.from_source(CollectionSource(records), STRATEGY).key_by(lambda r: r[0])
    function = Firings()
    result = keyed.window(TumblingEventTimeWindows.of(10)).allowed_lateness(5).side_output_late_data(late)
    processed = result.process(function, uid="late-windows")
    late_sink: CollectionSink[Rec] = CollectionSink()
    processed.side_output(late).sink_to(late_sink)
    out = run(job, processed)
    # [0, 10) fires at watermark 11 (after 12), again for the late 3 (11 < 9 + 5), is removed at
    # watermark 19 >= 14; 4 is then too late for it and goes to the side output.
    assert out == [((0, 1, 2, 3), 9), ((0, 2, 3, 11), 9), ((10, 1, 1, 4), 19), ((20, 1, 1, 16), 29)]
    assert late_sink.records == [(("a", 4, 32), 4)]
    assert function.cleared == [0, 10, 20]


def test_late_records_are_dropped_without_a_side_output() -> None:
    records: list[Rec] = [("a", 1, 1), ("a", 12, 4), ("a", 3, 8)]
    job = Job("dropped", JobConfig(max_batch_records=1))
    keyed = job.from_source(CollectionSource(records), STRATEGY).key_by(lambda r: r[0])
    out = run(job, keyed.window(TumblingEventTimeWindows.of(10)).reduce(lambda x, y: x, uid="r"))
    assert [tuple(v) for v, _ in out] == [("a", 1, 1), ("a", 12, 4)]  # msgpack: lists come back


def test_count_windows_tumbling_and_sliding() -> None:
    records: list[Rec] = [("a", i, i) for i in range(1, 8)]
    job = Job("counts")
    keyed = job.from_source(CollectionSource(records), STRATEGY).key_by(lambda r: r[0])
    tumbling: CollectionSink[Any] = CollectionSink()
    sliding: CollectionSink[Any] = CollectionSink()
    keyed.count_window(3).reduce(lambda x, y: (x[0], y[1], x[2] + y[2]), uid="c3").map(
        lambda r: r[2]
    ).sink_to(tumbling)
    keyed.count_window(3, 2).reduce(lambda x, y: (x[0], y[1], x[2] + y[2]), uid="c32").map(
        lambda r: r[2]
    ).sink_to(sliding)
    job.run()
    assert tumbling.values == [1 + 2 + 3, 4 + 5 + 6]  # 7 never completes a window of 3
    assert sliding.values == [1 + 2, 2 + 3 + 4, 4 + 5 + 6]  # every 2 records, the last (up to) 3


def test_global_windows_never_fire_without_a_trigger() -> None:
    job = Job("global")
    keyed = job.from_source(CollectionSource([("a", 1, 1), ("a", 50, 2)]), STRATEGY).key_by(lambda r: r[0])
    assert run(job, keyed.window(GlobalWindows.create()).reduce(lambda x, y: x, uid="g")) == []


def test_continuous_event_time_trigger_fires_early_every_interval_and_at_the_end() -> None:
    records: list[Rec] = [("a", 1, 1), ("a", 6, 2), ("a", 12, 4), ("a", 25, 8)]
    job = Job("continuous", JobConfig(max_batch_records=1))
    keyed = job.from_source(CollectionSource(records), STRATEGY).key_by(lambda r: r[0])
    windows = keyed.window(TumblingEventTimeWindows.of(20)).trigger(ContinuousEventTimeTrigger.of(5))
    out = run(job, windows.reduce(lambda x, y: (x[0], y[1], x[2] + y[2]), uid="cont").map(lambda r: r[2]))
    # One record per batch: the watermark reaches 5 only after the record at 6. [0, 20) fires at 5
    # (1+2), 10 (+4), 15 and its end 19; [20, 40) at 30 and 35 (the end of input's watermark fires
    # each continuous timer in turn) and at its end 39.
    assert [v for v, _ in out] == [3, 7, 7, 7, 8, 8, 8]
    assert [ts for _, ts in out] == [19, 19, 19, 19, 39, 39, 39]


def test_count_evictor_keeps_the_last_elements_before_the_function() -> None:
    records: list[Rec] = [("a", i, i) for i in range(1, 6)]
    job = Job("evict")
    keyed = job.from_source(CollectionSource(records), STRATEGY).key_by(lambda r: r[0])
    windows = keyed.window(TumblingEventTimeWindows.of(10)).evictor(CountEvictor.of(2))
    out = run(job, windows.process(Describe(), uid="evict"))
    assert [[r[2] for r in v["got"]] for v, _ in out] == [[4, 5]]


def test_windows_survive_a_restore_from_a_checkpoint(tmp_path: Path) -> None:
    def build(records: list[Rec], sink: CollectionSink[Any]) -> Job:
        job = Job("restored", JobConfig(checkpoint=CheckpointConfig(storage=tmp_path, interval_ms=600_000)))
        source = CollectionSource(records, bounded=False)
        keyed = job.from_source(source, STRATEGY).key_by(lambda r: r[0])
        keyed.window(TumblingEventTimeWindows.of(10)).aggregate(CountSum(), uid="cs").sink_to(sink)
        return job

    first: list[Rec] = [("a", 1, 1), ("a", 2, 2), ("b", 3, 4)]
    before: CollectionSink[Any] = CollectionSink()
    runner = build(first, before).runner()
    runner.run_until_idle()
    runner.checkpoint()
    runner.close()
    assert before.values == []  # the window is still open
    after: CollectionSink[Any] = CollectionSink()
    rerun = build([*first, ("a", 5, 8), ("a", 30, 16)], after).runner()
    rerun.run_until_idle()
    rerun.close()
    assert sorted(after.values) == [(1, 4), (3, 11)]  # a: 1+2 from the checkpoint, +8; b from it too


def test_processing_time_windows_fire_when_the_clock_passes_their_end() -> None:
    clock = ManualClock(1_000)
    source = CollectionSource([("a", 0, 1), ("a", 0, 2), ("b", 0, 4)], bounded=False)
    job = Job("processing", JobConfig(clock=clock))
    sink: CollectionSink[Any] = CollectionSink()
    keyed = job.from_source(source).key_by(lambda r: r[0])
    windows = keyed.window(TumblingProcessingTimeWindows.of(100))
    windows.reduce(lambda x, y: (x[0], x[1], x[2] + y[2]), uid="pt").map(tuple).sink_to(sink)
    runner = job.runner()
    runner.run_until_idle()
    assert sink.records == []  # [1000, 1100) is open
    clock.set(1_098)
    source.add(("a", 0, 8))
    runner.run_until_idle()
    assert sink.records == []
    clock.set(1_099)  # the window's max timestamp: its timer fires (as in Flink)
    runner.run_until_idle()
    clock.set(1_100)
    source.add(("a", 0, 16))  # in [1100, 1200)
    runner.run_until_idle()
    assert sorted(sink.records) == [(("a", 0, 11), 1_099), (("b", 0, 4), 1_099)]
    clock.set(1_250)
    runner.run_until_idle()
    runner.close()
    assert sink.records[-1] == (("a", 0, 16), 1_199)


class Boom(TumblingEventTimeWindows):
    def assign(self, timestamp: int) -> list[Any]:
        if timestamp == 13:
            raise ValueError("no window for 13")
        return super().assign(timestamp)


def test_a_window_assigner_that_raises_fails_the_job_naming_it_or_is_dead_lettered() -> None:
    records: list[Rec] = [("a", 1, 1), ("a", 13, 2), ("a", 21, 4)]
    job = Job("boom")
    keyed = job.from_source(CollectionSource(records), STRATEGY).key_by(lambda r: r[0])
    keyed.window(Boom(10)).reduce(lambda x, y: x, uid="boom").sink_to(CollectionSink())
    with pytest.raises((JobFailedError, RecordProcessingError)) as failed:
        job.run()
    assert "window assigner Boom(size=10, offset=0) raised ValueError: no window for 13" in str(
        failed.value
    ) + str(failed.value.__cause__)
    dead: CollectionSink[Any] = CollectionSink()
    job = Job("boom-dl", JobConfig(error_policy=ErrorPolicy.dead_letter(dead)))
    keyed = job.from_source(CollectionSource(records), STRATEGY).key_by(lambda r: r[0])
    out = run(job, keyed.window(Boom(10)).reduce(lambda x, y: x, uid="boom"))
    assert [tuple(v) for v, _ in out] == [("a", 1, 1), ("a", 21, 4)]
    assert len(dead.values) == 1 and "no window for 13" in str(dead.values[0])


def test_event_time_windows_need_timestamps() -> None:
    job = Job("no-ts")
    keyed = job.from_source(CollectionSource([("a", 1, 1)])).key_by(lambda r: r[0])
    keyed.window(TumblingEventTimeWindows.of(10)).reduce(lambda x, y: x, uid="r").sink_to(CollectionSink())
    with pytest.raises((JobFailedError, RecordProcessingError)) as failed:
        job.run()
    assert "the record has no timestamp" in str(failed.value) + str(failed.value.__cause__)


def test_bad_configuration_is_refused_with_the_fix() -> None:
    from eventapp import ConfigurationError

    with pytest.raises(ConfigurationError, match="size must be a positive number of milliseconds"):
        TumblingEventTimeWindows.of(0)
    with pytest.raises(ConfigurationError, match=r"\|offset\| < slide"):
        SlidingEventTimeWindows.of(10, 5, offset=5)
    _, windows = windowed([])
    with pytest.raises(ConfigurationError, match="allowed_lateness needs milliseconds >= 0"):
        windows.allowed_lateness(-1)
    with pytest.raises(ConfigurationError, match="window assigner"):
        WindowedStream(windows.keyed, "tumbling")  # type: ignore[arg-type]


def test_a_window_function_state_named_like_the_operators_own_is_refused() -> None:
    from eventapp import ConfigurationError, MapStateDescriptor

    class Clashing(Describe):
        mine = MapStateDescriptor[str, int]("eventapp.windows")

    _, windows = windowed([])
    with pytest.raises(
        ConfigurationError, match=r"state name 'eventapp\.windows' of Clashing is WindowOperator's own"
    ):
        windows.process(Clashing(), uid="clash")
