"""What Apache Flink 2.3.0 (PyFlink, Java 17, parallelism 1) printed for the window programs of
``flink_window_programs.py`` (inputs: ``window_inputs.py``), hard-coded for eventapp's window tests.

Each list is preceded by the JSON lines of the recorded run (``flink_window_programs.py OUT.json``),
quoted in Flink's arrival order as ``{"ts": <record timestamp>, "value": {...}}``; ``ts`` is what
``ctx.timestamp()`` returned in a ProcessFunction after the window. The job was run four times;
quoted is the third run (the fourth only followed a formatting change of the driver); every list
below was the same multiset in all four runs, and the paced and count programs printed the
identical sequence (watermarks included) each time.

How to compare:

- Unpaced programs (tumbling_reduce, sliding_aggregate, session_process, tumbling_offset): the
  field ``watermark`` (``context.current_watermark()`` at the firing) depends on when the periodic
  watermarks came and is quoted but not recorded in the rows, except that a window whose
  ``max_timestamp`` is above (largest input timestamp - BOUND_MS - 1) can only fire at the
  end-of-input watermark Long.MAX_VALUE (9223372036854775807). Results are in timestamp order;
  results of different keys with the SAME timestamp came in a different order across the runs
  (e.g. a/b at ts 19 of tumbling_reduce): compare per key in order, or as a multiset.
- Paced programs (lateness, continuous_trigger): exact sequence, watermarks included, valid only if
  the pacing held; ``*_ELEMENTS`` (the watermark each input record met, from a probe just before the
  window) is what a test checks first: watermark = (largest timestamp so far) - 1, ``None`` first.
- Count programs: exact sequence (they fire on elements; watermarks play no part).

PyFlink facts worth knowing (observed here, and read in PyFlink's own source): PyFlink's DataStream
windows are NOT Java's WindowOperator but a Python port of it run in the Python worker
(``pyflink/fn_execution/datastream/window/window_operator.py``). A window result carries the
timestamp of what fired it: the timer's timestamp for a timer firing (window.max_timestamp() =
end - 1 for EventTimeTrigger, the interval timer's time for ContinuousEventTimeTrigger) but the
ELEMENT's timestamp for a firing on an element (late firings, count triggers). Java's WindowOperator
instead stamps every result with window.maxTimestamp() (Long.MAX_VALUE for GlobalWindow/CountWindow);
that Java behaviour is from Java's source, not run here. The window assigners take
``pyflink.common.Time``: ``TumblingEventTimeWindows.of(Duration.of_millis(10))`` raises
AttributeError ('Duration' object has no attribute 'to_milliseconds').
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


def _row(ts: int | None, /, **value: Any) -> Row:
    return {"ts": ts, "value": value}


LONG_MAX = 9223372036854775807

# tumbling_reduce: TumblingEventTimeWindows.of(10 ms) + reduce(sum) + ProcessWindowFunction.
# Window start = ts - ts % 10; [start, start+10) includes start, excludes end (ts 10 -> [10,20),
# ts 9 -> [0,10)). Result timestamp = window.max_timestamp() = end - 1. a@8, arriving after b@12
# but within the bound, is in a's [0,10) (sum 1+3+4+8 = 16). Key b has no record in [30,40): no
# result for it (empty windows never fire).
# [30,40) of a and [40,50) of b fired at the end of input (watermark Long.MAX_VALUE).
# --- tumbling_reduce: Flink printed
#   {"ts": 9, "value": {"end": 10, "key": "a", "max_timestamp": 9, "start": 0, "sum": 16, "watermark": 9}}
#   {"ts": 9, "value": {"end": 10, "key": "b", "max_timestamp": 9, "start": 0, "sum": 7, "watermark": 9}}
#   {"ts": 19, "value": {"end": 20, "key": "a", "max_timestamp": 19, "start": 10, "sum": 15, "watermark": 25}}
#   {"ts": 19, "value": {"end": 20, "key": "b", "max_timestamp": 19, "start": 10, "sum": 17, "watermark": 25}}
#   {"ts": 29, "value": {"end": 30, "key": "b", "max_timestamp": 29, "start": 20, "sum": 24, "watermark": 33}}
#   {"ts": 29, "value": {"end": 30, "key": "a", "max_timestamp": 29, "start": 20, "sum": 14, "watermark": 33}}
#   {"ts": 39, "value": {"end": 40, "key": "a", "max_timestamp": 39, "start": 30, "sum": 27, "watermark": 9223372036854775807}}
#   {"ts": 49, "value": {"end": 50, "key": "b", "max_timestamp": 49, "start": 40, "sum": 16, "watermark": 9223372036854775807}}
TUMBLING_REDUCE: list[Row] = [
    _row(9, key="a", start=0, end=10, max_timestamp=9, sum=16),
    _row(9, key="b", start=0, end=10, max_timestamp=9, sum=7),
    _row(19, key="a", start=10, end=20, max_timestamp=19, sum=15),
    _row(19, key="b", start=10, end=20, max_timestamp=19, sum=17),
    _row(29, key="b", start=20, end=30, max_timestamp=29, sum=24),
    _row(29, key="a", start=20, end=30, max_timestamp=29, sum=14),
    _row(39, key="a", start=30, end=40, max_timestamp=39, sum=27),
    _row(49, key="b", start=40, end=50, max_timestamp=49, sum=16),
]

# sliding_aggregate: SlidingEventTimeWindows.of(size 10, slide 5) + aggregate (count, sum) +
# ProcessWindowFunction. Each record is in 2 windows, starts = multiples of 5 in (ts-10, ts]: ts 2 and
# 3 are in [-5,5) (negative start) and [0,10). Results stamped end - 1; the windows after the last
# record ([10,20), [15,25), [20,30)) fired at the end of input.
# --- sliding_aggregate: Flink printed
#   {"ts": 4, "value": {"count": 1, "end": 5, "key": "a", "start": -5, "sum": 1, "watermark": 8}}
#   {"ts": 4, "value": {"count": 1, "end": 5, "key": "b", "start": -5, "sum": 2, "watermark": 8}}
#   {"ts": 9, "value": {"count": 3, "end": 10, "key": "a", "start": 0, "sum": 8, "watermark": 18}}
#   {"ts": 9, "value": {"count": 2, "end": 10, "key": "b", "start": 0, "sum": 7, "watermark": 18}}
#   {"ts": 14, "value": {"count": 4, "end": 15, "key": "a", "start": 5, "sum": 21, "watermark": 18}}
#   {"ts": 14, "value": {"count": 2, "end": 15, "key": "b", "start": 5, "sum": 12, "watermark": 18}}
#   {"ts": 19, "value": {"count": 1, "end": 20, "key": "b", "start": 10, "sum": 7, "watermark": 9223372036854775807}}
#   {"ts": 19, "value": {"count": 3, "end": 20, "key": "a", "start": 10, "sum": 23, "watermark": 9223372036854775807}}
#   {"ts": 24, "value": {"count": 1, "end": 25, "key": "b", "start": 15, "sum": 10, "watermark": 9223372036854775807}}
#   {"ts": 24, "value": {"count": 2, "end": 25, "key": "a", "start": 15, "sum": 20, "watermark": 9223372036854775807}}
#   {"ts": 29, "value": {"count": 1, "end": 30, "key": "a", "start": 20, "sum": 11, "watermark": 9223372036854775807}}
#   {"ts": 29, "value": {"count": 1, "end": 30, "key": "b", "start": 20, "sum": 10, "watermark": 9223372036854775807}}
SLIDING_AGGREGATE: list[Row] = [
    _row(4, key="a", start=-5, end=5, count=1, sum=1),
    _row(4, key="b", start=-5, end=5, count=1, sum=2),
    _row(9, key="a", start=0, end=10, count=3, sum=8),
    _row(9, key="b", start=0, end=10, count=2, sum=7),
    _row(14, key="a", start=5, end=15, count=4, sum=21),
    _row(14, key="b", start=5, end=15, count=2, sum=12),
    _row(19, key="b", start=10, end=20, count=1, sum=7),
    _row(19, key="a", start=10, end=20, count=3, sum=23),
    _row(24, key="b", start=15, end=25, count=1, sum=10),
    _row(24, key="a", start=15, end=25, count=2, sum=20),
    _row(29, key="a", start=20, end=30, count=1, sum=11),
    _row(29, key="b", start=20, end=30, count=1, sum=10),
]

# session_process: EventTimeSessionWindows.with_gap(5 ms) + ProcessWindowFunction (all elements).
# A record at t opens [t, t+5); windows are merged when they intersect INCLUSIVELY
# (start <= other.end and end >= other.start). Key a: [1,8) (1, 3) and [11,16) (11) were merged by
# a@7 ([7,12)) into ONE session [1,16) with 4 records; [20,25) and [25,30) (touching: 25 == 25) merged
# into [20,30); [31,36) stayed apart (31 > 30). Key b: [2,7), [9,14), [40,45) apart.
# Result timestamp = merged window's end - 1. No intermediate results for the pre-merge windows.
# --- session_process: Flink printed
#   {"ts": 6, "value": {"count": 1, "end": 7, "key": "b", "start": 2, "timestamps": [2], "values": [2], "watermark": 25}}
#   {"ts": 13, "value": {"count": 1, "end": 14, "key": "b", "start": 9, "timestamps": [9], "values": [4], "watermark": 25}}
#   {"ts": 15, "value": {"count": 4, "end": 16, "key": "a", "start": 1, "timestamps": [1, 3, 7, 11], "values": [1, 3, 5, 6], "watermark": 25}}
#   {"ts": 29, "value": {"count": 2, "end": 30, "key": "a", "start": 20, "timestamps": [20, 25], "values": [7, 8], "watermark": 34}}
#   {"ts": 35, "value": {"count": 1, "end": 36, "key": "a", "start": 31, "timestamps": [31], "values": [9], "watermark": 9223372036854775807}}
#   {"ts": 44, "value": {"count": 1, "end": 45, "key": "b", "start": 40, "timestamps": [40], "values": [10], "watermark": 9223372036854775807}}
SESSION_PROCESS: list[Row] = [
    _row(6, key="b", start=2, end=7, values=[2], timestamps=[2], count=1),
    _row(13, key="b", start=9, end=14, values=[4], timestamps=[9], count=1),
    _row(15, key="a", start=1, end=16, values=[1, 3, 5, 6], timestamps=[1, 3, 7, 11], count=4),
    _row(29, key="a", start=20, end=30, values=[7, 8], timestamps=[20, 25], count=2),
    _row(35, key="a", start=31, end=36, values=[9], timestamps=[31], count=1),
    _row(44, key="b", start=40, end=45, values=[10], timestamps=[40], count=1),
]

# tumbling_offset: TumblingEventTimeWindows.of(10 ms, offset 3 ms) + reduce(sum).
# Window start = ts - (ts - offset + size) % size with Python's non-negative % (PyFlink's
# TimeWindow.get_window_start_with_offset), i.e. floor: windows [..., -17, -7, 3, 13, 23, ...).
# Negative timestamps work end to end (record timestamps, watermarks, timers): -15, -8 -> [-17,-7)
# stamped -8; -7 (first ms) -> [-7,3); 3 -> [3,13); 23 -> [23,33). Results stamped end - 1.
# --- tumbling_offset: Flink printed
#   {"ts": -8, "value": {"end": -7, "key": "a", "start": -17, "sum": 3, "watermark": -3}}
#   {"ts": 2, "value": {"end": 3, "key": "a", "start": -7, "sum": 8, "watermark": 6}}
#   {"ts": 2, "value": {"end": 3, "key": "b", "start": -7, "sum": 11, "watermark": 6}}
#   {"ts": 12, "value": {"end": 13, "key": "a", "start": 3, "sum": 14, "watermark": 17}}
#   {"ts": 22, "value": {"end": 23, "key": "a", "start": 13, "sum": 9, "watermark": 9223372036854775807}}
#   {"ts": 22, "value": {"end": 23, "key": "b", "start": 13, "sum": 10, "watermark": 9223372036854775807}}
#   {"ts": 32, "value": {"end": 33, "key": "b", "start": 23, "sum": 11, "watermark": 9223372036854775807}}
TUMBLING_OFFSET: list[Row] = [
    _row(-8, key="a", start=-17, end=-7, sum=3),
    _row(2, key="a", start=-7, end=3, sum=8),
    _row(2, key="b", start=-7, end=3, sum=11),
    _row(12, key="a", start=3, end=13, sum=14),
    _row(22, key="a", start=13, end=23, sum=9),
    _row(22, key="b", start=13, end=23, sum=10),
    _row(32, key="b", start=23, end=33, sum=11),
]

# lateness (paced, bound 0): TumblingEventTimeWindows.of(10) .allowed_lateness(5)
# .side_output_late_data(tag) .process(fn); ``firing`` counts firings per window in
# context.window_state(), cleared in fn.clear(). Observed (watermark wm each record met: see
# LATENESS_ELEMENTS):
# - on-time firing when the watermark reaches end - 1 (wm 11 >= 9): stamped end - 1 (9, 19, 29);
# - each record arriving after that but while wm < end - 1 + lateness (cleanup time 14 for [0,10),
#   24 for [10,20)) is ADDED and fires the window AGAIN at once with all its contents so far (no
#   purge): k@5 at wm 11, k@9 at wm 13 (9 + 5 > 13), k@18/k@11 at wm 21, k@19 at wm 23 (19+5 > 23).
#   A late firing is stamped with the LATE RECORD's timestamp (5, 9, 18, 11, 19), not end - 1;
# - when wm reaches the cleanup time (k@15 made wm 14 = 9 + 5) the window state is dropped (no
#   output); records for it from then on go to the side output: k@3 at wm 14 and k@9 at wm 14
#   (ts + lateness == wm: dropped, i.e. late means ts + allowed_lateness <= watermark), k@10 at wm 25;
# - [30,40) fired once at the end of input (watermark Long.MAX_VALUE).
# --- lateness: Flink printed
#   {"ts": 9, "value": {"count": 2, "end": 10, "firing": 1, "key": "k", "start": 0, "sum": 3, "timestamps": [2, 7], "watermark": 11}}
#   {"ts": 5, "value": {"count": 3, "end": 10, "firing": 2, "key": "k", "start": 0, "sum": 11, "timestamps": [2, 5, 7], "watermark": 11}}
#   {"ts": 9, "value": {"count": 4, "end": 10, "firing": 3, "key": "k", "start": 0, "sum": 43, "timestamps": [2, 5, 7, 9], "watermark": 13}}
#   {"ts": 19, "value": {"count": 3, "end": 20, "firing": 1, "key": "k", "start": 10, "sum": 84, "timestamps": [12, 14, 15], "watermark": 21}}
#   {"ts": 18, "value": {"count": 4, "end": 20, "firing": 2, "key": "k", "start": 10, "sum": 1108, "timestamps": [12, 14, 15, 18], "watermark": 21}}
#   {"ts": 11, "value": {"count": 5, "end": 20, "firing": 3, "key": "k", "start": 10, "sum": 3156, "timestamps": [11, 12, 14, 15, 18], "watermark": 21}}
#   {"ts": 19, "value": {"count": 6, "end": 20, "firing": 4, "key": "k", "start": 10, "sum": 11348, "timestamps": [11, 12, 14, 15, 18, 19], "watermark": 23}}
#   {"ts": 29, "value": {"count": 3, "end": 30, "firing": 1, "key": "k", "start": 20, "sum": 20992, "timestamps": [22, 24, 26], "watermark": 30}}
#   {"ts": 39, "value": {"count": 1, "end": 40, "firing": 1, "key": "k", "start": 30, "sum": 65536, "timestamps": [31], "watermark": 9223372036854775807}}
LATENESS: list[Row] = [
    _row(9, key="k", start=0, end=10, count=2, sum=3, timestamps=[2, 7], firing=1, watermark=11),
    _row(5, key="k", start=0, end=10, count=3, sum=11, timestamps=[2, 5, 7], firing=2, watermark=11),
    _row(9, key="k", start=0, end=10, count=4, sum=43, timestamps=[2, 5, 7, 9], firing=3, watermark=13),
    _row(19, key="k", start=10, end=20, count=3, sum=84, timestamps=[12, 14, 15], firing=1, watermark=21),
    _row(
        18, key="k", start=10, end=20, count=4, sum=1108, timestamps=[12, 14, 15, 18], firing=2, watermark=21
    ),
    _row(
        11,
        key="k",
        start=10,
        end=20,
        count=5,
        sum=3156,
        timestamps=[11, 12, 14, 15, 18],
        firing=3,
        watermark=21,
    ),
    _row(
        19,
        key="k",
        start=10,
        end=20,
        count=6,
        sum=11348,
        timestamps=[11, 12, 14, 15, 18, 19],
        firing=4,
        watermark=23,
    ),
    _row(29, key="k", start=20, end=30, count=3, sum=20992, timestamps=[22, 24, 26], firing=1, watermark=30),
    _row(39, key="k", start=30, end=40, count=1, sum=65536, timestamps=[31], firing=1, watermark=LONG_MAX),
]

# lateness side output: the late records themselves, unchanged, stamped with their own timestamps.
# --- lateness.late: Flink printed
#   {"ts": 3, "value": {"key": "k", "kind": "late", "ts": 3, "value": 128}}
#   {"ts": 9, "value": {"key": "k", "kind": "late", "ts": 9, "value": 256}}
#   {"ts": 10, "value": {"key": "k", "kind": "late", "ts": 10, "value": 32768}}
LATENESS_LATE: list[Row] = [
    _row(3, kind="late", key="k", ts=3, value=128),
    _row(9, kind="late", key="k", ts=9, value=256),
    _row(10, kind="late", key="k", ts=10, value=32768),
]

# lateness probe: the watermark each record met before the window (pacing held: wm = max ts - 1).
# --- lateness.elements: Flink printed
#   {"ts": 2, "value": {"key": "k", "ts": 2, "value": 1, "watermark": null}}
#   {"ts": 7, "value": {"key": "k", "ts": 7, "value": 2, "watermark": 1}}
#   {"ts": 12, "value": {"key": "k", "ts": 12, "value": 4, "watermark": 6}}
#   {"ts": 5, "value": {"key": "k", "ts": 5, "value": 8, "watermark": 11}}
#   {"ts": 14, "value": {"key": "k", "ts": 14, "value": 16, "watermark": 11}}
#   {"ts": 9, "value": {"key": "k", "ts": 9, "value": 32, "watermark": 13}}
#   {"ts": 15, "value": {"key": "k", "ts": 15, "value": 64, "watermark": 13}}
#   {"ts": 3, "value": {"key": "k", "ts": 3, "value": 128, "watermark": 14}}
#   {"ts": 9, "value": {"key": "k", "ts": 9, "value": 256, "watermark": 14}}
#   {"ts": 22, "value": {"key": "k", "ts": 22, "value": 512, "watermark": 14}}
#   {"ts": 18, "value": {"key": "k", "ts": 18, "value": 1024, "watermark": 21}}
#   {"ts": 11, "value": {"key": "k", "ts": 11, "value": 2048, "watermark": 21}}
#   {"ts": 24, "value": {"key": "k", "ts": 24, "value": 4096, "watermark": 21}}
#   {"ts": 19, "value": {"key": "k", "ts": 19, "value": 8192, "watermark": 23}}
#   {"ts": 26, "value": {"key": "k", "ts": 26, "value": 16384, "watermark": 23}}
#   {"ts": 10, "value": {"key": "k", "ts": 10, "value": 32768, "watermark": 25}}
#   {"ts": 31, "value": {"key": "k", "ts": 31, "value": 65536, "watermark": 25}}
LATENESS_ELEMENTS: list[Row] = [
    _row(2, key="k", ts=2, value=1, watermark=None),
    _row(7, key="k", ts=7, value=2, watermark=1),
    _row(12, key="k", ts=12, value=4, watermark=6),
    _row(5, key="k", ts=5, value=8, watermark=11),
    _row(14, key="k", ts=14, value=16, watermark=11),
    _row(9, key="k", ts=9, value=32, watermark=13),
    _row(15, key="k", ts=15, value=64, watermark=13),
    _row(3, key="k", ts=3, value=128, watermark=14),
    _row(9, key="k", ts=9, value=256, watermark=14),
    _row(22, key="k", ts=22, value=512, watermark=14),
    _row(18, key="k", ts=18, value=1024, watermark=21),
    _row(11, key="k", ts=11, value=2048, watermark=21),
    _row(24, key="k", ts=24, value=4096, watermark=21),
    _row(19, key="k", ts=19, value=8192, watermark=23),
    _row(26, key="k", ts=26, value=16384, watermark=23),
    _row(10, key="k", ts=10, value=32768, watermark=25),
    _row(31, key="k", ts=31, value=65536, watermark=25),
]

# continuous_trigger (paced, bound 0): TumblingEventTimeWindows.of(20) with
# .trigger(ContinuousEventTimeTrigger.of(5 ms)) (PyFlink has it; it replaces EventTimeTrigger but
# fires at end - 1 too) + ProcessWindowFunction (all elements; FIRE, never purges).
# - The first record of a window sets the first fire time to ts - ts % 5 + 5 (c@1 -> 5; c@27 -> 30,
#   NOT 25; d@41 -> 45); each interval firing registers the next at min(t + 5, end - 1).
# - A firing holds every record that had ARRIVED by then, including ones later than the fire time
#   (the firing at 5 holds c@6: the watermark 5 came after c@6).
# - The firing at 15 registered end - 1 = 19, the same timer as the window's own: one firing at 19
#   (same contents as at 15), then the window is cleaned up (allowed lateness 0).
# - Results are stamped with the timer's time (5, 10, 15, 19, 30, 35, 39, 45, 59).
# - At the end of input (watermark Long.MAX_VALUE) d's [40,60) fired at 45 and 59 only: the timer at
#   50 that the firing at 45 registered (below the final watermark) never fired (no later watermark
#   comes). Java's native timer service would fire 50 and 55 in the same advance (per its source;
#   not run here).
# --- continuous_trigger: Flink printed
#   {"ts": 5, "value": {"end": 20, "key": "c", "start": 0, "sum": 7, "timestamps": [1, 3, 6], "watermark": 5}}
#   {"ts": 10, "value": {"end": 20, "key": "c", "start": 0, "sum": 31, "timestamps": [1, 3, 6, 8, 13], "watermark": 12}}
#   {"ts": 15, "value": {"end": 20, "key": "c", "start": 0, "sum": 63, "timestamps": [1, 3, 6, 8, 13, 14], "watermark": 26}}
#   {"ts": 19, "value": {"end": 20, "key": "c", "start": 0, "sum": 63, "timestamps": [1, 3, 6, 8, 13, 14], "watermark": 26}}
#   {"ts": 30, "value": {"end": 40, "key": "c", "start": 20, "sum": 448, "timestamps": [22, 27, 33], "watermark": 32}}
#   {"ts": 35, "value": {"end": 40, "key": "c", "start": 20, "sum": 448, "timestamps": [22, 27, 33], "watermark": 40}}
#   {"ts": 39, "value": {"end": 40, "key": "c", "start": 20, "sum": 448, "timestamps": [22, 27, 33], "watermark": 40}}
#   {"ts": 45, "value": {"end": 60, "key": "d", "start": 40, "sum": 3, "timestamps": [41, 42], "watermark": 9223372036854775807}}
#   {"ts": 59, "value": {"end": 60, "key": "d", "start": 40, "sum": 3, "timestamps": [41, 42], "watermark": 9223372036854775807}}
CONTINUOUS_TRIGGER: list[Row] = [
    _row(5, key="c", start=0, end=20, sum=7, timestamps=[1, 3, 6], watermark=5),
    _row(10, key="c", start=0, end=20, sum=31, timestamps=[1, 3, 6, 8, 13], watermark=12),
    _row(15, key="c", start=0, end=20, sum=63, timestamps=[1, 3, 6, 8, 13, 14], watermark=26),
    _row(19, key="c", start=0, end=20, sum=63, timestamps=[1, 3, 6, 8, 13, 14], watermark=26),
    _row(30, key="c", start=20, end=40, sum=448, timestamps=[22, 27, 33], watermark=32),
    _row(35, key="c", start=20, end=40, sum=448, timestamps=[22, 27, 33], watermark=40),
    _row(39, key="c", start=20, end=40, sum=448, timestamps=[22, 27, 33], watermark=40),
    _row(45, key="d", start=40, end=60, sum=3, timestamps=[41, 42], watermark=LONG_MAX),
    _row(59, key="d", start=40, end=60, sum=3, timestamps=[41, 42], watermark=LONG_MAX),
]

# continuous_trigger probe: the watermark each record met (pacing held).
# --- continuous_trigger.elements: Flink printed
#   {"ts": 1, "value": {"key": "c", "ts": 1, "value": 1, "watermark": null}}
#   {"ts": 3, "value": {"key": "c", "ts": 3, "value": 2, "watermark": 0}}
#   {"ts": 6, "value": {"key": "c", "ts": 6, "value": 4, "watermark": 2}}
#   {"ts": 8, "value": {"key": "c", "ts": 8, "value": 8, "watermark": 5}}
#   {"ts": 13, "value": {"key": "c", "ts": 13, "value": 16, "watermark": 7}}
#   {"ts": 14, "value": {"key": "c", "ts": 14, "value": 32, "watermark": 12}}
#   {"ts": 27, "value": {"key": "c", "ts": 27, "value": 64, "watermark": 13}}
#   {"ts": 22, "value": {"key": "c", "ts": 22, "value": 128, "watermark": 26}}
#   {"ts": 33, "value": {"key": "c", "ts": 33, "value": 256, "watermark": 26}}
#   {"ts": 41, "value": {"key": "d", "ts": 41, "value": 1, "watermark": 32}}
#   {"ts": 42, "value": {"key": "d", "ts": 42, "value": 2, "watermark": 40}}
CONTINUOUS_TRIGGER_ELEMENTS: list[Row] = [
    _row(1, key="c", ts=1, value=1, watermark=None),
    _row(3, key="c", ts=3, value=2, watermark=0),
    _row(6, key="c", ts=6, value=4, watermark=2),
    _row(8, key="c", ts=8, value=8, watermark=5),
    _row(13, key="c", ts=13, value=16, watermark=7),
    _row(14, key="c", ts=14, value=32, watermark=12),
    _row(27, key="c", ts=27, value=64, watermark=13),
    _row(22, key="c", ts=22, value=128, watermark=26),
    _row(33, key="c", ts=33, value=256, watermark=26),
    _row(41, key="d", ts=41, value=1, watermark=32),
    _row(42, key="d", ts=42, value=2, watermark=40),
]

# count_trigger: .window(GlobalWindows.create()).trigger(PurgingTrigger.of(CountTrigger.of(3))):
# fires per key on every 3rd record with those 3 (FIRE_AND_PURGE), stamped with the 3rd record's
# timestamp (Java: Long.MAX_VALUE, the GlobalWindow's max timestamp). The leftovers at the end of
# input (a: 7; b: 40, 50) are never emitted: the end-of-input watermark does not fire count windows.
# --- count_trigger: Flink printed
#   {"ts": 4, "value": {"count": 3, "key": "a", "sum": 6, "values": [1, 2, 3], "window": "GlobalWindow"}}
#   {"ts": 7, "value": {"count": 3, "key": "b", "sum": 60, "values": [10, 20, 30], "window": "GlobalWindow"}}
#   {"ts": 9, "value": {"count": 3, "key": "a", "sum": 15, "values": [4, 5, 6], "window": "GlobalWindow"}}
COUNT_TRIGGER: list[Row] = [
    _row(4, key="a", window="GlobalWindow", count=3, sum=6, values=[1, 2, 3]),
    _row(7, key="b", window="GlobalWindow", count=3, sum=60, values=[10, 20, 30]),
    _row(9, key="a", window="GlobalWindow", count=3, sum=15, values=[4, 5, 6]),
]

# count_window: key_by(...).count_window(3). Same results as count_trigger; PyFlink implements it
# as CountTumblingWindowAssigner (per-key CountWindow ids 0, 1, ...) + CountTrigger(3), not Java's
# GlobalWindows + PurgingTrigger(CountTrigger). Stamped with the 3rd record's timestamp.
# --- count_window: Flink printed
#   {"ts": 4, "value": {"count": 3, "key": "a", "sum": 6, "values": [1, 2, 3], "window": "CountWindow(id=0)"}}
#   {"ts": 7, "value": {"count": 3, "key": "b", "sum": 60, "values": [10, 20, 30], "window": "CountWindow(id=0)"}}
#   {"ts": 9, "value": {"count": 3, "key": "a", "sum": 15, "values": [4, 5, 6], "window": "CountWindow(id=1)"}}
COUNT_WINDOW: list[Row] = [
    _row(4, key="a", window="CountWindow(id=0)", count=3, sum=6, values=[1, 2, 3]),
    _row(7, key="b", window="CountWindow(id=0)", count=3, sum=60, values=[10, 20, 30]),
    _row(9, key="a", window="CountWindow(id=1)", count=3, sum=15, values=[4, 5, 6]),
]

# count_window_sliding: key_by(...).count_window(3, 2). PyFlink's CountSlidingWindowAssigner puts
# record n (0-based, per key) in windows i with 2i <= n <= 2i+2 and fires each window when it has
# 3 records: windows of exactly 3 records starting every 2 records ([1,2,3], [3,4,5], [5,6,7]), stamped
# with the completing record's timestamp; partial windows ([7] for a, [50] for b) never fire.
# This DIFFERS from Java's countWindow(3, 2) = GlobalWindows + CountEvictor(3) + CountTrigger(2),
# which fires every 2nd record with the last <= 3 records (a: [1,2], [2,3,4], [4,5,6]; per Java's
# source, not run here).
# --- count_window_sliding: Flink printed
#   {"ts": 4, "value": {"count": 3, "key": "a", "sum": 6, "values": [1, 2, 3], "window": "CountWindow(id=0)"}}
#   {"ts": 7, "value": {"count": 3, "key": "b", "sum": 60, "values": [10, 20, 30], "window": "CountWindow(id=0)"}}
#   {"ts": 8, "value": {"count": 3, "key": "a", "sum": 12, "values": [3, 4, 5], "window": "CountWindow(id=1)"}}
#   {"ts": 11, "value": {"count": 3, "key": "a", "sum": 18, "values": [5, 6, 7], "window": "CountWindow(id=2)"}}
#   {"ts": 12, "value": {"count": 3, "key": "b", "sum": 120, "values": [30, 40, 50], "window": "CountWindow(id=1)"}}
COUNT_WINDOW_SLIDING: list[Row] = [
    _row(4, key="a", window="CountWindow(id=0)", count=3, sum=6, values=[1, 2, 3]),
    _row(7, key="b", window="CountWindow(id=0)", count=3, sum=60, values=[10, 20, 30]),
    _row(8, key="a", window="CountWindow(id=1)", count=3, sum=12, values=[3, 4, 5]),
    _row(11, key="a", window="CountWindow(id=2)", count=3, sum=18, values=[5, 6, 7]),
    _row(12, key="b", window="CountWindow(id=1)", count=3, sum=120, values=[30, 40, 50]),
]
