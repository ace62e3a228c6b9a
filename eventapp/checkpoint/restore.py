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

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.checkpoint.meta import LEGACY_LINEAGE
from eventapp.checkpoint.storage import CheckpointStorage, SnapshotInfo, read_snapshot_meta
from eventapp.errors import ConfigurationError, RestoreError

__all__ = [
    "LEGACY_LINEAGE",
    "RestoreRequest",
    "explicit_snapshots",
    "lost_state",
    "refusal",
    "refuse_or_archive",
]

_META = "split.json"


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """The user's instructions for restoring splits (default: restore the committed checkpoints)."""

    #: A snapshot directory, a split directory or a job directory of checkpoint storage to restore.
    from_checkpoint: Path | None = None
    #: Start splits whose committed checkpoint is unknown with empty state, archiving their snapshots.
    start_fresh: bool = False
    #: A savepoint directory to restore (``eventapp run --from-savepoint``, see
    #: :mod:`eventapp.savepoint.restore`); never modified or deleted.
    from_savepoint: Path | None = None
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
        if self.from_checkpoint is not None and not isinstance(self.from_checkpoint, Path):
            object.__setattr__(self, "from_checkpoint", Path(self.from_checkpoint))
        if self.from_savepoint is not None and not isinstance(self.from_savepoint, Path):
            object.__setattr__(self, "from_savepoint", Path(self.from_savepoint))


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


def explicit_snapshots(path: Path, job: str, splits: list[str]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """The snapshot under ``path`` for each of ``splits`` it covers.

    ``path`` is a snapshot directory (it covers the split its metadata names), a split directory
    (its newest committed snapshot) or a job directory (per split subdirectory, the newest committed
    snapshot). Snapshots of another job or another split are refused.
    """
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
