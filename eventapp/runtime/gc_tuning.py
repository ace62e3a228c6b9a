"""Python's garbage collector, tuned for a worker process that streams records.

With CPython's defaults (a generation-0 collection every 700 allocations of container objects) a
worker spends about a tenth of its time collecting: every record makes a few dicts and lists, most
die young, but the records a reader buffers and everything the process built at start-up are
traversed again and again. Measured on the card workload of ``benchmarks.bench_kafka`` (500k
records, 8 splits): 0.41 s of 3.85 s in 2,365 collections with the defaults; 0.07 s in 86 with
the objects of start-up frozen and a generation-0 threshold of 10,000 (``docs/benchmarks.md``).

``eventapp run`` workers call :func:`tune_for_streaming` before their job starts, unless
``EVENTAPP_GC_TUNING=0``. A program that runs jobs in its own process (``Job.run()``) keeps its
settings; it may call this function itself.
"""

from __future__ import annotations

import gc
import os

__all__ = ["GEN0_THRESHOLD", "tune_for_streaming", "wanted"]

#: Allocations of container objects between two generation-0 collections.
GEN0_THRESHOLD = 10_000


def wanted() -> bool:
    """Whether the worker should tune the collector (``EVENTAPP_GC_TUNING`` is not ``0``)."""
    return os.environ.get("EVENTAPP_GC_TUNING", "1").strip() not in {"0", "false", "no", "off"}


def tune_for_streaming() -> tuple[int, int, int]:
    """Collect once, move every object that survives into the permanent generation (never traversed
    again), and raise the generation-0 threshold to :data:`GEN0_THRESHOLD`. Returns the previous
    thresholds."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, previous[1], previous[2])
    return previous
