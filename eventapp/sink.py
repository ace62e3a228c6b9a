"""The sink seam: one writer per input split, flushed at every checkpoint.

A writer belongs to one input split so that everything a split produces between two checkpoints is
committed together with that split's state and position (see ``docs/exactly-once.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from eventapp.transaction import Transaction

__all__ = ["Sink", "SinkContext", "SinkWriter", "TwoPhaseSinkWriter", "WriteCounter"]

T_contra = TypeVar("T_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What a writer gets to know about where it runs.

    ``transaction`` is the split's open transaction when the job runs exactly-once through a commit
    point that owns one (for Kafka: a :class:`~eventapp.connectors.kafka.transaction.KafkaTransaction`);
    sinks that can write inside it must, and sinks that cannot are at-least-once (see
    :mod:`eventapp.transaction`).
    """

    job: str
    split: str
    transaction: Transaction | None = None


@runtime_checkable
class SinkWriter(Protocol[T_contra]):
    def write(self, value: T_contra, timestamp: int | None) -> None:
        """Write one value (``timestamp`` is its event time in epoch ms, if it has one)."""
        ...

    def flush(self) -> None:
        """Make everything written so far durable (or part of the open transaction). Called before
        each checkpoint commits; raise :class:`eventapp.errors.SinkError` if that is impossible."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class TwoPhaseSinkWriter(SinkWriter[T_contra], Protocol[T_contra]):
    """A writer whose effects are applied only after its split's checkpoint committed (Flink's
    two-phase committing sink: *prepare* with the snapshot, *commit* once the checkpoint is final).

    For sinks that cannot write into the split's transaction (Redis): what a split writes between
    two checkpoints is kept by the writer; :meth:`prepare_commit` hands it over when a checkpoint
    begins, the runtime stores it in the split's snapshot (so it is as durable as the state it came
    with), and calls :meth:`commit` after the checkpoint committed; a split restored from that
    checkpoint calls :meth:`commit` again with the stored bytes, because the process may have died
    between the checkpoint's commit and the writer's. So :meth:`commit` must apply a checkpoint's
    writes at most once however often it is called (a fencing token per split in the target
    system), and must never apply a checkpoint that did not commit (it is never asked to).
    Uncommitted writes are discarded with the state they came from. See ``docs/exactly-once.md``.
    """

    def prepare_commit(self, checkpoint_id: int) -> bytes | None:
        """Everything written since the previous checkpoint, as bytes to store with checkpoint
        ``checkpoint_id`` of the split (``None``: nothing was written). The writer starts afresh."""
        ...

    def commit(self, checkpoint_id: int, prepared: bytes) -> None:
        """Apply ``prepared`` (what :meth:`prepare_commit` returned for ``checkpoint_id``, perhaps
        in an earlier process), unless checkpoint ``checkpoint_id`` of this split or a later one was
        applied already. Raise :class:`eventapp.errors.SinkError` if it cannot be applied."""
        ...


@runtime_checkable
class WriteCounter(Protocol):
    """A writer that counts what it wrote (the job manager's records out; optional)."""

    @property
    def records_written(self) -> int:
        """Values written since the writer was created."""
        ...


@runtime_checkable
class Sink(Protocol[T_contra]):
    @property
    def name(self) -> str: ...

    def create_writer(self, context: SinkContext) -> SinkWriter[T_contra]: ...
