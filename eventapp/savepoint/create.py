"""``eventapp savepoint create``: a savepoint assembled from every split's newest committed checkpoint.

Each split checkpoints on its own, so a savepoint of a job is, per split, the state and position of
its newest checkpoint that committed (marked committed in checkpoint storage). Creating one reads
checkpoint storage only: it neither stops nor fences the running job, commits nothing, and does not
become a recovery point (Flink >= 1.15). A snapshot pruned while it is being read is replaced by the
split's newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from eventapp.checkpoint.meta import SnapshotMeta
from eventapp.checkpoint.storage import CheckpointStorage, SnapshotInfo
from eventapp.errors import SavepointError, SnapshotMissingError
from eventapp.savepoint.format import SavepointMetadata
from eventapp.savepoint.native import read_snapshot_entries
from eventapp.savepoint.writer import SavepointWriter, writing_savepoint
from eventapp.state.keys import MIN_TIMESTAMP

__all__ = ["CreatedSavepoint", "create_savepoint"]

log = structlog.get_logger("eventapp.savepoint")

_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class CreatedSavepoint:
    path: Path
    metadata: SavepointMetadata
    #: Splits with no committed checkpoint: in the savepoint with empty state and no position.
    never_checkpointed: tuple[str, ...]


def create_savepoint(
    storage: CheckpointStorage,
    job: str,
    splits: Sequence[str],
    target: Path,
    *,
    max_parallelism: int,
    partitioner: str,
    native: bool = False,
) -> CreatedSavepoint:
    """Write a savepoint of ``job``'s ``splits`` under ``target``: canonical (entries files), or with
    ``native`` the checkpoints' own snapshot files (:mod:`eventapp.savepoint.native`).

    :raises SavepointError: no split has a committed checkpoint, or a snapshot cannot be read. On
        failure the half-written directory is removed.
    """
    newest = {s: _newest_committed(storage, job, s) for s in splits}
    if not any(newest.values()):
        raise SavepointError(
            f"job {job!r} has no committed checkpoint in {storage!r} for any of its splits "
            f"{list(splits)}; a savepoint is made from committed checkpoints: run the job with "
            f"checkpointing until one completes (eventapp checkpoints list shows them)"
        )
    backends: set[str] = set()
    never: list[str] = []
    with writing_savepoint(
        target, job=job, max_parallelism=max_parallelism, partitioner=partitioner, origin="checkpoints"
    ) as writer:
        for split in splits:
            info = newest[split]
            if info is None:
                never.append(split)
                writer.add_split(split, (), position=None, max_timestamp=MIN_TIMESTAMP)
                continue
            backends.add(_add_from_checkpoint(writer, storage, job, split, info, native))
        # The backend names are informative only (the format is the same for all).
        metadata = writer.finish(backend=",".join(sorted(backends)) or None)
    directory = writer.directory
    log.info(
        "savepoint.created",
        job=job,
        path=str(directory),
        savepoint_id=metadata.id,
        splits=len(splits),
        type="native" if native else "canonical",
        never_checkpointed=never,
    )
    return CreatedSavepoint(directory, metadata, tuple(never))


def _newest_committed(storage: CheckpointStorage, job: str, split: str) -> SnapshotInfo | None:
    committed = [i for i in storage.list_snapshots(job, split) if i.committed]
    return committed[-1] if committed else None


def _add_from_checkpoint(
    writer: SavepointWriter,
    storage: CheckpointStorage,
    job: str,
    split: str,
    newest: SnapshotInfo,
    native: bool,
) -> str:
    """Add ``split``'s newest committed snapshot (``newest``, listed again after a prune); returns
    its backend's name."""
    info: SnapshotInfo | None = newest
    for attempt in range(_ATTEMPTS):
        if attempt:
            info = _newest_committed(storage, job, split)
        assert info is not None
        try:
            path, data = storage.open(job, split, info.name)
            meta = SnapshotMeta.from_json(path, data)
            if native:
                writer.add_native_split(
                    split,
                    path / "state",
                    backend=meta.backend,
                    operators=meta.operators,
                    position=meta.position,
                    max_timestamp=meta.max_timestamp,
                    checkpoint_id=meta.checkpoint_id,
                    snapshot=meta.snapshot,
                    schemas=meta.schemas,
                )
                return meta.backend
            with read_snapshot_entries(meta.backend, path / "state") as store:
                writer.add_split(
                    split,
                    store.scan(b""),
                    position=meta.position,
                    max_timestamp=meta.max_timestamp,
                    checkpoint_id=meta.checkpoint_id,
                    snapshot=meta.snapshot,
                    schemas=meta.schemas,
                )
            return meta.backend
        except (SnapshotMissingError, FileNotFoundError) as exc:
            # Pruned while being read (the job kept checkpointing): take the newer one.
            log.info("savepoint.snapshot_pruned", split=split, snapshot=info.name, attempt=attempt + 1)
            if attempt + 1 == _ATTEMPTS:
                raise SavepointError(
                    f"split {split!r}: its newest committed snapshots were pruned while being read "
                    f"{_ATTEMPTS} times; retry, or raise CheckpointConfig.retained"
                ) from exc
    raise AssertionError("unreachable")
