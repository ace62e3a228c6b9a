"""The source seam: a source is a set of splits (for Kafka, one per partition) read by a reader.

A subtask owns some splits. Each split has its own keyed state, timers, watermark and position, and
is checkpointed and committed on its own, so splits can move between subtasks when a job rescales.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

__all__ = [
    "CommittingSource",
    "DiscoveringSource",
    "GroupReader",
    "GroupSource",
    "LagReporter",
    "PausableReader",
    "Source",
    "SourceReader",
    "SourceRecord",
    "SplitListener",
    "discovers_splits",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(slots=True)
class SourceRecord(Generic[T]):
    """One record read from a split.

    ``position`` is the record's own offset in the split (the position to resume from after it is
    ``position + 1``). ``timestamp`` is the record's event time in epoch milliseconds, if the source
    knows one. When the reader could not decode the record, ``error`` is set, ``value`` is ``None``
    and ``raw`` holds the undecoded payload, so the job's error policy can route it.
    """

    split: str
    value: T
    timestamp: int | None
    position: int | None = None
    raw: Any = None
    error: BaseException | None = None


@runtime_checkable
class SourceReader(Protocol[T_co]):
    """Reads the splits assigned to one subtask."""

    def poll(self, max_records: int, timeout: float) -> Sequence[SourceRecord[Any]]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first one."""
        ...

    def is_finished(self) -> bool:
        """True once a bounded source has returned its last record; unbounded sources return False."""
        ...

    def finished_splits(self) -> Collection[str]:
        """The splits that have returned their last record (a bounded source's, one by one). A
        finished split no longer holds the worker's watermark back, as in Flink, where a finished
        split's watermark output is released. Unbounded sources return an empty collection."""
        ...

    def start_positions(self) -> Mapping[str, int]:
        """The position each split started at, where it is known: every restored position, and the
        configured start resolved to a position where the source can (Kafka: ``latest`` to the
        partition's end offset). The runtime checkpoints a split that has read nothing yet at this
        position, so a restart continues there instead of resolving the start again (for ``latest``
        that would skip whatever arrived while the job was down). Splits whose configured start gives
        the same records whenever it is resolved (``earliest``) may be left out."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class PausableReader(Protocol):
    """A reader that can stop handing out (and fetching) records of some splits for a while (Flink's
    ``SourceReader.pauseOrResumeSplits``); watermark alignment needs it."""

    def pause_or_resume(self, pause: Collection[str], resume: Collection[str]) -> None:
        """Stop returning records of the splits in ``pause`` and start again for those in ``resume``.
        Pausing never loses a record: a resumed split continues after the last one returned."""
        ...


@runtime_checkable
class LagReporter(Protocol):
    """A reader that knows how far each split's end is ahead of its position (Flink's
    ``pendingRecords``); the job manager shows it as consumer lag."""

    def lag(self, positions: Mapping[str, int | None]) -> Mapping[str, int]:
        """Records after each position (the next record to read) of ``positions``, for the splits
        where the reader knows the end. Called about once a second, in the worker's thread."""
        ...


@runtime_checkable
class Source(Protocol[T_co]):
    """A (possibly unbounded) collection of splits."""

    @property
    def name(self) -> str:
        """Printable name, used in logs and errors."""
        ...

    def splits(self) -> Sequence[str]:
        """Every split of this source, as stable printable ids (``"orders-0"``, ...)."""
        ...

    def create_reader(self, splits: Sequence[str], start_positions: Mapping[str, int]) -> SourceReader[T_co]:
        """A reader over ``splits``. ``start_positions`` holds restored positions (the next record to
        read) for the splits that have one; the others start at the source's configured start."""
        ...


class SplitListener(Protocol):
    """What a :class:`GroupReader` tells the runtime when the group moves splits (the runner
    implements it). Every call comes from inside the reader's ``poll``, in the worker's thread."""

    def splits_assigned(self, splits: Sequence[str]) -> None:
        """These splits are now this worker's, not yet reading: the runtime restores them (fencing
        their previous owner) after ``poll`` returns, then calls :meth:`GroupReader.start_splits`."""
        ...

    def splits_revoked(self, splits: Sequence[str]) -> None:
        """These splits go to another worker: checkpoint and release them now (their next owner
        restores that checkpoint). If that fails, release them without committing."""
        ...

    def splits_lost(self, splits: Sequence[str]) -> None:
        """These splits were taken away (this worker was out of the group too long): release them
        without committing anything; another worker may already own them."""
        ...


@runtime_checkable
class GroupReader(SourceReader[T_co], Protocol[T_co]):
    """A reader whose splits come and go at runtime: a consumer group assigns them, or the source
    discovers new ones (:class:`DiscoveringSource`)."""

    def start_splits(self, positions: Mapping[str, int | None]) -> Mapping[str, int]:
        """Start reading more splits at these positions (None: no checkpoint; a group's split starts
        at the source's configured start, a discovered one at its earliest record). Returns the
        positions where it is known (as :meth:`SourceReader.start_positions`)."""
        ...


@runtime_checkable
class DiscoveringSource(Protocol):
    """A source whose splits can appear while a job runs (Flink's periodic partition discovery,
    ``partition.discovery.interval.ms``): the runtime asks it for its splits every
    :attr:`discovery_interval_ms` and starts the new ones this subtask owns
    (:func:`eventapp.assignment.owner_of`: a split's owner never depends on the other splits).
    Its readers must be :class:`GroupReader` s (they take new splits with ``start_splits``).
    Splits are never taken away by discovery: a split that disappears is the reader's error."""

    @property
    def discovery_interval_ms(self) -> int | None:
        """How often to look for new splits (``None``: the splits are listed once, at start)."""
        ...

    def discover_splits(self) -> Sequence[str]:
        """Every split there is now (possibly none yet)."""
        ...


@runtime_checkable
class GroupSource(Protocol[T_co]):
    """A source whose splits a consumer group assigns to the workers (``eventapp run --group``)."""

    def create_group_reader(
        self, listener: SplitListener, instance_id: str | None = None
    ) -> GroupReader[T_co]:
        """A reader that joins the source's consumer group; ``instance_id`` is this worker's static
        membership id (``eventapp run --group-instance-id``), if any."""
        ...


@runtime_checkable
class CommittingSource(Protocol):
    """A source that records committed checkpoints itself (Kafka: in the consumer group's offsets,
    inside the output transaction). Sources without it get a file-based commit point in checkpoint
    storage."""

    def create_commit_point(self, job: str, split: str, exactly_once: bool) -> Any:
        """The :class:`~eventapp.checkpoint.commit.CommitPoint` of ``split`` for job ``job``."""
        ...

    def validate_checkpointing(self, interval_ms: int, exactly_once: bool) -> None:
        """Raise :class:`~eventapp.errors.ConfigurationError` if the source's commit settings do
        not fit this checkpoint interval (for Kafka: the transaction timeout)."""
        ...


def discovers_splits(source: object) -> bool:
    """``source`` looks for new splits while a job runs (a :class:`DiscoveringSource` with an
    interval)."""
    return isinstance(source, DiscoveringSource) and source.discovery_interval_ms is not None
