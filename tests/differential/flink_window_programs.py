"""The window programs on Apache Flink (PyFlink 2.3), all in ONE Flink job (parallelism 1).

Run with the Flink virtualenv's python (``bash scripts/install-flink.sh`` prints it), its ``bin``
first on PATH (Flink starts its Python workers as ``python``)::

    PATH=.venv-flink/bin:$PATH .venv-flink/bin/python tests/differential/flink_window_programs.py out.json

It writes ``{"meta": {...}, "programs": {name: [{"ts": ..., "value": {...}}, ...]}}``: every record
each program's pipeline produced, in arrival order, with the Flink timestamp the record carried
(``None`` when it had none), captured by a ProcessFunction after the window (``ctx.timestamp()``).
Inputs: ``window_inputs.py``; recorded results: ``flink_window_expected.py``.

Like ``flink_programs.py`` this imports only PyFlink, the standard library and the inputs module;
the functions and classes below are pickled by value into Flink's Python workers (this file runs as
``__main__``), so they must not refer to other modules of this repository.

Note: PyFlink's DataStream windows (assigners, triggers, the window operator itself) are Python
code run in the Python worker (``pyflink/fn_execution/datastream/window/window_operator.py``), a
port of Java's WindowOperator; the window assigners take ``pyflink.common.Time`` (``Duration`` has no
``to_milliseconds()`` and is rejected with AttributeError in 2.3.0).
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
from pyflink.datastream import DataStream, OutputTag, ProcessFunction, StreamExecutionEnvironment
from pyflink.datastream.functions import (
    AggregateFunction,
    MapFunction,
    ProcessWindowFunction,
    ReduceFunction,
)
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.datastream.window import (
    ContinuousEventTimeTrigger,
    CountTrigger,
    EventTimeSessionWindows,
    GlobalWindows,
    PurgingTrigger,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.differential import window_inputs as wi  # after sys.path names the repository

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1
# As in flink_programs.py: records of paced pipelines are PACE_S apart, far longer than the
# watermark interval, so the watermark that follows a record reaches the window operator first.
PACE_S = 0.4
WATERMARK_INTERVAL_MS = 10

PICKLED = Types.PICKLED_BYTE_ARRAY()
LATE_TAG = OutputTag("late", PICKLED)


def _wm(wm: Any) -> int | None:
    return None if wm is None or wm == LONG_MIN else int(wm)


class TsAt(TimestampAssigner):
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[1])


class Pace(MapFunction):
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


class WatermarkProbe(ProcessFunction):
    """For the paced programs, between the watermark assigner and the window: passes each record on
    as (key, ts, value, watermark it met) -- the window operator, downstream on the same channel,
    meets the same watermark before that record -- and, to a second output, reports it."""

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterator[Any]:
        key, ts, val = value
        yield (key, ts, val, _wm(ctx.timer_service().current_watermark()))


class ProbeRow(ProcessFunction):
    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterator[Any]:
        key, ts, val, wm = value
        yield {"key": key, "ts": ts, "value": val, "watermark": wm}


# --- tumbling_reduce ------------------------------------------------------------------------------
class SumReduce(ReduceFunction):
    def reduce(self, a: Any, b: Any) -> Any:
        return (a[0], max(a[1], b[1]), a[2] + b[2])


class TumblingFn(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterator[Any]:
        (reduced,) = list(elements)
        w = context.window()
        yield {
            "key": key,
            "start": w.start,
            "end": w.end,
            "max_timestamp": w.max_timestamp(),
            "sum": reduced[2],
            "watermark": _wm(context.current_watermark()),  # informational (timing-dependent)
        }


# --- sliding_aggregate ----------------------------------------------------------------------------
class CountSum(AggregateFunction):
    def create_accumulator(self) -> Any:
        return (0, 0)

    def add(self, value: Any, acc: Any) -> Any:
        return (acc[0] + 1, acc[1] + value[2])

    def get_result(self, acc: Any) -> Any:
        return acc

    def merge(self, a: Any, b: Any) -> Any:
        return (a[0] + b[0], a[1] + b[1])


class SlidingFn(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterator[Any]:
        ((count, total),) = list(elements)
        w = context.window()
        yield {
            "key": key,
            "start": w.start,
            "end": w.end,
            "count": count,
            "sum": total,
            "watermark": _wm(context.current_watermark()),
        }


# --- session_process ------------------------------------------------------------------------------
class SessionFn(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterator[Any]:
        items = list(elements)
        w = context.window()
        yield {
            "key": key,
            "start": w.start,
            "end": w.end,
            "values": sorted(e[2] for e in items),
            "timestamps": sorted(e[1] for e in items),
            "count": len(items),
            "watermark": _wm(context.current_watermark()),
        }


# --- tumbling_offset ------------------------------------------------------------------------------
class OffsetFn(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterator[Any]:
        (reduced,) = list(elements)
        w = context.window()
        yield {
            "key": key,
            "start": w.start,
            "end": w.end,
            "sum": reduced[2],
            "watermark": _wm(context.current_watermark()),
        }


# --- lateness (paced) -----------------------------------------------------------------------------
FIRING = ValueStateDescriptor("firing", Types.LONG())


class LatenessFn(ProcessWindowFunction):
    """Elements are (key, ts, value, watermark met); counts its firings per window in per-window
    state (context.window_state())."""

    def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterator[Any]:
        items = list(elements)
        state = context.window_state().get_state(FIRING)
        firing = (state.value() or 0) + 1
        state.update(firing)
        w = context.window()
        yield {
            "key": key,
            "start": w.start,
            "end": w.end,
            "count": len(items),
            "sum": sum(e[2] for e in items),
            "timestamps": sorted(e[1] for e in items),
            "firing": firing,
            "watermark": _wm(context.current_watermark()),
        }

    def clear(self, context: Any) -> None:
        context.window_state().get_state(FIRING).clear()


class LateRow(ProcessFunction):
    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterator[Any]:
        key, ts, val, _ = value
        yield {"kind": "late", "key": key, "ts": ts, "value": val}


# --- continuous_trigger (paced) -------------------------------------------------------------------
class ContinuousFn(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterator[Any]:
        items = list(elements)
        w = context.window()
        yield {
            "key": key,
            "start": w.start,
            "end": w.end,
            "sum": sum(e[2] for e in items),
            "timestamps": sorted(e[1] for e in items),
            "watermark": _wm(context.current_watermark()),
        }


# --- count windows --------------------------------------------------------------------------------
class CountFn(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterator[Any]:
        items = list(elements)
        w = context.window()
        yield {
            "key": key,
            "window": repr(w),
            "count": len(items),
            "sum": sum(e[2] for e in items),
            "values": [e[2] for e in items],  # in the order the window state holds them
        }


# --- the job --------------------------------------------------------------------------------------
def source(
    env: StreamExecutionEnvironment, name: str, records: list[Any], bound_ms: int, paced: bool
) -> DataStream:
    stream = env.from_collection([tuple(r) for r in records])
    if paced:
        # The pacing map runs in the source's task; the watermark assigner in a task of its own, so
        # its periodic watermark is emitted between two paced records (as in flink_programs.py).
        stream = stream.map(Pace(), output_type=PICKLED).name(f"{name}-pace").disable_chaining()
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(bound_ms)
    ).with_timestamp_assigner(TsAt())
    return stream.assign_timestamps_and_watermarks(strategy)


def by_key(stream: DataStream) -> Any:
    return stream.key_by(lambda r: r[0], key_type=Types.STRING())


def ms(n: int) -> Time:
    return Time.milliseconds(n)


def build(env: StreamExecutionEnvironment) -> DataStream:
    outputs: list[DataStream] = []

    def add(name: str, stream: DataStream) -> None:
        outputs.append(stream.process(Tag(name), output_type=Types.STRING()))

    s = source(env, "tumbling", wi.TUMBLING, wi.BOUND_MS, paced=False)
    add(
        "tumbling_reduce",
        by_key(s)
        .window(TumblingEventTimeWindows.of(ms(wi.TUMBLING_SIZE_MS)))
        .reduce(SumReduce(), window_function=TumblingFn(), output_type=PICKLED),
    )

    s = source(env, "sliding", wi.SLIDING, wi.BOUND_MS, paced=False)
    add(
        "sliding_aggregate",
        by_key(s)
        .window(SlidingEventTimeWindows.of(ms(wi.SLIDING_SIZE_MS), ms(wi.SLIDING_SLIDE_MS)))
        .aggregate(CountSum(), window_function=SlidingFn(), output_type=PICKLED),
    )

    s = source(env, "session", wi.SESSION, wi.BOUND_MS, paced=False)
    add(
        "session_process",
        by_key(s)
        .window(EventTimeSessionWindows.with_gap(ms(wi.SESSION_GAP_MS)))
        .process(SessionFn(), output_type=PICKLED),
    )

    s = source(env, "offset", wi.OFFSET, wi.BOUND_MS, paced=False)
    add(
        "tumbling_offset",
        by_key(s)
        .window(TumblingEventTimeWindows.of(ms(wi.OFFSET_SIZE_MS), ms(wi.OFFSET_MS)))
        .reduce(SumReduce(), window_function=OffsetFn(), output_type=PICKLED),
    )

    s = source(env, "count", wi.COUNT, wi.BOUND_MS, paced=False)
    add(
        "count_trigger",
        by_key(s)
        .window(GlobalWindows.create())
        .trigger(PurgingTrigger.of(CountTrigger.of(wi.COUNT_SIZE)))
        .process(CountFn(), output_type=PICKLED),
    )
    add("count_window", by_key(s).count_window(wi.COUNT_SIZE).process(CountFn(), output_type=PICKLED))
    add(
        "count_window_sliding",
        by_key(s).count_window(wi.COUNT_SIZE, wi.COUNT_SLIDE).process(CountFn(), output_type=PICKLED),
    )

    s = source(env, "lateness", wi.LATENESS, wi.PACED_BOUND_MS, paced=True)
    probed = s.process(WatermarkProbe(), output_type=PICKLED)
    add("lateness.elements", probed.process(ProbeRow(), output_type=PICKLED))
    late_main = (
        by_key(probed)
        .window(TumblingEventTimeWindows.of(ms(wi.LATENESS_SIZE_MS)))
        .allowed_lateness(wi.ALLOWED_LATENESS_MS)
        .side_output_late_data(LATE_TAG)
        .process(LatenessFn(), output_type=PICKLED)
    )
    add("lateness", late_main)
    add("lateness.late", late_main.get_side_output(LATE_TAG).process(LateRow(), output_type=PICKLED))

    s = source(env, "continuous", wi.CONTINUOUS, wi.PACED_BOUND_MS, paced=True)
    probed = s.process(WatermarkProbe(), output_type=PICKLED)
    add("continuous_trigger.elements", probed.process(ProbeRow(), output_type=PICKLED))
    add(
        "continuous_trigger",
        by_key(probed)
        .window(TumblingEventTimeWindows.of(ms(wi.CONTINUOUS_SIZE_MS)))
        .trigger(ContinuousEventTimeTrigger.of(ms(wi.CONTINUOUS_INTERVAL_MS)))
        .process(ContinuousFn(), output_type=PICKLED),
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
    with merged.execute_and_collect("eventapp-differential-windows") as results:
        for line in results:
            name, value, ts = json.loads(line)
            programs.setdefault(name, []).append({"ts": ts, "value": value})
    meta = {
        "flink_version": _flink_version(),
        "job_seconds": round(time.monotonic() - started, 1),
        "pace_s": PACE_S,
        "watermark_interval_ms": WATERMARK_INTERVAL_MS,
        "bound_ms": wi.BOUND_MS,
        "paced_bound_ms": wi.PACED_BOUND_MS,
    }
    Path(out_path).write_text(json.dumps({"meta": meta, "programs": programs}, indent=1, sort_keys=True))


def _flink_version() -> str:
    from importlib.metadata import version

    return version("apache-flink")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTPUT.json")
    main(sys.argv[1])
