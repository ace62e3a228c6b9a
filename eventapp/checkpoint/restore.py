"""What a split restores from when a job opens, and the refusal rules.

A split restores the snapshot its commit point names (the committed checkpoint). Two other cases
need the user's word, given with :class:`RestoreRequest` (``eventapp run --from-checkpoint PATH`` or
``--start-fresh``):

* checkpoint storage holds **committed** snapshots of the split, but the commit point knows no
  committed checkpoint (a new group id, a lost or recreated Kafka cluster, a deleted
  ``_committed.json``). Starting from empty state would silently lose that state, so the job
  refuses to start (:class:`~eventapp.errors.RestoreError`) naming both facts and the ways forward:
  ``--from-checkpoint PATH`` restores a snapshot explicitly, ``--start-fresh`` archives the old
  snapshots (never deletes them) and starts the split from empty state.
* ``--from-checkpoint PATH`` restores the snapshots under ``PATH`` even where a committed checkpoint
  exists (as Flink's ``run -s``). The restored snapshot is never modified or deleted: the split
  starts a new *lineage* (see below) from it.

A lineage is the chain of snapshots that one sequence of commits produced: a split starting from
empty state (or from an explicit snapshot) starts a new lineage, a split restoring its committed
checkpoint continues the lineage of that snapshot. Every snapshot's metadata names its lineage, and
pruning deletes only old snapshots of the split's own lineage, never those of another one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.checkpoint.meta import LEGACY_LINEAGE
from eventapp.checkpoint.object_storage import ObjectCheckpointStorage
from eventapp.checkpoint.storage import (
    CheckpointStorage,
    SnapshotInfo,
    parse_snapshot_name,
    read_snapshot_meta,
)
from eventapp.errors import ConfigurationError, RestoreError
from eventapp.objectstore.location import ObjectLocation
from eventapp.objectstore.s3 import S3ObjectStore

__all__ = [
    "LEGACY_LINEAGE",
    "RestoreRequest",
    "explicit_snapshots",
    "lost_state",
    "refusal",
    "refuse_or_archive",
]

_META = "split.json"
_URI = "s3://"
_SNAPSHOT_OBJECT = "_snapshot.json"  # eventapp.checkpoint.object_storage's metadata object


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """The user's instructions for restoring splits (default: restore the committed checkpoints)."""

    #: A snapshot directory, a split directory or a job directory of checkpoint storage to restore
    #: (or the ``s3://`` URI of one in object storage, see :func:`explicit_snapshots`).
    from_checkpoint: Path | str | None = None
    #: Start splits whose committed checkpoint is unknown with empty state, archiving their snapshots.
    start_fresh: bool = False
    #: A savepoint directory to restore (``eventapp run --from-savepoint``, see
    #: :mod:`eventapp.savepoint.restore`), or its ``s3://`` URI (:mod:`eventapp.savepoint.remote`);
    #: never modified or deleted.
    from_savepoint: Path | str | None = None
    #: With ``from_savepoint``: drop the state of operators the job no longer has (listed in the log).
    allow_non_restored_state: bool = False
    #: With ``from_savepoint``: operator uids renamed since it was taken (old -> new).
    uid_renames: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        chosen = [
            name
            for name, given in (
                ("--from-checkpoint", self.from_checkpoint is not None),
                ("--start-fresh", self.start_fresh),
                ("--from-savepoint", self.from_savepoint is not None),
            )
            if given
        ]
        if len(chosen) > 1:
            raise ConfigurationError(
                f"{' and '.join(chosen)} exclude each other: restore a checkpoint, restore a savepoint, "
                f"or start from empty state"
            )
        if self.from_savepoint is None and (self.allow_non_restored_state or self.uid_renames):
            raise ConfigurationError(
                "--allow-non-restored-state and --rename-uid only apply with --from-savepoint DIR"
            )
        # An s3:// URI stays a string (Path() would fold its '//').
        if self.from_checkpoint is not None and not _is_uri(self.from_checkpoint):
            object.__setattr__(self, "from_checkpoint", Path(self.from_checkpoint))
        if self.from_savepoint is not None and not _is_uri(self.from_savepoint):
            object.__setattr__(self, "from_savepoint", Path(self.from_savepoint))


def _is_uri(path: object) -> bool:
    return isinstance(path, str) and path.startswith(_URI)


def _read_meta(path: Path) -> dict[str, Any]:
    return read_snapshot_meta(
        path,
        f"--from-checkpoint {path}",
        "Point it at a snapshot directory (chk-...), a split directory or a job directory of checkpoint "
        "storage.",
    )


def _newest_in(split_dir: Path) -> Path | None:
    """The newest snapshot of a split directory, preferring committed ones."""
    names = [p for p in split_dir.iterdir() if p.is_dir() and (p / _META).is_file()]
    if not names:
        return None
    committed = [p for p in names if (split_dir / "_committed" / p.name).exists()]
    return max(committed or names, key=lambda p: p.name)


def explicit_snapshots(
    path: Path | str, job: str, splits: list[str]
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """The snapshot under ``path`` for each of ``splits`` it covers.

    ``path`` is a snapshot directory (it covers the split its metadata names), a split directory
    (its newest committed snapshot) or a job directory (per split subdirectory, the newest committed
    snapshot). Snapshots of another job or another split are refused. An ``s3://`` URI names the
    same in object storage (``s3://bucket/prefix/<job>[/<split>[/<snapshot>]]``): those snapshots
    are downloaded (:func:`_remote_snapshots`), never modified.
    """
    if isinstance(path, str) and _is_uri(path):
        return _remote_snapshots(path, job, splits)
    path = Path(path)
    if not path.is_dir():
        raise RestoreError(f"--from-checkpoint {path} does not exist or is not a directory")
    if (path / _META).is_file():
        candidates = [path]
    elif (newest := _newest_in(path)) is not None:
        candidates = [newest]
    else:
        candidates = [n for d in sorted(path.iterdir()) if d.is_dir() and (n := _newest_in(d)) is not None]
    if not candidates:
        raise RestoreError(
            f"--from-checkpoint {path} holds no snapshot; point it at a snapshot directory (chk-...), a "
            f"split directory or a job directory of checkpoint storage"
        )
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for snapshot in candidates:
        meta = _read_meta(snapshot)
        if meta.get("job") != job:
            raise RestoreError(
                f"--from-checkpoint {snapshot} is a snapshot of job {meta.get('job')!r}, not of {job!r}; "
                f"restoring another job's state is refused (move state between jobs with a savepoint)"
            )
        split = str(meta.get("split"))
        if split in splits:
            found[split] = (snapshot, meta)
    return found


def _remote_snapshots(uri: str, job: str, splits: list[str]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """:func:`explicit_snapshots` of ``s3://bucket/prefix/<job>[/<split>[/<snapshot>]]``: each
    snapshot named is opened (downloaded, verified) through an :class:`ObjectCheckpointStorage`
    rooted at ``s3://bucket/prefix`` with a cache of its own (never the job's own storage's)."""
    location = ObjectLocation.parse(uri)
    parts = location.prefix.split("/") if location.prefix else []
    fix = (
        f"point it at s3://bucket/prefix/<job>[/<split>[/<snapshot>]] of checkpoint storage "
        f"CheckpointConfig(storage='s3://bucket/prefix'), for example s3://{location.bucket}/"
        f"{location.key(job) if not parts else location.prefix}"
    )
    if not parts:
        raise RestoreError(f"--from-checkpoint {uri} names a whole bucket; {fix}")
    store = S3ObjectStore(location.bucket)
    try:
        base = location.prefix + "/"
        if (
            len(parts) >= 3
            and parse_snapshot_name(parts[-1]) is not None
            and store.head(base + _SNAPSHOT_OBJECT) is not None
        ):
            depth, name = 3, parts[-1]
        elif any(
            len(rest := info.key[len(base) :].split("/")) == 2
            and rest[1] == _SNAPSHOT_OBJECT
            and parse_snapshot_name(rest[0]) is not None
            for info in store.list(base)
        ):
            depth, name = 2, None
        else:
            depth, name = 1, None
        if len(parts) < depth:
            raise RestoreError(f"--from-checkpoint {uri} holds no snapshot; {fix}")
        named_job = parts[-depth]
        if named_job != job:
            raise RestoreError(
                f"--from-checkpoint {uri} is {'the checkpoint storage' if depth == 1 else 'a snapshot'} "
                f"of job {named_job!r}, not of {job!r}; restoring another job's state is refused (move "
                f"state between jobs with a savepoint), or {fix}"
            )
        root = ObjectLocation(location.bucket, "/".join(parts[:-depth]))
        cache = Path(tempfile.gettempdir()) / "eventapp-restore" / root.bucket / root.prefix
        storage = ObjectCheckpointStorage(root, store=store, cache_dir=cache)
        wanted = [parts[-depth + 1]] if depth > 1 else storage.splits(job)
        found: dict[str, tuple[Path, dict[str, Any]]] = {}
        for split in (s for s in wanted if s in splits):
            if name is not None:
                snapshot = name
            else:  # the newest snapshot, preferring committed ones (as for a local directory)
                infos = storage.list_snapshots(job, split)
                newest = [i for i in infos if i.committed] or infos
                if not newest:
                    continue
                snapshot = newest[-1].name
            path, meta = storage.open(job, split, snapshot)
            if meta.get("job") != job or str(meta.get("split")) != split:
                raise RestoreError(
                    f"--from-checkpoint {uri}: snapshot {root.uri(storage.split_key(job, split) + snapshot)} "
                    f"names job {meta.get('job')!r} and split {meta.get('split')!r}; it is damaged or was "
                    f"moved: refusing to restore it"
                )
            found[split] = (path, meta)
        return found
    finally:
        store.close()


def lost_state(
    snapshots: Mapping[str, list[SnapshotInfo]],
    recovered: Mapping[str, CommittedCheckpoint | None],
    explicit: Mapping[str, object],
) -> dict[str, list[SnapshotInfo]]:
    """Splits whose storage holds committed snapshots (``snapshots``: the committed ones per split)
    while their commit point knows no committed checkpoint, and no explicit snapshot was given."""

    def knows_no_checkpoint(split: str) -> bool:
        committed = recovered.get(split)
        return committed is None or not committed.snapshot

    return {
        s: infos for s, infos in snapshots.items() if infos and s not in explicit and knows_no_checkpoint(s)
    }


def refuse_or_archive(
    job: str,
    storage: CheckpointStorage,
    lost: Mapping[str, list[SnapshotInfo]],
    commit_points: Mapping[str, object],
    request: RestoreRequest,
    log: Any,
) -> None:
    """No silent empty start: raise :func:`refusal` for the ``lost`` splits, or, with
    ``request.start_fresh``, archive their snapshots so they start from empty state."""
    if not request.start_fresh:
        where = "; ".join(f"{commit_points[s]!r}" for s in sorted(lost))
        raise refusal(job, storage, lost, where)
    for split in sorted(lost):
        names = [i.name for i in storage.list_snapshots(job, split)]
        archived = storage.archive(job, split, names)
        log.warning(
            "split.started_fresh",
            split=split,
            archived=names,
            archive=archived,
            hint="--start-fresh: the split starts from empty state; its snapshots were archived",
        )


def refusal(
    job: str,
    storage: CheckpointStorage,
    lost: Mapping[str, list[SnapshotInfo]],
    where: str,
) -> RestoreError:
    """The error for splits whose storage holds committed snapshots the commit point does not know."""
    lines = [
        f"split {split!r}: {len(infos)} committed snapshot(s), newest {infos[-1].name!r}"
        for split, infos in sorted(lost.items())
    ]
    return RestoreError(
        f"job {job!r}: checkpoint storage {storage!r} holds committed snapshots of splits "
        f"{sorted(lost)}, but {where} has no committed checkpoint for them (a new group id, or a lost "
        f"or recreated Kafka cluster?). Refusing to start from empty state, which would lose that "
        f"state. {'; '.join(lines)}. Ways forward: restore it explicitly with "
        f"'eventapp run ... --from-checkpoint PATH' (a snapshot, split or job directory of checkpoint "
        f"storage), or start these splits from empty state with '--start-fresh', which archives "
        f"their snapshots (never deletes them)."
    )
