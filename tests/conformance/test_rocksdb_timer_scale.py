"""Timers at scale through the real operator on RocksDB: registered via the TimerService, fired in
timestamp order, with process memory that does not grow with the number of pending timers.

The 1M-timer run with its memory bound is marked ``slow`` (~35 s, and RSS is a measurement that a
loaded machine can disturb); the default run fires 20k timers through the same path."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eventapp import Collector, Context, KeyedProcessFunction, OnTimerContext
from eventapp.statebackends import RocksDBStateBackend
from eventapp.testing import KeyedProcessFunctionHarness
from tests.conformance.test_rocksdb_scale import MiB, rss_bytes


class ManyTimers(KeyedProcessFunction[int, int, int]):
    """Each element (a key) registers one event-time timer at a pseudo-random timestamp."""

    def process_element(self, value: int, ctx: Context, out: Collector[int]) -> None:
        ctx.timer_service.register_event_time_timer((value * 7_919) % 1_000_003)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[int]) -> None:
        out.collect(timestamp)


def run_timers(
    tmp_path: Path, n: int, record: Callable[[str, object], None], *, check_memory: bool = True
) -> None:
    backend = RocksDBStateBackend(
        tmp_path, block_cache_bytes=8 * MiB, write_buffer_bytes=4 * MiB, total_write_buffer_bytes=8 * MiB
    )
    harness = KeyedProcessFunctionHarness(ManyTimers(), lambda v: v, state_backend=backend)
    first_tenth = n // 10
    began = time.perf_counter()
    for key in range(first_tenth):
        harness.process_element(key)
    rss_after_tenth = rss_bytes()
    for key in range(first_tenth, n):
        harness.process_element(key)
    registered_s = time.perf_counter() - began
    rss_registered = rss_bytes()
    growth = rss_registered - rss_after_tenth

    fired_at: list[int] = []
    harness.output_records.clear()
    began = time.perf_counter()
    for watermark in range(100_000, 1_100_001, 100_000):  # timestamps reach 1_000_002
        harness.process_watermark(watermark)
        fired_at.extend(harness.outputs)
        harness.output_records.clear()
    fired_s = time.perf_counter() - began
    harness.close()

    figures = {
        "timers": n,
        "register_us_per_timer": round(registered_s / n * 1e6, 2),
        "fire_us_per_timer": round(fired_s / n * 1e6, 2),
        "rss_growth_mib": round(growth / MiB, 1),
    }
    print(f"timer scale: {figures}")
    for k, v in figures.items():
        record(k, v)
    assert len(fired_at) == n, "every timer fires exactly once"
    assert fired_at == sorted(fired_at), "in timestamp order"
    # The timers (~22 bytes of key each, ~20 MB for 1 M) live in RocksDB, not in Python objects (which
    # would take well over 100 MB): memory stays flat from a tenth of the timers to all of them.
    if check_memory:
        assert growth < 24 * MiB, (
            f"RSS grew by {growth / MiB:.1f} MiB while registering {n - first_tenth} timers"
        )


def test_20k_timers_fire_in_order(tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    run_timers(tmp_path, 20_000, record_property, check_memory=False)


@pytest.mark.slow
def test_1m_timers_fire_in_order_with_flat_memory(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    run_timers(tmp_path, 1_000_000, record_property)
