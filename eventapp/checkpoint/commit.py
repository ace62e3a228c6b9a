"""The commit point seam: where a split's checkpoint becomes final.

A checkpoint of a split is first a *candidate*: its state snapshot lies in checkpoint storage. It
becomes the split's committed checkpoint only when the commit point records it, atomically with the
split's position (and, for Kafka exactly-once, with the outputs produced since the last checkpoint).
On restore, the commit point says which checkpoint is committed; the snapshot is looked up by that id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from eventapp.transaction import Transaction

__all__ = ["CommitPoint", "CommittedCheckpoint"]


@dataclass(frozen=True, slots=True)
class CommittedCheckpoint:
    """What a commit point stores for one split.

    ``checkpoint_id`` increases by one per checkpoint of the split; ``snapshot`` is the snapshot's
    name in checkpoint storage (it names the checkpoint id and the writer's incarnation);
    ``position`` is the next record to read, or ``None`` if the split has not been read yet.
    """

    checkpoint_id: int
    snapshot: str
    position: int | None


@runtime_checkable
class CommitPoint(Protocol):
    """Records committed checkpoints of one split."""

    @property
    def transaction(self) -> Transaction | None:
        """The split's open transaction, which sinks write into (``None`` when there is none)."""
        ...

    def recover(self, *, has_committed_snapshots: bool = True) -> CommittedCheckpoint | None:
        """Fence any previous owner of the split, then return its committed checkpoint (or ``None``).

        Called once, before the split is read. After it, the commit point is ready for new output.
        ``has_committed_snapshots`` says whether checkpoint storage holds snapshots of this split
        that a commit completed; when it is False a commit point may skip searching for a
        checkpoint that its own committed position does not name (the split was never checkpointed).
        """
        ...

    def commit(self, checkpoint: CommittedCheckpoint) -> None:
        """Atomically record ``checkpoint`` (and commit any open transaction with it)."""
        ...

    def close(self) -> None: ...
