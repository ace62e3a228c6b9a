"""Jobs the job manager tests run in real worker processes (configuration from the environment:
``JM_CHECKPOINTS`` checkpoint storage, ``JM_OUT`` a directory each worker appends its outputs to).

``build_endless``: an unbounded source of 4 splits (``EndlessSource``: split ``s`` emits
``(s, 0), (s, 1), ...`` with event time ``seq * 1000``), counted per split key, a one-shot
event-time timer per key 1 h after its first record (fires only on a drain), file-based commit
points. ``build_poison``: a bounded job whose record ``"poison"`` always raises.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from eventapp import (
    CheckpointConfig,
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    OnTimerContext,
    SourceRecord,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSource

PER_POLL = 10


class _EndlessReader:
    def __init__(self, splits: Sequence[str], start: Mapping[str, int]) -> None:
        self._next = {s: start.get(s, 0) for s in splits}

    def poll(self, max_records: int, timeout: float) -> list[SourceRecord[Any]]:
        time.sleep(0.02)  # a source with a bounded rate (this is the source, not a test's wait)
        out: list[SourceRecord[Any]] = []
        for split, seq in self._next.items():
            for n in range(seq, seq + PER_POLL):
                out.append(SourceRecord(split, (split, n), n * 1000, position=n))
            self._next[split] = seq + PER_POLL
        return out

    def is_finished(self) -> bool:
        return False

    def finished_splits(self) -> Collection[str]:
        return ()

    def start_positions(self) -> Mapping[str, int]:
        return dict(self._next)

    def close(self) -> None:
        return None


class EndlessSource:
    name = "endless"

    def splits(self) -> Sequence[str]:
        return [f"endless-{i}" for i in range(4)]

    def create_reader(self, splits: Sequence[str], start_positions: Mapping[str, int]) -> _EndlessReader:
        return _EndlessReader(splits, start_positions)


class _FileSink:
    """Appends ``split seq`` lines to ``$JM_OUT/<split>``, flushed at checkpoints (at-least-once:
    enough for these tests, which check the job manager, not exactly-once)."""

    name = "file"

    def create_writer(self, context: Any) -> _FileWriter:
        return _FileWriter(Path(os.environ["JM_OUT"]) / context.split)


class _FileWriter:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._pending: list[str] = []
        self.records_written = 0

    def write(self, value: Any, timestamp: int | None) -> None:
        self._pending.append(f"{value}\n")
        self.records_written += 1

    def flush(self) -> None:
        if self._pending:
            with self._path.open("a") as out:
                out.write("".join(self._pending))
            self._pending.clear()

    def close(self) -> None:
        return None


class CountWithTimer(KeyedProcessFunction[str, Any, str]):
    """Counts records per split and emits ``<split> <seq>`` per record; one event-time timer per split far in the future (it fires only
    when a drain moves the watermark to +inf) emits ``timer <split> <count>``."""

    count = ValueStateDescriptor[int]("count", default=0)
    armed = ValueStateDescriptor[bool]("armed", default=False)

    def process_element(self, value: Any, ctx: Context, out: Collector[str]) -> None:
        state = ctx.get_state(self.count)
        state.update((state.value() or 0) + 1)
        out.collect(f"{value[0]} {value[1]}")
        armed = ctx.get_state(self.armed)
        if not armed.value():
            armed.update(True)
            ctx.timer_service.register_event_time_timer(value[1] * 1000 + 3_600_000_000_000)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[str]) -> None:
        out.collect(f"timer {ctx.current_key} {ctx.get_state(self.count).value()}")


def _config(interval_ms: int = 300) -> JobConfig:
    return JobConfig(
        checkpoint=CheckpointConfig(storage=os.environ["JM_CHECKPOINTS"], interval_ms=interval_ms)
    )


def build_endless() -> Job:
    job = Job("jm-endless", _config())
    stream = job.from_source(EndlessSource(), WatermarkStrategy.for_bounded_out_of_orderness(0))
    stream.key_by(lambda v: v[0], partitioned_by_source=True).process(CountWithTimer(), uid="count").sink_to(
        _FileSink()
    )
    return job


class FailOnPoison(KeyedProcessFunction[str, str, str]):
    def process_element(self, value: str, ctx: Context, out: Collector[str]) -> None:
        if value == "poison":
            raise ValueError("this record is poison")
        out.collect(value)


def build_poison() -> Job:
    job = Job("jm-poison", _config(600_000))
    source = CollectionSource(["a", "b", "poison", "c"], splits=2)
    job.from_source(source).key_by(lambda v: v, partitioned_by_source=True).process(
        FailOnPoison(), uid="fail"
    ).sink_to(_FileSink())
    return job


def build_bounded() -> Job:
    job = Job("jm-bounded", _config(600_000))
    source = CollectionSource([f"r{i}" for i in range(40)], splits=4)
    job.from_source(source).key_by(lambda v: v, partitioned_by_source=True).process(
        FailOnPoison(), uid="pass"
    ).sink_to(_FileSink())
    return job
