"""What Apache Flink 2.3.0 (PyFlink, Java 17, parallelism 1) printed for the differential programs,
hard-coded for the fast eventapp-only tests (``test_semantics_fast.py``). The slow test
``test_flink_differential.py::test_recorded_expectations_are_what_flink_prints`` checks that a live
Flink run still prints exactly this.

Only the parts that do not depend on when Flink's periodic watermarks came are recorded (see
``inputs.py``): each line below is quoted from the run's JSON (``flink_programs.py OUT.json``), in
Flink's arrival order, as ``{"ts": <record timestamp>, "value": {...}}``.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


def _row(ts: int | None, /, **value: Any) -> Row:
    return {"ts": ts, "value": value}


# Program 1 (counts), fields key, timer, count_upto_timer, ctx_timestamp. Flink printed:
#   {"ts": 11, "value": {"count_seen": 6, "count_upto_timer": 3, "ctx_timestamp": 11, "key": "a", "timer": 11, "watermark": 19}}
#   {"ts": 12, "value": {"count_seen": 5, "count_upto_timer": 3, "ctx_timestamp": 12, "key": "b", "timer": 12, "watermark": 19}}
#   {"ts": 14, "value": {"count_seen": 6, "count_upto_timer": 5, "ctx_timestamp": 14, "key": "a", "timer": 14, "watermark": 19}}
#   {"ts": 19, "value": {"count_seen": 5, "count_upto_timer": 3, "ctx_timestamp": 19, "key": "b", "timer": 19, "watermark": 19}}
#   {"ts": 21, "value": {"count_seen": 5, "count_upto_timer": 4, "ctx_timestamp": 21, "key": "b", "timer": 21, "watermark": 34}}
#   {"ts": 22, "value": {"count_seen": 7, "count_upto_timer": 5, "ctx_timestamp": 22, "key": "a", "timer": 22, "watermark": 34}}
#   {"ts": 24, "value": {"count_seen": 7, "count_upto_timer": 5, "ctx_timestamp": 24, "key": "a", "timer": 24, "watermark": 34}}
#   {"ts": 30, "value": {"count_seen": 5, "count_upto_timer": 5, "ctx_timestamp": 30, "key": "b", "timer": 30, "watermark": 34}}
#   {"ts": 34, "value": {"count_seen": 5, "count_upto_timer": 5, "ctx_timestamp": 34, "key": "b", "timer": 34, "watermark": 34}}
#   {"ts": 35, "value": {"count_seen": 7, "count_upto_timer": 6, "ctx_timestamp": 35, "key": "a", "timer": 35, "watermark": 9223372036854775807}}
#   {"ts": 50, "value": {"count_seen": 7, "count_upto_timer": 7, "ctx_timestamp": 50, "key": "a", "timer": 50, "watermark": 9223372036854775807}}
# (count_seen and watermark depend on when the periodic watermarks came: not compared. The timer
# at 14 for key a, registered twice by a@4, fired once; a@35 and a@50 fired at end of input, with
# the watermark at Long.MAX_VALUE.)
COUNTS_FIELDS = ("key", "timer", "count_upto_timer", "ctx_timestamp")
COUNTS: list[Row] = [
    _row(11, key="a", timer=11, count_upto_timer=3, ctx_timestamp=11),
    _row(12, key="b", timer=12, count_upto_timer=3, ctx_timestamp=12),
    _row(14, key="a", timer=14, count_upto_timer=5, ctx_timestamp=14),
    _row(19, key="b", timer=19, count_upto_timer=3, ctx_timestamp=19),
    _row(21, key="b", timer=21, count_upto_timer=4, ctx_timestamp=21),
    _row(22, key="a", timer=22, count_upto_timer=5, ctx_timestamp=22),
    _row(24, key="a", timer=24, count_upto_timer=5, ctx_timestamp=24),
    _row(30, key="b", timer=30, count_upto_timer=5, ctx_timestamp=30),
    _row(34, key="b", timer=34, count_upto_timer=5, ctx_timestamp=34),
    _row(35, key="a", timer=35, count_upto_timer=6, ctx_timestamp=35),
    _row(50, key="a", timer=50, count_upto_timer=7, ctx_timestamp=50),
]

# Program 2 (windows of windows). Stage A (windows.small), Flink printed:
#   {"ts": 9, "value": {"group": "g1", "start": 0, "sum": 3, "user": "u1"}}
#   {"ts": 9, "value": {"group": "g1", "start": 0, "sum": 10, "user": "u2"}}
#   {"ts": 9, "value": {"group": "g2", "start": 0, "sum": 100, "user": "u3"}}
#   {"ts": 19, "value": {"group": "g1", "start": 10, "sum": 20, "user": "u2"}}
#   {"ts": 19, "value": {"group": "g1", "start": 10, "sum": 3, "user": "u1"}}
#   {"ts": 19, "value": {"group": "g2", "start": 10, "sum": 200, "user": "u3"}}
#   {"ts": 29, "value": {"group": "g1", "start": 20, "sum": 4, "user": "u1"}}
#   {"ts": 29, "value": {"group": "g1", "start": 20, "sum": 30, "user": "u2"}}
#   {"ts": 29, "value": {"group": "g2", "start": 20, "sum": 300, "user": "u3"}}
#   {"ts": 39, "value": {"group": "g1", "start": 30, "sum": 5, "user": "u1"}}
#   {"ts": 39, "value": {"group": "g1", "start": 30, "sum": 40, "user": "u2"}}
#   {"ts": 49, "value": {"group": "g2", "start": 40, "sum": 400, "user": "u3"}}
#   {"ts": 59, "value": {"group": "g1", "start": 50, "sum": 50, "user": "u2"}}
#   {"ts": 59, "value": {"group": "g1", "start": 50, "sum": 6, "user": "u1"}}
#   {"ts": 69, "value": {"group": "g2", "start": 60, "sum": 500, "user": "u3"}}
#   {"ts": 69, "value": {"group": "g1", "start": 60, "sum": 7, "user": "u1"}}
#   {"ts": 79, "value": {"group": "g1", "start": 70, "sum": 60, "user": "u2"}}
WINDOWS_SMALL: list[Row] = [
    _row(9, group="g1", user="u1", start=0, sum=3),
    _row(9, group="g1", user="u2", start=0, sum=10),
    _row(9, group="g2", user="u3", start=0, sum=100),
    _row(19, group="g1", user="u2", start=10, sum=20),
    _row(19, group="g1", user="u1", start=10, sum=3),
    _row(19, group="g2", user="u3", start=10, sum=200),
    _row(29, group="g1", user="u1", start=20, sum=4),
    _row(29, group="g1", user="u2", start=20, sum=30),
    _row(29, group="g2", user="u3", start=20, sum=300),
    _row(39, group="g1", user="u1", start=30, sum=5),
    _row(39, group="g1", user="u2", start=30, sum=40),
    _row(49, group="g2", user="u3", start=40, sum=400),
    _row(59, group="g1", user="u2", start=50, sum=50),
    _row(59, group="g1", user="u1", start=50, sum=6),
    _row(69, group="g2", user="u3", start=60, sum=500),
    _row(69, group="g1", user="u1", start=60, sum=7),
    _row(79, group="g1", user="u2", start=70, sum=60),
]
# Stage B (windows.large), Flink printed (and its built-in TumblingEventTimeWindows version,
# windows.builtin_large, the same six results):
#   {"ts": 29, "value": {"group": "g1", "inputs": 6, "start": 0, "total": 70}}
#   {"ts": 29, "value": {"group": "g2", "inputs": 3, "start": 0, "total": 600}}
#   {"ts": 59, "value": {"group": "g1", "inputs": 4, "start": 30, "total": 101}}
#   {"ts": 59, "value": {"group": "g2", "inputs": 1, "start": 30, "total": 400}}
#   {"ts": 89, "value": {"group": "g2", "inputs": 1, "start": 60, "total": 500}}
#   {"ts": 89, "value": {"group": "g1", "inputs": 2, "start": 60, "total": 67}}
# and nothing on the late side output (windows.late): every output of stage A reached stage B
# before the watermark that fired it.
WINDOWS_LARGE: list[Row] = [
    _row(29, group="g1", start=0, total=70, inputs=6),
    _row(29, group="g2", start=0, total=600, inputs=3),
    _row(59, group="g1", start=30, total=101, inputs=4),
    _row(59, group="g2", start=30, total=400, inputs=1),
    _row(89, group="g2", start=60, total=500, inputs=1),
    _row(89, group="g1", start=60, total=67, inputs=2),
]
WINDOWS_LATE: list[Row] = []

# Program 3 (processing-time timers). Flink printed (wall-clock epoch ms; records 0.4 s apart;
# the record ("end", 5, False) registers no timer and printed nothing):
#   {"ts": 1795985250110, "value": {"ctx_timestamp": 1795985250110, "domain": "processing_time", "far": false, "key": "a", "kind": "fired", "timer": 1795985250110}}
#   {"ts": 1795985250480, "value": {"ctx_timestamp": 1795985250480, "domain": "processing_time", "far": false, "key": "b", "kind": "fired", "timer": 1795985250480}}
#   {"ts": 3, "value": {"far_timer": 1795985310656, "kind": "registered"}}
#   {"ts": 1795985250676, "value": {"ctx_timestamp": 1795985250676, "domain": "processing_time", "far": false, "key": "far", "kind": "fired", "timer": 1795985250676}}
#   {"ts": 1795985251382, "value": {"ctx_timestamp": 1795985251382, "domain": "processing_time", "far": false, "key": "a", "kind": "fired", "timer": 1795985251382}}
# and the job had ended at 1795985258030 (meta.ended_at_ms), 53 s before the far timer was due:
# the far timer never fired and Flink did not wait for it.
# So in on_timer of a processing-time timer ctx.timestamp() == the timer's timestamp. (PyFlink also
# stamps the timer's output with it — "ts" above — whereas Java's KeyedProcessOperator.onProcessingTime
# calls TimestampedCollector.eraseTimestamp(): Java outputs carry no timestamp. eventapp follows
# Java there, as docs/design.md says.)
# Compared as (key, kind, domain, far, ctx_timestamp == timer), per key in order:
PROCESSING: list[Row] = [
    {"key": key, "kind": "fired", "domain": "processing_time", "far": False, "ctx_timestamp_is_timer": True}
    for key in ("a", "b", "far", "a")
]

# Program 4 (late records; the Flink run paced so that the watermark follows every record). Flink
# printed, in this order:
#   {"ts": 100, "value": {"kind": "element", "late": false, "ts": 100, "watermark": null}}
#   {"ts": 200, "value": {"kind": "element", "late": false, "ts": 200, "watermark": 99}}
#   {"ts": 100, "value": {"ctx_timestamp": 100, "kind": "timer", "timer": 100, "watermark": 199}}
#   {"ts": 50, "value": {"kind": "element", "late": true, "ts": 50, "watermark": 199}}
#   {"ts": 300, "value": {"kind": "element", "late": false, "ts": 300, "watermark": 199}}
#   {"ts": 50, "value": {"ctx_timestamp": 50, "kind": "timer", "timer": 50, "watermark": 299}}
#   {"ts": 200, "value": {"ctx_timestamp": 200, "kind": "timer", "timer": 200, "watermark": 299}}
#   {"ts": 150, "value": {"kind": "element", "late": true, "ts": 150, "watermark": 299}}
#   {"ts": 300, "value": {"kind": "element", "late": false, "ts": 300, "watermark": 299}}
#   {"ts": 150, "value": {"ctx_timestamp": 150, "kind": "timer", "timer": 150, "watermark": 9223372036854775807}}
#   {"ts": 300, "value": {"ctx_timestamp": 300, "kind": "timer", "timer": 300, "watermark": 9223372036854775807}}
# Late records are processed like any other, with their own timestamp; an event-time timer
# registered below the watermark (50 at watermark 199) does not fire at once but at the next
# watermark advance (299); the second timer at 300 is the same timer (fires once).
LATE: list[Row] = [
    _row(100, kind="element", ts=100, watermark=None, late=False),
    _row(200, kind="element", ts=200, watermark=99, late=False),
    _row(100, kind="timer", timer=100, ctx_timestamp=100, watermark=199),
    _row(50, kind="element", ts=50, watermark=199, late=True),
    _row(300, kind="element", ts=300, watermark=199, late=False),
    _row(50, kind="timer", timer=50, ctx_timestamp=50, watermark=299),
    _row(200, kind="timer", timer=200, ctx_timestamp=200, watermark=299),
    _row(150, kind="element", ts=150, watermark=299, late=True),
    _row(300, kind="element", ts=300, watermark=299, late=False),
    _row(150, kind="timer", timer=150, ctx_timestamp=150, watermark=9223372036854775807),
    _row(300, kind="timer", timer=300, ctx_timestamp=300, watermark=9223372036854775807),
]
