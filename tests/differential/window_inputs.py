"""Inputs of the window programs run on Apache Flink by ``flink_window_programs.py`` (and, later,
on ``eventapp.windows``). Recorded Flink outputs: ``flink_window_expected.py``.

Standard library only: ``flink_window_programs.py`` imports this module in the Flink virtualenv,
where eventapp is not installed. Every input is a list of ``(key, timestamp_ms, value)`` tuples, in
the order the source emits them.

Unpaced inputs (``TUMBLING``, ``SLIDING``, ``SESSION``, ``OFFSET``): each record's timestamp is at
most ``BOUND_MS - 1`` (4 ms) below the largest timestamp before it, and the watermark is bounded
out-of-orderness ``BOUND_MS`` (watermark = max timestamp - BOUND_MS - 1). So no record is ever late
and no window fires before a record that belongs to it (or, for sessions, that merges with it,
adjacent windows included) has arrived, whenever the periodic watermarks come: the window results
do not depend on watermark timing (only the interleaving of results of different keys/windows that
fire at the same watermark may). ``COUNT`` feeds count-based windows: watermarks play no part.

Paced inputs (``LATENESS``, ``CONTINUOUS``): the Flink driver emits one record every ``PACE_S``
(0.4 s) with watermarks every 10 ms and bound ``PACED_BOUND_MS`` = 0, so the watermark that
follows a record (its timestamp - 1, for a new maximum) reaches the window operator before the next
record does. The driver records the watermark each record met, so a test can check that.
"""

from __future__ import annotations

Record = tuple[str, int, int]

BOUND_MS = 5
PACED_BOUND_MS = 0

# "tumbling_reduce": tumbling event-time windows of TUMBLING_SIZE_MS, reduce = sum of values.
# Covers: ts 0 (first ms of [0,10)), ts 9 (last ms of [0,10)), ts 10 (first ms of [10,20)),
# a record for [0,10) arriving after one of [10,20) (a@8 after b@12), key a with no record in
# [20,30) (no empty window fires), windows left open at the end of input (fire at Long.MAX_VALUE).
TUMBLING_SIZE_MS = 10
TUMBLING: list[Record] = [
    ("a", 0, 1),
    ("b", 1, 2),
    ("a", 4, 3),
    ("a", 9, 4),
    ("b", 7, 5),
    ("a", 10, 6),
    ("b", 12, 7),
    ("a", 8, 8),
    ("a", 15, 9),
    ("b", 19, 10),
    ("b", 20, 11),
    ("a", 31, 12),
    ("b", 28, 13),
    ("a", 29, 14),
    ("a", 39, 15),
    ("b", 40, 16),
]

# "sliding_aggregate": sliding event-time windows, size 10 slide 5, aggregate (count, sum).
# Each record is in two windows; ts 2 and 3 are in [-5,5) (a window with a negative start).
SLIDING_SIZE_MS = 10
SLIDING_SLIDE_MS = 5
SLIDING: list[Record] = [
    ("a", 2, 1),
    ("b", 3, 2),
    ("a", 5, 3),
    ("a", 7, 4),
    ("b", 9, 5),
    ("a", 11, 6),
    ("b", 14, 7),
    ("a", 10, 8),
    ("a", 19, 9),
    ("b", 22, 10),
    ("a", 24, 11),
]

# "session_process": event-time session windows with gap SESSION_GAP_MS (a record at t opens
# [t, t+5)). Key a: 1 and 3 make [1,8); 11 makes [11,16); then 7 ([7,12)) overlaps both and
# bridges them into one session [1,16). 20 makes [20,25) and 25 ([25,30)) only touches it: Flink's
# TimeWindow.intersects is inclusive (start <= other.end and end >= other.start), so adjacent
# sessions merge into [20,30). 31 ([31,36)) is 1 ms past that: a session of its own.
# Key b: 2 -> [2,7) and 9 -> [9,14) stay apart (gap 7); 40 -> [40,45).
SESSION_GAP_MS = 5
SESSION: list[Record] = [
    ("a", 1, 1),
    ("b", 2, 2),
    ("a", 3, 3),
    ("b", 9, 4),
    ("a", 11, 5),
    ("a", 7, 6),
    ("a", 20, 7),
    ("a", 25, 8),
    ("a", 31, 9),
    ("b", 40, 10),
]

# "tumbling_offset": tumbling windows of size 10 with offset 3 (windows [..., -17, -7, 3, 13, 23 ...)),
# negative timestamps included. Expected windows: -15 and -8 -> [-17,-7); -7, -3, 0, 2 -> [-7,3);
# 3 and 12 -> [3,13); 13, 22 -> [13,23); 23 -> [23,33).
OFFSET_SIZE_MS = 10
OFFSET_MS = 3
OFFSET: list[Record] = [
    ("a", -15, 1),
    ("a", -8, 2),
    ("a", -7, 3),
    ("b", -3, 4),
    ("a", 2, 5),
    ("a", 3, 6),
    ("b", 0, 7),
    ("a", 12, 8),
    ("a", 13, 9),
    ("b", 22, 10),
    ("b", 23, 11),
]

# "lateness" (paced, bound 0): tumbling 10 with allowed lateness 5 and a late-data side output.
# Values are powers of two, so a window's sum tells which records it held. With the watermark
# following every record (watermark = max timestamp - 1), the watermark each record meets is noted:
#   k@2 (wm none), k@7 (wm 1), k@12 (wm 6; after it wm 11 fires [0,10) on time),
#   k@5 (wm 11: late firing of [0,10)), k@14 (wm 11), k@9 (wm 13: late firing, 9+5 > 13),
#   k@15 (wm 13; after it wm 14 = [0,10)'s cleanup time 9+5), k@3 (wm 14: [0,10) gone -> side output),
#   k@9 (wm 14: ts + lateness == watermark -> side output), k@22 (wm 14; then wm 21 fires [10,20)),
#   k@18, k@11 (wm 21: late firings), k@24 (wm 21), k@19 (wm 23: late firing, 19+5 > 23),
#   k@26 (wm 23; then wm 25 passes [10,20)'s cleanup time 24), k@10 (wm 25: side output),
#   k@31 (wm 25; then wm 30 fires [20,30)); end of input: [30,40) fires at Long.MAX_VALUE.
LATENESS_SIZE_MS = 10
ALLOWED_LATENESS_MS = 5
LATENESS: list[Record] = [
    ("k", 2, 1),
    ("k", 7, 2),
    ("k", 12, 4),
    ("k", 5, 8),
    ("k", 14, 16),
    ("k", 9, 32),
    ("k", 15, 64),
    ("k", 3, 128),
    ("k", 9, 256),
    ("k", 22, 512),
    ("k", 18, 1024),
    ("k", 11, 2048),
    ("k", 24, 4096),
    ("k", 19, 8192),
    ("k", 26, 16384),
    ("k", 10, 32768),
    ("k", 31, 65536),
]

# "continuous_trigger" (paced, bound 0): tumbling 20 with ContinuousEventTimeTrigger of 5 ms
# (no purge: each firing emits the window's whole content so far). Key c spans [0,20) and [20,40);
# c@22 arrives after c@27 (wm 26). Key d's two records come last: their window [40,60) only has
# the end-of-input watermark (Long.MAX_VALUE) to fire its intermediate timers.
CONTINUOUS_SIZE_MS = 20
CONTINUOUS_INTERVAL_MS = 5
CONTINUOUS: list[Record] = [
    ("c", 1, 1),
    ("c", 3, 2),
    ("c", 6, 4),
    ("c", 8, 8),
    ("c", 13, 16),
    ("c", 14, 32),
    ("c", 27, 64),
    ("c", 22, 128),
    ("c", 33, 256),
    ("d", 41, 1),
    ("d", 42, 2),
]

# "count_trigger" (GlobalWindows + PurgingTrigger(CountTrigger.of(3))), "count_window"
# (count_window(3)) and "count_window_sliding" (count_window(3, 2)): key a has 7 records (values
# 1..7), key b 5 (values 10..50), interleaved; the leftovers at the end of input (a: 1, b: 2) never
# make a full count.
COUNT_SIZE = 3
COUNT_SLIDE = 2
COUNT: list[Record] = [
    ("a", 1, 1),
    ("b", 2, 10),
    ("a", 3, 2),
    ("a", 4, 3),
    ("b", 5, 20),
    ("a", 6, 4),
    ("b", 7, 30),
    ("a", 8, 5),
    ("a", 9, 6),
    ("b", 10, 40),
    ("a", 11, 7),
    ("b", 12, 50),
]
