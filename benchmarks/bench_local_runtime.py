"""Per-record cost of the local runtime: a keyed running count in a KeyedProcessFunction.

    .venv/bin/python -m benchmarks.bench_local_runtime [--records 200000] [--keys 10000]

For each state backend it prints records/s and microseconds per record for the job (source ->
key_by -> process with ValueState -> sink), next to a plain Python loop doing the same work on the
same store (the floor: what the framework adds is the difference). A benchmark, not a test: it
asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventapp import (
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    RuntimeContext,
    ValueStateDescriptor,
    configure_logging,
)
from eventapp.connectors.collection import CollectionSource
from eventapp.serialization import MsgpackSerializer
from eventapp.sink import SinkContext
from eventapp.state.store import StateBackend
from eventapp.statebackends import MemoryStateBackend, RocksDBStateBackend


class RunningCount(KeyedProcessFunction[str, tuple[str, int], tuple[str, int]]):
    count = ValueStateDescriptor[int]("count")

    def open(self, ctx: RuntimeContext) -> None:
        self.state = ctx.get_state(self.count)

    def process_element(self, value: tuple[str, int], ctx: Context, out: Collector[tuple[str, int]]) -> None:
        n = (self.state.value() or 0) + 1
        self.state.update(n)
        out.collect((value[0], n))


class CountingSink:
    """Discards values but counts them (a sink that costs as little as possible)."""

    name = "count"

    def __init__(self) -> None:
        self.n = 0

    def create_writer(self, context: SinkContext) -> CountingSink:
        return self

    def write(self, value: Any, timestamp: int | None) -> None:
        self.n += 1

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def records(n: int, keys: int) -> list[tuple[str, int]]:
    return [(f"key-{i % keys}", i) for i in range(n)]


def run_job(backend: StateBackend, data: list[tuple[str, int]]) -> float:
    sink = CountingSink()
    job = Job("bench", JobConfig(state_backend=backend, max_batch_records=1_000))
    stream = job.from_source(CollectionSource(data)).key_by(lambda r: r[0])
    stream.process(RunningCount(), uid="count").sink_to(sink)
    gc.collect()
    start = time.perf_counter()
    job.run()
    elapsed = time.perf_counter() - start
    assert sink.n == len(data), (sink.n, len(data))
    return elapsed


def run_raw(backend: StateBackend, data: list[tuple[str, int]]) -> float:
    """The same work without the framework: encode key, get, decode, add, encode, put, 'emit'."""
    store = backend.open("raw-0")
    ser = MsgpackSerializer[int]()
    outputs: list[tuple[str, int]] = []
    gc.collect()
    start = time.perf_counter()
    for key, _ in data:
        k = b"s" + key.encode()
        raw = store.get(k)
        n = (0 if raw is None else ser.loads(raw)) + 1
        store.put(k, ser.dumps(n))
        outputs.append((key, n))
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args()
    configure_logging(level="WARNING")
    data = records(args.records, args.keys)
    tmp = Path(tempfile.mkdtemp(prefix="eventapp-bench-"))
    backends: dict[str, Callable[[str], StateBackend]] = {
        "memory": lambda _: MemoryStateBackend(),
        "rocksdb": lambda tag: RocksDBStateBackend(tmp / tag),
    }
    print(f"local runtime, keyed running count: {args.records:,} records over {args.keys:,} keys")
    print(f"{'backend':<9} {'what':<22} {'records/s':>12} {'us/record':>10}")
    for name, make in backends.items():
        for what, fn in (("eventapp job", run_job), ("raw loop, same store", run_raw)):
            best = min(fn(make(f"{name}-{what[:3]}-{i}"), data) for i in range(2))
            print(f"{name:<9} {what:<22} {args.records / best:>12,.0f} {best / args.records * 1e6:>10.2f}")


if __name__ == "__main__":
    main()
