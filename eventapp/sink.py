"""The sink seam: one writer per input split, flushed at every checkpoint.

A writer belongs to one input split so that everything a split produces between two checkpoints is
committed together with that split's state and position (see ``docs/exactly-once.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from eventapp.transaction import Transaction

__all__ = ["Sink", "SinkContext", "SinkWriter", "WriteCounter"]

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
