"""Inputs of the differential programs, shared by the Flink driver and the eventapp side.

Standard library only: ``flink_programs.py`` imports this module in the Flink virtualenv, where
eventapp is not installed. Every input is a list of JSON-able tuples.

In every input except ``LATE`` each record's timestamp is at most ``BOUND_MS`` below the largest
timestamp before it, so no record is ever late under a bounded-out-of-orderness watermark of
``BOUND_MS`` (watermark = max timestamp - bound - 1), whenever the watermarks are emitted. That is what
makes the outputs of programs 1 and 2 independent of when Flink's periodic watermarks come.
"""

from __future__ import annotations

BOUND_MS = 5

# Program 1: (key, ts). a@4 twice: both register the timer at 14, which must fire once.
COUNTS: list[tuple[str, int]] = [
    ("a", 1),
    ("b", 2),
    ("a", 4),
    ("a", 4),
    ("b", 9),
    ("a", 12),
    ("b", 11),
    ("a", 14),
    ("b", 20),
    ("a", 25),
    ("b", 24),
    ("a", 40),
]
COUNT_TIMER_DELAY_MS = 10

# Program 2: (user, ts, amount). Stage A sums per user over tumbling 10 ms windows, stage B sums
# A's results per group (users u1 and u2 are g1, u3 is g2) over tumbling 30 ms windows.
WINDOWS: list[tuple[str, int, int]] = [
    ("u1", 1, 1),
    ("u2", 3, 10),
    ("u3", 4, 100),
    ("u1", 8, 2),
    ("u2", 12, 20),
    ("u1", 15, 3),
    ("u3", 13, 200),
    ("u1", 22, 4),
    ("u2", 27, 30),
    ("u3", 29, 300),
    ("u1", 31, 5),
    ("u2", 38, 40),
    ("u3", 44, 400),
    ("u1", 52, 6),
    ("u2", 58, 50),
    ("u3", 61, 500),
    ("u1", 67, 7),
    ("u2", 75, 60),
]
GROUPS: dict[str, str] = {"u1": "g1", "u2": "g1", "u3": "g2"}
SMALL_WINDOW_MS = 10
LARGE_WINDOW_MS = 30

# Program 3: (key, ts, near). A record with near=True registers a processing-time timer
# NEAR_TIMER_MS after "now"; the key "far" also registers one FAR_TIMER_MS after now, which is still
# pending when the input ends. The last record registers nothing: it holds the input open for one
# more pace interval, so that the near timer of the record before it comes due before the end of
# the input (a processing-time timer pending at the end of input never fires in Flink).
PROCESSING: list[tuple[str, int, bool]] = [
    ("a", 1, True),
    ("b", 2, True),
    ("far", 3, True),
    ("a", 4, True),
    ("end", 5, False),
]
NEAR_TIMER_MS = 20
FAR_TIMER_MS = 60_000

# Program 4: (key, ts) with watermark bound 0 (monotonous): ts 50 and 150 are late (below the
# watermark when they arrive, if the watermark follows every record). Each record registers an
# event-time timer at its own timestamp: for a late record that timer is already in the past.
LATE: list[tuple[str, int]] = [("k", 100), ("k", 200), ("k", 50), ("k", 300), ("k", 150), ("k", 300)]
LATE_BOUND_MS = 0
