"""RocksDB at scale: 2M keys with bounded memory, ordered timer scans, incremental snapshots.

The 2M-key test (marked ``slow``: ~15 s, and its RSS bound is a measurement that a loaded machine
can disturb) writes 1M state-shaped keys (40 bytes, 16-byte values) and 1M timer-shaped keys
(``b"t" + uid + 0x00 + domain + 8-byte big-endian timestamp + length-prefixed key``), all random, so
compression cannot hide the volume. Measured figures are printed (run with ``-s``) and recorded as
junit properties. The default run keeps the ordered scan over flushed and compacted files at 200k
timer keys; hard-linked snapshots after a small delta are tested in ``test_rocksdb_backend.py``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eventapp.statebackends import RocksDBStateBackend, RocksDBStateStore
from eventapp.statebackends.rocksdb import SNAPSHOT_DB

MiB = 1 << 20
KEYS = 1_000_000
BATCH = 100_000
STATE_PREFIX = b"sops\x00count\x00"  # 12 bytes + 28 random bytes = 40-byte state keys
TIMER_PREFIX = b"tops\x00e"
# A small memory budget, so that "bounded" is clearly smaller than the ~86 MiB of data written.
BLOCK_CACHE = 8 * MiB
WRITE_BUFFER = 4 * MiB
TOTAL_WRITE_BUFFERS = 8 * MiB
SLACK = 48 * MiB  # allocator fragmentation, table readers, Python objects of the test itself


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def sst_files(directory: Path) -> dict[str, os.stat_result]:
    return {p.name: p.stat() for p in directory.iterdir() if p.suffix == ".sst"}


def put_timer_keys(put: Callable[[bytes, bytes], None], rng: random.Random, n: int) -> list[bytes]:
    """Write ``n`` random timer-shaped keys; return them (in write order)."""
    blob = rng.randbytes(n * 24)
    keys = [
        TIMER_PREFIX + blob[offset : offset + 8] + b"\x00\x00\x00\x10" + blob[offset + 8 : offset + 24]
        for offset in range(0, len(blob), 24)
    ]
    for key in keys:
        put(key, b"")
    return keys


def test_timer_keys_scan_in_order_through_flushes_and_compactions(tmp_path: Path) -> None:
    """200k random timer keys with a 1 MiB write buffer: several flushes and compactions, and the
    scan still returns every key once, in order (first(), and a scan from a start key, too)."""
    backend = RocksDBStateBackend(tmp_path / "work", block_cache_bytes=MiB, write_buffer_bytes=MiB)
    store = backend.open("timers-0")
    try:
        keys = put_timer_keys(store.put, random.Random(7), 200_000)
        for i in range(0, len(keys), 2):  # fired timers: tombstones between the live keys
            store.delete(keys[i])
        live = sorted(keys[1::2])
        assert [key for key, _ in store.scan(TIMER_PREFIX)] == live
        assert store.first(TIMER_PREFIX) == (live[0], b"")
        middle = live[len(live) // 2]
        assert [key for key, _ in store.scan(TIMER_PREFIX, start=middle)] == live[len(live) // 2 :]
    finally:
        backend.close()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for RSS")
def test_two_million_keys_bounded_memory_ordered_timers_incremental_snapshots(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    backend = RocksDBStateBackend(
        tmp_path / "work",
        block_cache_bytes=BLOCK_CACHE,
        write_buffer_bytes=WRITE_BUFFER,
        total_write_buffer_bytes=TOTAL_WRITE_BUFFERS,
        changelog_snapshots=0,  # what is checked here is the sharing of full snapshots' SST files
    )
    store = backend.open("orders-0")
    assert isinstance(store, RocksDBStateStore)
    rng = random.Random(42)
    samples: dict[bytes, bytes] = {}
    timer_min = timer_max = b""
    written = 0
    rss_after_first_batch = 0
    put = store.put
    curve: list[int] = []

    started = time.perf_counter()
    for batch in range(KEYS // BATCH):
        blob = rng.randbytes(BATCH * 44)
        for offset in range(0, len(blob), 44):
            put(STATE_PREFIX + blob[offset : offset + 28], blob[offset + 28 : offset + 44])
        samples[STATE_PREFIX + blob[:28]] = blob[28:44]
        written += BATCH * (40 + 16)
        curve.append(rss_bytes() // MiB)
        if batch == 0:
            rss_after_first_batch = rss_bytes()
    for _ in range(KEYS // BATCH):
        keys = put_timer_keys(put, rng, BATCH)
        lowest, highest = min(keys), max(keys)
        timer_min = lowest if not timer_min else min(timer_min, lowest)
        timer_max = max(timer_max, highest)
        samples[keys[BATCH // 2]] = b""
        written += BATCH * len(keys[0])
        curve.append(rss_bytes() // MiB)
    write_seconds = time.perf_counter() - started
    rss_after_writes = rss_bytes()

    for key, value in samples.items():
        assert store.get(key) == value

    started = time.perf_counter()
    count = 0
    previous = b""
    first = b""
    for key, _ in store.scan(TIMER_PREFIX):
        assert key > previous
        previous = key
        if not count:
            first = key
        count += 1
    scan_seconds = time.perf_counter() - started
    rss_after_scan = rss_bytes()
    assert count == KEYS
    assert first == timer_min
    assert previous == timer_max
    assert store.first(TIMER_PREFIX) == (timer_min, b"")
    assert list(store.scan(TIMER_PREFIX, start=timer_max)) == [(timer_max, b"")]

    # Incremental snapshots: the second hard-links every SST file of the first that is still part of
    # the database. Compaction may run between the two snapshots and replace files (then less is
    # shared: the shared fraction is a figure, not an assertion); the checks hold whatever it does.
    first_snapshot, second_snapshot = tmp_path / "snapshot-1", tmp_path / "snapshot-2"
    first_snapshot.mkdir()
    second_snapshot.mkdir()
    started = time.perf_counter()
    store.snapshot(first_snapshot)
    first_snapshot_seconds = time.perf_counter() - started
    for i in range(1000):
        put(b"sops\x00late\x00%04d" % i, b"x")
    started = time.perf_counter()
    store.snapshot(second_snapshot)
    second_snapshot_seconds = time.perf_counter() - started
    first_files = sst_files(first_snapshot / SNAPSHOT_DB)
    second_files = sst_files(second_snapshot / SNAPSHOT_DB)
    # A file of the first snapshot that is still live now was live during the second snapshot
    # (RocksDB never makes a file live again, nor reuses a file number): it must be there.
    live_now = {Path(f["name"]).name for f in store._db.live_files()}
    still_live = set(first_files) & live_now
    assert still_live <= set(second_files), sorted(still_live - set(second_files))
    shared = [name for name in first_files if name in second_files]
    for name in shared:
        assert first_files[name].st_ino == second_files[name].st_ino, name
        assert second_files[name].st_nlink >= 2
    assert set(second_files) - set(first_files), "the delta was flushed into a new file"
    shared_bytes = sum(second_files[name].st_size for name in shared)
    total_bytes = sum(stat.st_size for stat in second_files.values())

    store.close()
    started = time.perf_counter()
    restored = RocksDBStateBackend(tmp_path / "restore-work").open("orders-0", restore_from=second_snapshot)
    restore_seconds = time.perf_counter() - started
    try:
        assert restored.get(b"sops\x00late\x000999") == b"x"
        assert restored.first(TIMER_PREFIX) == (timer_min, b"")
        for key, value in list(samples.items())[:50]:
            assert restored.get(key) == value
    finally:
        restored.close()
        backend.close()

    growth = rss_after_writes - rss_after_first_batch
    growth_with_scan = rss_after_scan - rss_after_first_batch
    figures = {
        "data_written_mib": written / MiB,
        "rss_after_100k_mib": rss_after_first_batch / MiB,
        "rss_after_2m_mib": rss_after_writes / MiB,
        "rss_after_scan_mib": rss_after_scan / MiB,
        "rss_growth_mib": growth / MiB,
        "rss_growth_with_scan_mib": growth_with_scan / MiB,
        "write_2m_seconds": write_seconds,
        "scan_1m_timers_seconds": scan_seconds,
        "first_snapshot_seconds": first_snapshot_seconds,
        "second_snapshot_seconds": second_snapshot_seconds,
        "restore_seconds": restore_seconds,
        "snapshot_sst_mib": total_bytes / MiB,
        "shared_sst_fraction": shared_bytes / total_bytes,
    }
    for name, figure in figures.items():
        record_property(name, round(figure, 3))
    record_property("rss_mib_per_100k_keys", curve)
    print("\nrocksdb scale:", ", ".join(f"{name}={figure:.2f}" for name, figure in figures.items()))
    print("rocksdb scale: RSS (MiB) after each 100k keys:", curve)

    # Memory must not be proportional to the data: growth stays within the configured budget plus
    # slack, well below the volume written. Measured: 33-45 MiB, mostly freed-but-retained glibc heap
    # of RocksDB's flush/compaction threads (malloc_trim returns ~30 MiB); it plateaus (~45 MiB at
    # 6M keys / 200 MiB of data).
    budget = BLOCK_CACHE + TOTAL_WRITE_BUFFERS + SLACK
    assert budget < 0.8 * written
    assert growth < budget, figures
    assert growth_with_scan < budget, figures
