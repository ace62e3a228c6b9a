"""Savepoint create and restore times for many keys, against a full checkpoint of the same state.

    .venv/bin/python -m benchmarks.bench_savepoint [--keys 1000000] [--splits 8] [--rescale-to 12]

A keyed running count (one ValueState per key, RocksDB) over ``--keys`` distinct keys in a
CollectionSource of ``--splits`` splits (murmur2 of the key, as Kafka's default partitioner) is
loaded through the job; then, timed:

1. the first (full) checkpoint of all splits after the load (``runner.checkpoint()``);
2. ``create_savepoint`` from those checkpoints, canonical and native (``--type native``);
3. restore from each: a new runner's ``open()`` with ``--from-savepoint`` on the same splits, and
   on ``--rescale-to`` splits (every entry re-sharded by key).

Each restore is checked (every key's entry is in the restored stores). Nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from eventapp import (
    CheckpointConfig,
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    RestoreRequest,
    Savepoint,
    ValueStateDescriptor,
    create_savepoint,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.partitioning import murmur2
from eventapp.statebackends import RocksDBStateBackend


class Count(KeyedProcessFunction[str, str, str]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: str, ctx: Context, out: Collector[str]) -> None:
        state = ctx.get_state(self.count)
        state.update((state.value() or 0) + 1)


def build(keys: list[str], splits: int, root: Path, state: str, checkpoints: str = "checkpoints") -> Job:
    # Unbounded: the end of input takes no final checkpoint, so the timed one is the first (full) one.
    source = CollectionSource(
        keys, splits=splits, partitioner=lambda k: murmur2(k.encode()) % splits, bounded=False
    )
    job = Job(
        "bench-savepoint",
        JobConfig(
            state_backend=RocksDBStateBackend(root / state),
            checkpoint=CheckpointConfig(storage=root / checkpoints, interval_ms=3_600_000),
        ),
    )
    job.from_source(source).key_by(lambda k: k, partitioned_by_source=True).process(
        Count(), uid="count"
    ).sink_to(CollectionSink())
    return job


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--splits", type=int, default=8)
    parser.add_argument("--rescale-to", type=int, default=12)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="eventapp-bench-savepoint-"))
    try:
        keys = [f"u{i:07d}" for i in range(args.keys)]
        print(f"load average before: {os.getloadavg()}")
        runner = build(keys, args.splits, root, "rocks-load").runner()
        started = time.perf_counter()
        runner.run_until_idle()
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        runner.checkpoint()
        checkpoint_s = time.perf_counter() - started
        runner.close()
        created = {}
        for kind in ("canonical", "native"):
            started = time.perf_counter()
            created[kind] = create_savepoint(
                CheckpointConfig(storage=root / "checkpoints").resolved_storage(),
                "bench-savepoint",
                [f"collection-{i}" for i in range(args.splits)],
                root / f"savepoints-{kind}",
                max_parallelism=128,
                partitioner="murmur2",
                native=kind == "native",
            )
            create_s = time.perf_counter() - started
            size = sum(s.size for s in created[kind].metadata.splits.values())
            if kind == "canonical":
                print(f"keys {args.keys:,}, {args.splits} splits: loaded in {load_s:.1f} s")
                print(f"1. full checkpoint (first after the load)   {checkpoint_s * 1000:8.0f} ms")
            print(
                f"2. savepoint create, {kind:9}               {create_s * 1000:8.0f} ms "
                f"({create_s / checkpoint_s:.1f} x the checkpoint; {size / 2**20:.1f} MiB)"
            )
        for kind in ("canonical", "native"):
            for splits, label in ((args.splits, "same splits"), (args.rescale_to, "re-sharded")):
                shutil.rmtree(root / "checkpoints-restore", ignore_errors=True)
                job = build(keys, splits, root, f"rocks-{kind}-{splits}", "checkpoints-restore")
                restored = job.runner(restore=RestoreRequest(from_savepoint=created[kind].path))
                started = time.perf_counter()
                restored.open()
                restore_s = time.perf_counter() - started
                held = sum(sum(1 for _ in task.raw_store.scan(b"s")) for task in restored._tasks.values())
                restored.close()
                shutil.rmtree(root / f"rocks-{kind}-{splits}", ignore_errors=True)
                assert held == args.keys, f"restored {held} keys, expected {args.keys}"
                print(f"3. restore from {kind:9}, {splits:2} splits ({label:11}) {restore_s * 1000:8.0f} ms")
        created_canonical = created["canonical"]
        check = Savepoint.open(created_canonical.path)
        assert check.metadata.operators["count"].keys == args.keys
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
