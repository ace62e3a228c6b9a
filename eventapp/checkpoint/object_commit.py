"""A commit point in object storage for sources without one of their own: one ``_committed.json``
object per split (the object store counterpart of :class:`~eventapp.checkpoint.local_commit.FileCommitPoint`).

A PUT replaces an object atomically (readers see the old or the new content, never a mix), so the
committed checkpoint is always one complete record.
"""

from __future__ import annotations

import json
from typing import Any

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.errors import ObjectNotFoundError, RestoreError
from eventapp.objectstore.s3 import ObjectStore

__all__ = ["ObjectCommitPoint"]


class ObjectCommitPoint:
    """Stores a split's committed checkpoint in the object ``key`` of ``store``."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self._store = store
        self._key = key

    def __repr__(self) -> str:
        return f"ObjectCommitPoint('s3://{self._store.bucket}/{self._key}')"

    @property
    def transaction(self) -> Any:
        return None

    def recover(self, *, has_committed_snapshots: bool = True) -> CommittedCheckpoint | None:
        try:
            data = self._store.get_bytes(self._key)
        except ObjectNotFoundError:
            return None
        try:
            record = json.loads(data)
            return CommittedCheckpoint(
                checkpoint_id=int(record["checkpoint_id"]),
                snapshot=str(record["snapshot"]),
                position=None if record["position"] is None else int(record["position"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RestoreError(
                f"cannot read the committed checkpoint s3://{self._store.bucket}/{self._key} ({exc}); "
                f"restore it from a backup (or a bucket version) or delete it to start the split from "
                f"scratch (its state is then lost)"
            ) from exc

    def commit(self, checkpoint: CommittedCheckpoint) -> None:
        record = {
            "checkpoint_id": checkpoint.checkpoint_id,
            "snapshot": checkpoint.snapshot,
            "position": checkpoint.position,
        }
        self._store.put_bytes(self._key, json.dumps(record, sort_keys=True).encode())

    def close(self) -> None:
        return None
