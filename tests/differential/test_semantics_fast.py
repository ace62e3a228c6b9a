"""eventapp alone against Flink's semantics: the differential programs with the outputs that
Apache Flink 2.3 printed for them hard-coded (``flink_expected.py`` quotes that run). Fast: no
Flink here; ``test_flink_differential.py`` (slow) runs Flink itself and checks those expectations.

Programs 2 and 3 failed on the runtime before its v2 core (issue 7): stage B of windows-of-windows
saw stage A's timer outputs as late, and ``ctx.timestamp`` in a processing-time timer was ``None``.
"""

from __future__ import annotations

import pytest

from tests.differential import eventapp_programs, flink_expected
from tests.differential.compare import assert_same, per_key, processing_rows, project


@pytest.mark.parametrize("max_batch_records", [1, 1_000])
def test_event_time_timers_count_as_in_flink(max_batch_records: int) -> None:
    """Program 1: one timer per (key, ts + 10) however often registered, fired in timestamp order
    with the key's records up to the timer, ctx.timestamp and the output's timestamp the timer's;
    timers left at the end of the bounded input fire."""
    fields = flink_expected.COUNTS_FIELDS
    out = eventapp_programs.run_counts(max_batch_records)["counts"]
    assert_same(project(flink_expected.COUNTS, fields), project(out, fields), "key", "counts")


@pytest.mark.parametrize("max_batch_records", [1, 1_000])
def test_windows_of_windows_as_in_flink(max_batch_records: int) -> None:
    """Program 2: stage B aggregates all of stage A's timer outputs; none is late.

    On the runtime before issue 7: with one record per batch every B window misses the A window
    that ends with it (A's output at 29, 59 and 79 is late at B): totals 36, 300, 45, 400, 7, 500
    instead of 70, 600, 101, 400, 67, 500. With one batch for the whole input (watermark 69, then
    +inf) B emits only (g1, 60, 7) and (g2, 60, 500); 15 of A's 17 outputs are late.
    """
    out = eventapp_programs.run_windows(max_batch_records)
    fields_small = ("group", "user", "start", "sum")
    fields_large = ("group", "start", "total", "inputs")
    assert_same(
        project(flink_expected.WINDOWS_SMALL, fields_small),
        project(out["windows.small"], fields_small),
        "user",
        "stage A (per-user 10 ms windows)",
    )
    assert_same(
        project(flink_expected.WINDOWS_LARGE, fields_large),
        project(out["windows.large"], fields_large),
        "group",
        "stage B (per-group 30 ms windows over stage A's results)",
    )
    assert out["windows.late"] == flink_expected.WINDOWS_LATE, "stage A's results arrived late at stage B"


def test_processing_time_timer_context_timestamp_is_the_timer() -> None:
    """Program 3: ctx.timestamp in on_timer of a processing-time timer is the timer's timestamp;
    the timer's outputs carry no timestamp (Java's eraseTimestamp; PyFlink differs, see
    flink_expected.PROCESSING); a timer still pending at the end of the input never fires."""
    out = eventapp_programs.run_processing()["processing"]
    fired = [r for r in out if r["value"]["kind"] == "fired"]
    seen = [(r["value"]["key"], r["value"]["timer"], r["value"]["ctx_timestamp"]) for r in fired]
    assert all(timer == ctx_ts for _, timer, ctx_ts in seen), (
        f"ctx.timestamp in on_timer of processing-time timers is not the timer's timestamp; "
        f"(key, timer, ctx.timestamp): {seen}"
    )
    assert per_key(processing_rows(out), "key") == per_key(flink_expected.PROCESSING, "key")
    assert [r["ts"] for r in fired] == [None] * len(fired), "processing-time timer outputs carry a timestamp"


def test_late_records_are_processed_as_in_flink() -> None:
    """Program 4, with the watermark following every record (one record per batch, as in the
    paced Flink run): late records reach process_element with their own timestamp, a timer
    registered below the watermark fires at the next watermark advance."""
    assert eventapp_programs.run_late(max_batch_records=1)["late"] == flink_expected.LATE
