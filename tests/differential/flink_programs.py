"""The differential programs on Apache Flink (PyFlink 2.3), all in ONE Flink job.

Run with the Flink virtualenv's python (``scripts/install-flink.sh`` prints it), its ``bin`` first
on PATH::

    PATH=.venv-flink/bin:$PATH .venv-flink/bin/python tests/differential/flink_programs.py out.json

It writes ``{"programs": {name: [{"value": ..., "ts": ...}, ...]}, "meta": {...}}`` to the path
given: every record each program's pipeline produced, in arrival order, with the Flink timestamp
the record carried (``None`` when it had none). Starting a Flink job costs 20-70 s here, so the
programs are independent pipelines of one job, merged with ``union`` into one collected stream.

This file runs where eventapp is not installed: it imports only PyFlink, the standard library and
``tests/differential/inputs.py``. The functions below are pickled by value into Flink's Python
workers, so they must not refer to other modules of this repository.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pyflink.common import Configuration, Duration, Time, Types, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    DataStream,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    StreamExecutionEnvironment,
)
from pyflink.datastream.functions import MapFunction, ProcessWindowFunction
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
from pyflink.datastream.window import TumblingEventTimeWindows

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.differential import inputs  # after sys.path names the repository

LONG_MIN = -(2**63)
# Records of paced pipelines are PACE_S apart: far longer than the watermark interval below, so
# the watermark that follows a record reaches the keyed operator before the next record does.
PACE_S = 0.4
WATERMARK_INTERVAL_MS = 10

# Records are plain tuples/dicts, carried as pickled bytes (Types.PICKLED_BYTE_ARRAY).
PICKLED = Types.PICKLED_BYTE_ARRAY()
LATE_TAG = OutputTag("late", PICKLED)


class TsAt(TimestampAssigner):
    """The record's event time is its field ``index``."""

    def __init__(self, index: int) -> None:
        self.index = index

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[self.index])


class Pace(MapFunction):
    """Sleeps before passing each record on: one record per PACE_S."""

    def map(self, value: Any) -> Any:
        time.sleep(PACE_S)
        return value


class Tag(ProcessFunction):
    """Last operator of every program: the program's name, the value and the record's timestamp."""

    def __init__(self, name: str) -> None:
        self.name = name

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterator[Any]:
        ts = ctx.timestamp()
        yield json.dumps([self.name, value, None if ts is None or ts == LONG_MIN else ts])


def watermark(ctx: KeyedProcessFunction.Context) -> int | None:
    wm = ctx.timer_service().current_watermark()
    return None if wm == LONG_MIN else int(wm)


# --- program 1: count per key, event-time timer at ts + 10 ---------------------------------------
class CountWithTimer(KeyedProcessFunction):
    def __init__(self, delay: int) -> None:
        self.delay = delay

    def open(self, runtime_context: Any) -> None:
        self.seen = runtime_context.get_list_state(ListStateDescriptor("seen", Types.LONG()))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        self.seen.add(ctx.timestamp())
        ctx.timer_service().register_event_time_timer(ctx.timestamp() + self.delay)
        return ()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        seen = list(self.seen.get())
        yield {
            "key": ctx.get_current_key(),
            "timer": timestamp,
            "count_upto_timer": sum(1 for t in seen if t <= timestamp),
            "ctx_timestamp": ctx.timestamp(),
            # Depend on when watermarks came: printed, not compared.
            "count_seen": len(seen),
            "watermark": watermark(ctx),
        }


# --- program 2: windows of windows with keyed process functions ----------------------------------
class SmallWindowSum(KeyedProcessFunction):
    """Stage A: per user, the sum of amounts in tumbling windows; emits when the window's last
    millisecond (its end - 1, Flink's window.maxTimestamp()) is reached by the watermark."""

    def __init__(self, size: int, groups: dict[str, str]) -> None:
        self.size = size
        self.groups = groups

    def open(self, runtime_context: Any) -> None:
        self.sums = runtime_context.get_map_state(MapStateDescriptor("sums", Types.LONG(), Types.LONG()))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        ts = ctx.timestamp()
        end = ts - ts % self.size + self.size
        self.sums.put(end, (self.sums.get(end) or 0) + value[2])
        ctx.timer_service().register_event_time_timer(end - 1)
        return ()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        end = timestamp + 1
        total = self.sums.get(end)
        self.sums.remove(end)
        user = ctx.get_current_key()
        yield {"group": self.groups[user], "user": user, "start": end - self.size, "sum": total}


class LargeWindowSum(KeyedProcessFunction):
    """Stage B: per group, the sum of stage A's sums in larger tumbling windows, over A's output
    timestamps. Like Flink's window operator (allowed lateness 0), an input whose window's last
    millisecond is at or below the watermark is late: it goes to the ``late`` side output."""

    def __init__(self, size: int) -> None:
        self.size = size

    def open(self, runtime_context: Any) -> None:
        self.sums = runtime_context.get_map_state(MapStateDescriptor("sums", Types.LONG(), Types.LONG()))
        self.counts = runtime_context.get_map_state(MapStateDescriptor("counts", Types.LONG(), Types.LONG()))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        ts = ctx.timestamp()
        end = ts - ts % self.size + self.size
        wm = ctx.timer_service().current_watermark()
        if end - 1 <= wm:
            yield LATE_TAG, {**value, "ts": ts, "watermark": watermark(ctx)}
            return
        self.sums.put(end, (self.sums.get(end) or 0) + value["sum"])
        self.counts.put(end, (self.counts.get(end) or 0) + 1)
        ctx.timer_service().register_event_time_timer(end - 1)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        end = timestamp + 1
        total, count = self.sums.get(end), self.counts.get(end)
        self.sums.remove(end)
        self.counts.remove(end)
        yield {"group": ctx.get_current_key(), "start": end - self.size, "total": total, "inputs": count}


class SmallWindowFn(ProcessWindowFunction):
    """The same stage A with Flink's own tumbling event-time windows (the reference for the KPF)."""

    def __init__(self, groups: dict[str, str]) -> None:
        self.groups = groups

    def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterator[Any]:
        total = sum(e[2] for e in elements)
        yield {"group": self.groups[key], "user": key, "start": context.window().start, "sum": total}


class LargeWindowFn(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterator[Any]:
        items = list(elements)
        yield {
            "group": key,
            "start": context.window().start,
            "total": sum(e["sum"] for e in items),
            "inputs": len(items),
        }


# --- program 3: processing-time timers -----------------------------------------------------------
class ProcessingTimers(KeyedProcessFunction):
    def __init__(self, near: int, far: int) -> None:
        self.near = near
        self.far = far

    def open(self, runtime_context: Any) -> None:
        self.far_at = runtime_context.get_state(ValueStateDescriptor("far_at", Types.LONG()))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        now = ctx.timer_service().current_processing_time()
        if value[2]:
            ctx.timer_service().register_processing_time_timer(now + self.near)
        if ctx.get_current_key() == "far":
            self.far_at.update(now + self.far)
            ctx.timer_service().register_processing_time_timer(now + self.far)
            yield {"kind": "registered", "far_timer": now + self.far}

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        yield {
            "kind": "fired",
            "key": ctx.get_current_key(),
            "domain": ctx.time_domain().name.lower(),
            "timer": timestamp,
            "ctx_timestamp": ctx.timestamp(),
            "far": timestamp == self.far_at.value(),
        }


# --- program 4: late records ---------------------------------------------------------------------
class LateProbe(KeyedProcessFunction):
    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        wm = watermark(ctx)
        ts = ctx.timestamp()
        ctx.timer_service().register_event_time_timer(ts)
        yield {"kind": "element", "ts": ts, "watermark": wm, "late": wm is not None and ts <= wm}

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        yield {
            "kind": "timer",
            "timer": timestamp,
            "ctx_timestamp": ctx.timestamp(),
            "watermark": watermark(ctx),
        }


# --- the job --------------------------------------------------------------------------------------
def source(
    env: StreamExecutionEnvironment, name: str, records: list[Any], ts_index: int, bound_ms: int, paced: bool
) -> DataStream:
    stream = env.from_collection([tuple(r) for r in records])
    if paced:
        # The pacing map runs in the source's task; the watermark assigner in a task of its own
        # (mailbox thread), so its periodic watermark is emitted between two paced records.
        stream = stream.map(Pace(), output_type=PICKLED).name(f"{name}-pace").disable_chaining()
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(bound_ms)
    ).with_timestamp_assigner(TsAt(ts_index))
    return stream.assign_timestamps_and_watermarks(strategy)


def build(env: StreamExecutionEnvironment) -> DataStream:
    outputs: list[DataStream] = []

    def add(name: str, stream: DataStream) -> None:
        outputs.append(stream.process(Tag(name), output_type=Types.STRING()))

    counts = source(env, "counts", inputs.COUNTS, 1, inputs.BOUND_MS, paced=False)
    add(
        "counts",
        counts.key_by(lambda r: r[0], key_type=Types.STRING()).process(
            CountWithTimer(inputs.COUNT_TIMER_DELAY_MS), output_type=PICKLED
        ),
    )

    windows = source(env, "windows", inputs.WINDOWS, 1, inputs.BOUND_MS, paced=True)
    small = windows.key_by(lambda r: r[0], key_type=Types.STRING()).process(
        SmallWindowSum(inputs.SMALL_WINDOW_MS, inputs.GROUPS), output_type=PICKLED
    )
    large = small.key_by(lambda r: r["group"], key_type=Types.STRING()).process(
        LargeWindowSum(inputs.LARGE_WINDOW_MS), output_type=PICKLED
    )
    add("windows.small", small)
    add("windows.large", large)
    add("windows.late", large.get_side_output(LATE_TAG))

    builtin = source(env, "windows-builtin", inputs.WINDOWS, 1, inputs.BOUND_MS, paced=False)
    builtin_small = (
        builtin.key_by(lambda r: r[0], key_type=Types.STRING())
        .window(TumblingEventTimeWindows.of(Time.milliseconds(inputs.SMALL_WINDOW_MS)))
        .process(SmallWindowFn(inputs.GROUPS), output_type=PICKLED)
    )
    builtin_large = (
        builtin_small.key_by(lambda r: r["group"], key_type=Types.STRING())
        .window(TumblingEventTimeWindows.of(Time.milliseconds(inputs.LARGE_WINDOW_MS)))
        .process(LargeWindowFn(), output_type=PICKLED)
    )
    add("windows.builtin_small", builtin_small)
    add("windows.builtin_large", builtin_large)

    processing = source(env, "processing", inputs.PROCESSING, 1, inputs.BOUND_MS, paced=True)
    add(
        "processing",
        processing.key_by(lambda r: r[0], key_type=Types.STRING()).process(
            ProcessingTimers(inputs.NEAR_TIMER_MS, inputs.FAR_TIMER_MS), output_type=PICKLED
        ),
    )

    late = source(env, "late", inputs.LATE, 1, inputs.LATE_BOUND_MS, paced=True)
    add(
        "late",
        late.key_by(lambda r: r[0], key_type=Types.STRING()).process(LateProbe(), output_type=PICKLED),
    )

    first, *rest = outputs
    return first.union(*rest)


def main(out_path: str) -> None:
    config = Configuration()
    config.set_string("python.fn-execution.bundle.size", "1")  # record at a time through Python
    config.set_string("python.executable", sys.executable)
    config.set_string("parallelism.default", "1")
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(1)
    env.get_config().set_auto_watermark_interval(WATERMARK_INTERVAL_MS)
    merged = build(env)
    started = time.monotonic()
    programs: dict[str, list[dict[str, Any]]] = {}
    with merged.execute_and_collect("eventapp-differential") as results:
        for line in results:
            name, value, ts = json.loads(line)
            programs.setdefault(name, []).append({"value": value, "ts": ts})
    meta = {
        "flink_version": _flink_version(),
        "job_seconds": round(time.monotonic() - started, 1),
        # Wall clock (epoch ms) when the job had ended: compared with the far timer's time.
        "ended_at_ms": time.time_ns() // 1_000_000,
        "pace_s": PACE_S,
        "watermark_interval_ms": WATERMARK_INTERVAL_MS,
        "far_timer_ms": inputs.FAR_TIMER_MS,
    }
    Path(out_path).write_text(json.dumps({"programs": programs, "meta": meta}, indent=1, sort_keys=True))


def _flink_version() -> str:
    from importlib.metadata import version

    return version("apache-flink")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTPUT.json")
    main(sys.argv[1])
