"""What a running worker reports about itself: per split and per checkpoint (read by the job
manager's REST API, dashboard and Prometheus metrics, see :mod:`eventapp.daemon`).

Plain frozen records, built on demand by :meth:`LocalRunner.stats
<eventapp.runtime.local.LocalRunner.stats>` from the split tasks, so the hot path only keeps the
counters it already keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from eventapp.sink import WriteCounter
from eventapp.source import LagReporter
from eventapp.state.keys import MIN_TIMESTAMP

if TYPE_CHECKING:
    from eventapp.runtime.split_task import SplitTask

__all__ = ["CheckpointStats", "JobResult", "RunnerStats", "SplitStats", "split_stats"]


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a finished (or stopped) run did."""

    records_read: int
    dead_letters: int
    checkpoints: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class CheckpointStats:
    """One completed checkpoint of a worker (all of its splits)."""

    #: The checkpoint id of each split (splits restored from different checkpoints count apart).
    checkpoint_ids: dict[str, int]
    #: When it was triggered (epoch ms, wall clock).
    triggered_ms: int
    #: From trigger to the last split's commit (ms).
    duration_ms: float
    #: How long the splits stopped processing for it (ms): the whole duration when the worker
    #: waited for it; for an asynchronous one, its synchronous part plus writing the outputs held
    #: meanwhile (see eventapp.runtime.checkpoint_coordinator).
    pause_ms: float
    #: Bytes of the state snapshots written (every file of each split's snapshot directory).
    size_bytes: int
    #: Whether the splits went on processing while it completed.
    asynchronous: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SplitStats:
    """One split as its worker sees it now."""

    split: str
    #: The next record to read (None: not read yet and no start known).
    position: int | None
    #: Records read from the split since this worker started (including dead-lettered ones).
    records_in: int
    #: Records written to the sinks for it since this worker started (where sinks count them).
    records_out: int
    dead_letters: int
    #: Id of its last committed checkpoint (0: none yet).
    checkpoint_id: int
    #: Its largest event timestamp so far (epoch ms; None before the first).
    max_timestamp: int | None
    #: Records in the split after ``position`` (None where the source cannot tell).
    lag: int | None
    #: Bytes of its last checkpoint's state snapshot (0: none yet).
    state_bytes: int


@dataclass(frozen=True, slots=True)
class RunnerStats:
    """A worker's view of itself (see :meth:`LocalRunner.stats`)."""

    splits: tuple[SplitStats, ...]
    #: The worker's watermark (epoch ms; None before the first).
    watermark: int | None
    #: Seconds spent processing, and waiting for input (polls that returned nothing).
    busy_s: float
    idle_s: float
    #: Seconds the worker took to restore its splits when it opened.
    restore_s: float
    checkpoints: int
    #: Consumer-group rebalance callbacks seen (assigned, revoked or lost; 0 without --group).
    rebalances: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def split_stats(tasks: Iterable[SplitTask], reader: object | None) -> tuple[SplitStats, ...]:
    """The :class:`SplitStats` of ``tasks``; lag where ``reader`` is a
    :class:`~eventapp.source.LagReporter`, records out where the writers are
    :class:`~eventapp.sink.WriteCounter`."""
    tasks = list(tasks)
    lags: Mapping[str, int] = {}
    if isinstance(reader, LagReporter):
        lags = reader.lag({t.id: t.position for t in tasks})
    out: list[SplitStats] = []
    for task in tasks:
        max_ts = task.watermark.max_timestamp
        out.append(
            SplitStats(
                split=task.id,
                position=task.position,
                records_in=task.records,
                records_out=sum(w.records_written for w in task.writers if isinstance(w, WriteCounter)),
                dead_letters=task.dead_letters,
                checkpoint_id=task.checkpoint_id,
                max_timestamp=None if max_ts <= MIN_TIMESTAMP else max_ts,
                lag=lags.get(task.id),
                state_bytes=task.state_bytes,
            )
        )
    return tuple(out)
