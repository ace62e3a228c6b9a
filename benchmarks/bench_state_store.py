"""Per-operation cost of the state backends' store operations.

Run: ``.venv/bin/python benchmarks/bench_state_store.py [--keys 200000]``. Prints nanoseconds per
operation for each backend: put of a new key, put/get of an existing key, get of a missing key,
delete, a 100-entry prefix scan, first(), and a snapshot of the whole store.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from eventapp.state.store import KeyedStateStore, StateBackend
from eventapp.statebackends import MemoryStateBackend, RocksDBStateBackend


def timed(operations: int, run: Callable[[], None]) -> float:
    """Nanoseconds per operation of ``run``, which performs ``operations`` operations."""
    started = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - started) / operations


def bench(store: KeyedStateStore, keys: list[bytes], snapshot_dir: Path) -> dict[str, float]:
    value = b"v" * 16
    missing = [b"missing" + key for key in keys]
    put, get, delete = store.put, store.get, store.delete
    results: dict[str, float] = {}

    def put_all() -> None:
        for key in keys:
            put(key, value)

    def get_all() -> None:
        for key in keys:
            get(key)

    def get_missing() -> None:
        for key in missing:
            get(key)

    results["put (new key)"] = timed(len(keys), put_all)
    results["put (existing key)"] = timed(len(keys), put_all)
    results["get (existing key)"] = timed(len(keys), get_all)
    results["get (missing key)"] = timed(len(keys), get_missing)

    prefixes = [key[:16] for key in random.Random(1).sample(keys, 1000)]

    def scan_prefixes() -> None:
        for prefix in prefixes:
            for _ in store.scan(prefix):
                pass

    def first_prefixes() -> None:
        for prefix in prefixes:
            store.first(prefix)

    results["scan (100 entries)"] = timed(len(prefixes), scan_prefixes)
    results["first"] = timed(len(prefixes), first_prefixes)
    results["snapshot (whole store)"] = timed(1, lambda: store.snapshot(snapshot_dir))

    def delete_all() -> None:
        for key in keys:
            delete(key)

    results["delete"] = timed(len(keys), delete_all)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rng = random.Random(0)
    # 40-byte keys in groups of 100 sharing a 16-byte prefix (the scan and first() prefixes).
    keys = [b"sop\x00count\x00" + (i // 100).to_bytes(4, "big") + rng.randbytes(24) for i in range(args.keys)]
    rng.shuffle(keys)
    with tempfile.TemporaryDirectory(prefix="eventapp-bench-") as tmp:
        root = Path(tmp)
        backends: list[StateBackend] = [MemoryStateBackend(), RocksDBStateBackend(root / "rocksdb")]
        table: dict[str, dict[str, float]] = {}
        for backend in backends:
            snapshot_dir = root / f"snapshot-{backend.name}"
            snapshot_dir.mkdir()
            store = backend.open("bench-0")
            try:
                table[backend.name] = bench(store, keys, snapshot_dir)
            finally:
                store.close()
    names = list(table)
    print(f"{args.keys} keys of 40 bytes, 16-byte values; ns per operation")
    print(f"{'operation':<24}" + "".join(f"{name:>14}" for name in names))
    for operation in table[names[0]]:
        print(f"{operation:<24}" + "".join(f"{table[name][operation]:>14,.0f}" for name in names))


if __name__ == "__main__":
    main()
