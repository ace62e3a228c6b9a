"""Windowed count throughput: ``eventapp.windows`` against the same window hand-built in a
``KeyedProcessFunction`` (issue 10: within 20 %).

    .venv/bin/python -m benchmarks.bench_windows [--records 300000] [--keys 1000] [--rounds 3]

Both count records per key in 1 s tumbling event-time windows (``--records`` records, ``--keys``
keys, 100 records per ms of event time, so ~``records / 100_000`` windows per key), RocksDB state,
in-process on the local runtime (no Kafka, no checkpoints: only the operators differ). The rounds
alternate which runs first; the ratio is taken inside each round. Every run's output is checked
(same windows, same counts, the sum of counts = the records). Nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import structlog

from eventapp import (
    AggregateFunction,
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    OnTimerContext,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.statebackends import RocksDBStateBackend
from eventapp.windows import TumblingEventTimeWindows

SIZE_MS = 1_000
Record = tuple[str, int]


class Count(AggregateFunction[Record, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Record, accumulator: int) -> int:
        return accumulator + 1

    def get_result(self, accumulator: int) -> int:
        return accumulator

    def merge(self, first: int, second: int) -> int:
        return first + second


class HandBuiltCount(KeyedProcessFunction[str, Record, int]):
    """A tumbling count as one would write it without windows: a ValueState per window end (named by
    it), a timer at the end, dropping late records."""

    def process_element(self, value: Record, ctx: Context, out: Collector[int]) -> None:
        ts = value[1]
        end = ts - ts % SIZE_MS + SIZE_MS - 1
        if end <= ctx.timer_service.current_watermark():
            return
        state = ctx.get_state(ValueStateDescriptor[int](f"w{end}", default=0))
        state.update((state.value() or 0) + 1)
        ctx.timer_service.register_event_time_timer(end)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[int]) -> None:
        state = ctx.get_state(ValueStateDescriptor[int](f"w{timestamp}", default=0))
        out.collect(state.value() or 0)
        state.clear()


def run(kind: str, records: list[Record], root: Path) -> tuple[float, list[tuple[int, int | None]]]:
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r[1])
    job = Job(f"bench-windows-{kind}", JobConfig(state_backend=RocksDBStateBackend(root / kind)))
    keyed = job.from_source(CollectionSource(records), strategy).key_by(lambda r: r[0])
    sink: CollectionSink[int] = CollectionSink()
    if kind == "windows":
        keyed.window(TumblingEventTimeWindows.of(SIZE_MS)).aggregate(Count(), uid="count").sink_to(sink)
    else:
        keyed.process(HandBuiltCount(), uid="count").sink_to(sink)
    started = time.perf_counter()
    job.run()
    elapsed = time.perf_counter() - started
    shutil.rmtree(root / kind, ignore_errors=True)
    return len(records) / elapsed, sink.records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    records: list[Record] = [(f"k{i % args.keys}", i // 100) for i in range(args.records)]
    root = Path(tempfile.mkdtemp(prefix="eventapp-bench-windows-"))
    print(f"load average before: {os.getloadavg()}")
    print(f"{args.records:,} records, {args.keys:,} keys, {SIZE_MS} ms tumbling windows, RocksDB")
    print("round  hand-built rec/s  windows rec/s  ratio")
    ratios = []
    try:
        for round_number in range(1, args.rounds + 1):
            order = ("hand", "windows") if round_number % 2 else ("windows", "hand")
            rates: dict[str, float] = {}
            outputs: dict[str, Counter[tuple[int, int | None]]] = {}
            for kind in order:
                rates[kind], out = run(kind, records, root)
                outputs[kind] = Counter(out)
            assert outputs["hand"] == outputs["windows"], "the two jobs emitted different windows"
            assert sum(count for count, _ in outputs["windows"].elements()) == args.records
            ratio = rates["windows"] / rates["hand"]
            ratios.append(ratio)
            print(f"{round_number:5}  {rates['hand']:16,.0f}  {rates['windows']:13,.0f}  {ratio:5.2f}")
        print(f"median ratio windows / hand-built: {statistics.median(ratios):.2f}")
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
