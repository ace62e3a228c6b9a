"""Differential tests: the same small programs on Apache Flink 2.3 (PyFlink) and on eventapp.

Slow: the session fixture ``flink_run`` (conftest.py) installs PyFlink into ``.venv-flink`` with
``scripts/install-flink.sh`` and runs every program in ONE Flink job (``flink_programs.py``). Run
with ``bash scripts/test.sh -m slow tests/differential`` (or ``.venv/bin/pytest -m slow tests/differential``).

What is compared, and how exactly (see also docs/testing.md, "Differential tests against Flink"):

- Program 1 (counts) and 2 (windows of windows): exact multiset of outputs and order per key, with
  the record timestamps; values computed only from records at or below the timer's time. The inputs
  are never later than the watermark bound, so these outputs do not depend on when Flink's periodic
  watermarks came. Values that do (``count_seen``, ``watermark``) are printed by both, not compared.
- Program 3 (processing-time timers): wall-clock values differ; compared are which timers fire per
  key and the relation ``ctx.timestamp == timer``; Flink-only facts are checked on the Flink run.
- Program 4 (late records): exact sequence, eventapp with one record per batch. The Flink pipeline
  is paced (a record every 0.4 s, watermarks every 10 ms) so that the watermark follows every
  record; the test first checks that the pacing held in the Flink run.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.differential import eventapp_programs, flink_expected, inputs
from tests.differential.compare import assert_same, multiset, per_key, processing_rows, project

pytestmark = pytest.mark.slow

SMALL_FIELDS = ("group", "user", "start", "sum")
LARGE_FIELDS = ("group", "start", "total", "inputs")


def flink_output(run: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A program's output in the Flink run (a program that produced nothing has no entry)."""
    output: list[dict[str, Any]] = run["programs"].get(name, [])
    return output


def check_flink_was_paced(run: dict[str, Any]) -> None:
    """Program 4's comparison needs the watermark to have followed every record in the Flink run."""
    elements = [r["value"] for r in flink_output(run, "late") if r["value"]["kind"] == "element"]
    expected = []
    highest: int | None = None
    for _, ts in inputs.LATE:
        expected.append(None if highest is None else highest - inputs.LATE_BOUND_MS - 1)
        highest = ts if highest is None else max(highest, ts)
    seen = [e["watermark"] for e in elements]
    assert seen == expected, (
        f"in the Flink run the watermark did not follow every record of program 4 (watermarks seen "
        f"by process_element: {seen}, paced run: {expected}); the machine was too busy for the "
        f"pacing of flink_programs.py (PACE_S): run again on a quieter machine"
    )


# --- the recorded expectations of the fast tests ----------------------------------------------------
def test_recorded_expectations_are_what_flink_prints(flink_run: dict[str, Any]) -> None:
    """flink_expected.py (used by test_semantics_fast.py) is what this Flink run printed."""
    assert flink_run["meta"]["flink_version"] == "2.3.0"
    fields = flink_expected.COUNTS_FIELDS
    assert_same(
        project(flink_expected.COUNTS, fields),
        project(flink_output(flink_run, "counts"), fields),
        "key",
        "counts",
    )
    assert_same(
        project(flink_expected.WINDOWS_SMALL, SMALL_FIELDS),
        project(flink_output(flink_run, "windows.small"), SMALL_FIELDS),
        "user",
        "windows.small",
    )
    assert_same(
        project(flink_expected.WINDOWS_LARGE, LARGE_FIELDS),
        project(flink_output(flink_run, "windows.large"), LARGE_FIELDS),
        "group",
        "windows.large",
    )
    assert flink_output(flink_run, "windows.late") == flink_expected.WINDOWS_LATE
    flink_processing = processing_rows(flink_output(flink_run, "processing"))
    assert per_key(flink_processing, "key") == per_key(flink_expected.PROCESSING, "key")
    check_flink_was_paced(flink_run)
    assert flink_output(flink_run, "late") == flink_expected.LATE


# --- program 1 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_batch_records", [1, 1_000])
def test_event_time_counts_match_flink(flink_run: dict[str, Any], max_batch_records: int) -> None:
    fields = flink_expected.COUNTS_FIELDS
    flink = flink_output(flink_run, "counts")
    # Flink's own facts: one timer per (key, ts + 10), all fired by the end of input, ctx.timestamp
    # and the output's timestamp are the timer's.
    timers = {(k, ts + inputs.COUNT_TIMER_DELAY_MS) for k, ts in inputs.COUNTS}
    assert sorted((r["value"]["key"], r["value"]["timer"]) for r in flink) == sorted(timers)
    assert all(r["ts"] == r["value"]["timer"] == r["value"]["ctx_timestamp"] for r in flink)
    ours = eventapp_programs.run_counts(max_batch_records)["counts"]
    assert_same(project(flink, fields), project(ours, fields), "key", "program 1 (counts)")


# --- program 2 ---------------------------------------------------------------------------------------
def test_flink_reference_windows_are_flinks_own_windows(flink_run: dict[str, Any]) -> None:
    """The keyed-process-function windows of program 2 give what Flink's TumblingEventTimeWindows
    give for the same data (so the reference is Flink's window semantics, not just our functions),
    and stage B of the Flink run had no late input."""
    assert multiset(project(flink_output(flink_run, "windows.small"), SMALL_FIELDS)) == multiset(
        project(flink_output(flink_run, "windows.builtin_small"), SMALL_FIELDS)
    )
    assert multiset(project(flink_output(flink_run, "windows.large"), LARGE_FIELDS)) == multiset(
        project(flink_output(flink_run, "windows.builtin_large"), LARGE_FIELDS)
    )
    assert flink_output(flink_run, "windows.late") == []


@pytest.mark.parametrize("max_batch_records", [1, 1_000])
def test_windows_of_windows_match_flink(flink_run: dict[str, Any], max_batch_records: int) -> None:
    ours = eventapp_programs.run_windows(max_batch_records)
    assert_same(
        project(flink_output(flink_run, "windows.small"), SMALL_FIELDS),
        project(ours["windows.small"], SMALL_FIELDS),
        "user",
        "program 2, stage A",
    )
    assert_same(
        project(flink_output(flink_run, "windows.large"), LARGE_FIELDS),
        project(ours["windows.large"], LARGE_FIELDS),
        "group",
        "program 2, stage B",
    )
    assert ours["windows.late"] == flink_output(flink_run, "windows.late")


# --- program 3 ---------------------------------------------------------------------------------------
def test_flink_processing_time_timer_semantics(flink_run: dict[str, Any]) -> None:
    """What Flink 2.3 does, recorded: ctx.timestamp() in on_timer of a processing-time timer is the
    timer's timestamp; PyFlink stamps the timer's outputs with it too (Java erases it); a
    processing-time timer still pending when the bounded input ends never fires, and the job does
    not wait for it."""
    output = flink_output(flink_run, "processing")
    fired = [r for r in output if r["value"]["kind"] == "fired"]
    assert fired and all(r["value"]["ctx_timestamp"] == r["value"]["timer"] for r in fired)
    assert all(r["value"]["domain"] == "processing_time" for r in fired)
    assert all(r["ts"] == r["value"]["timer"] for r in fired), (
        "PyFlink's timer outputs carry the timer's time"
    )
    assert not any(r["value"]["far"] for r in fired), "the far processing-time timer fired"
    (registered,) = [r["value"]["far_timer"] for r in output if r["value"]["kind"] == "registered"]
    assert flink_run["meta"]["ended_at_ms"] < registered, "the job ended after the far timer was due"


def test_processing_time_timers_match_flink(flink_run: dict[str, Any]) -> None:
    flink = processing_rows(flink_output(flink_run, "processing"))
    out = eventapp_programs.run_processing()["processing"]
    assert per_key(processing_rows(out), "key") == per_key(flink, "key"), (
        f"(key, timer, ctx.timestamp) on eventapp: "
        f"{[(r['value']['key'], r['value']['timer'], r['value']['ctx_timestamp']) for r in out if r['value']['kind'] == 'fired']}"
    )
    # eventapp follows Java's KeyedProcessOperator here, not PyFlink: no timestamp on the output.
    assert [r["ts"] for r in out if r["value"]["kind"] == "fired"] == [None] * len(flink)


# --- program 4 ---------------------------------------------------------------------------------------
def test_late_records_match_flink(flink_run: dict[str, Any]) -> None:
    check_flink_was_paced(flink_run)
    flink = flink_output(flink_run, "late")
    ours = eventapp_programs.run_late(max_batch_records=1)["late"]
    assert ours == flink, f"program 4 (late records)\n  Flink:    {flink}\n  eventapp: {ours}"
