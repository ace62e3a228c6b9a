"""A commit point for sources without one of their own: a committed-checkpoint file per split.

Used for in-memory and file sources. The file is replaced atomically, so the committed checkpoint
is always one complete record. It has no transaction: sinks flush before it is written, which makes
the job at-least-once for external sinks (exactly-once for state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eventapp._fs import write_atomically
from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.errors import RestoreError

__all__ = ["FileCommitPoint"]


class FileCommitPoint:
    """Stores a split's committed checkpoint in ``<directory>/_committed.json``."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._path = directory / "_committed.json"

    def __repr__(self) -> str:
        return f"FileCommitPoint({str(self._path)!r})"

    @property
    def transaction(self) -> Any:
        return None

    def recover(self, *, has_committed_snapshots: bool = True) -> CommittedCheckpoint | None:
        if not self._path.exists():
            return None
        try:
            data = json.loads(self._path.read_bytes())
            return CommittedCheckpoint(
                checkpoint_id=int(data["checkpoint_id"]),
                snapshot=str(data["snapshot"]),
                position=None if data["position"] is None else int(data["position"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RestoreError(
                f"cannot read the committed checkpoint {self._path} ({exc}); restore it from a backup "
                f"or delete it to start the split from scratch (its state is then lost)"
            ) from exc

    def commit(self, checkpoint: CommittedCheckpoint) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        record = {
            "checkpoint_id": checkpoint.checkpoint_id,
            "snapshot": checkpoint.snapshot,
            "position": checkpoint.position,
        }
        write_atomically(self._path, json.dumps(record, sort_keys=True).encode())

    def close(self) -> None:
        return None
