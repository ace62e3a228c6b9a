"""The metadata record of a split snapshot (``split.json`` beside its ``state/`` directory)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventapp.errors import RestoreError, SnapshotCorruptError

__all__ = ["LEGACY_LINEAGE", "SNAPSHOT_FORMAT", "SnapshotMeta"]

#: Version of the snapshot layout this eventapp writes and reads.
SNAPSHOT_FORMAT = 1
#: Lineage of snapshots written before lineages existed.
LEGACY_LINEAGE = "legacy"


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What a snapshot of one split holds besides its state."""

    #: The snapshot's name in checkpoint storage (names the checkpoint id and the writer).
    snapshot: str
    job: str
    split: str
    checkpoint_id: int
    #: The next record to read, or ``None`` if the split had not been read yet.
    position: int | None
    #: The largest event timestamp the split had seen (its watermark restarts from it).
    max_timestamp: int
    #: Name of the state backend that wrote ``state/``.
    backend: str
    #: The chain of snapshots this one continues (see :mod:`eventapp.checkpoint.restore`).
    lineage: str
    #: Uids of the job's stateful operators.
    operators: tuple[str, ...]
    created_ms: int
    #: The savepoint this split's lineage was restored from (``None``: none), so that restarting
    #: with the same ``--from-savepoint`` restores the split's newer checkpoint instead.
    savepoint: str | None = None
    #: Per operator uid, per state name: the state's schema (``StateSchema.to_json()``), checked
    #: when a restored job registers the state (see :mod:`eventapp.state.schema`).
    schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    format: int = SNAPSHOT_FORMAT

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "snapshot": self.snapshot,
            "job": self.job,
            "split": self.split,
            "checkpoint_id": self.checkpoint_id,
            "position": self.position,
            "max_timestamp": self.max_timestamp,
            "backend": self.backend,
            "lineage": self.lineage,
            "operators": list(self.operators),
            "created_ms": self.created_ms,
            "savepoint": self.savepoint,
            "schemas": {uid: dict(states) for uid, states in self.schemas.items()},
        }

    @classmethod
    def from_json(cls, path: Path, data: Mapping[str, Any]) -> SnapshotMeta:
        """Read the metadata of the snapshot at ``path``.

        :raises SnapshotCorruptError: wrong format version or missing/invalid fields.
        """
        if data.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotCorruptError(
                f"snapshot {path} has format {data.get('format')!r}, this eventapp reads "
                f"{SNAPSHOT_FORMAT}; restore with the eventapp version that wrote it"
            )
        try:
            position = data.get("position")
            return cls(
                snapshot=str(data.get("snapshot", path.name)),
                job=str(data["job"]),
                split=str(data["split"]),
                checkpoint_id=int(data["checkpoint_id"]),
                position=None if position is None else int(position),
                max_timestamp=int(data["max_timestamp"]),
                backend=str(data["backend"]),
                lineage=str(data.get("lineage", LEGACY_LINEAGE)),
                operators=tuple(str(uid) for uid in data.get("operators", ())),
                created_ms=int(data.get("created_ms", 0)),
                savepoint=None if data.get("savepoint") is None else str(data["savepoint"]),
                schemas=_schemas(data.get("schemas", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotCorruptError(
                f"snapshot {path} has unreadable metadata ({type(exc).__name__}: {exc}); restore "
                f"another snapshot with --from-checkpoint"
            ) from exc

    def check_backend(self, path: Path, backend: str) -> None:
        """:raises RestoreError: the snapshot was written by another state backend."""
        if self.backend != backend:
            raise RestoreError(
                f"snapshot {path} of split {self.split!r} was written by the {self.backend!r} "
                f"state backend but this job uses {backend!r}; run with the same backend, or "
                f"move state with a savepoint"
            )


def _schemas(data: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise TypeError(f"schemas must map operator uids to states, got {type(data).__name__}")
    return {str(uid): {str(name): schema for name, schema in states.items()} for uid, states in data.items()}
