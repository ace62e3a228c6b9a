"""Checkpoint storage: where split snapshots live, under names that are never reused.

Layout of :class:`LocalCheckpointStorage` (a local or mounted directory)::

    <root>/<job>/<split>/chk-000000012-<incarnation>/      a finished snapshot
        state/                                          the state backend's snapshot
        split.json                                      checkpoint id, position, watermark, ...
    <root>/<job>/<split>/chk-000000013-<incarnation>.inprogress/   being written (ignored)
    <root>/<job>/<split>/_committed/chk-000000012-<incarnation>    its commit completed (a hint)
    <root>/<job>/<split>/archive-<UTC time>/chk-.../                archived by ``--start-fresh``

A snapshot directory is written under ``.inprogress`` and renamed when complete, so a finished name
always holds a complete snapshot. The incarnation is random per process start, so a fenced zombie
and its successor never write the same directory.

After the commit point committed a snapshot, the runtime marks it committed (an empty file beside
it, not fsynced). The mark is what lets a restart notice that storage holds committed state which
the commit point no longer knows of (a new group id, a lost Kafka cluster): the job then refuses to
start instead of silently starting from empty state (``docs/exactly-once.md``, "Refusal rules").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import structlog

from eventapp._fs import fsync_directory, write_atomically
from eventapp.checkpoint.commit import CommitPoint
from eventapp.checkpoint.local_commit import FileCommitPoint
from eventapp.errors import CheckpointError, SnapshotCorruptError, SnapshotMissingError

__all__ = [
    "CheckpointStorage",
    "CommitPointStorage",
    "LocalCheckpointStorage",
    "SnapshotInfo",
    "check_component",
    "parse_snapshot_name",
    "read_snapshot_meta",
    "snapshot_name",
]

log = structlog.get_logger("eventapp.checkpoint")

_NAME = re.compile(r"^chk-(\d{9})-([0-9a-z]+)$")
_META = "split.json"
_COMMITTED_DIR = "_committed"


def snapshot_name(checkpoint_id: int, incarnation: str) -> str:
    return f"chk-{checkpoint_id:09d}-{incarnation}"


def parse_snapshot_name(name: str) -> int | None:
    """The checkpoint id of snapshot ``name``, or ``None`` if it is no snapshot name."""
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A finished snapshot; ``committed``: a commit of it completed (see the module docstring)."""

    split: str
    name: str
    checkpoint_id: int
    committed: bool = False


def read_snapshot_meta(path: Path, what: str, fix: str) -> dict[str, Any]:
    """The metadata (``split.json``) of the snapshot directory ``path``; it must name the directory.

    Raises :class:`SnapshotCorruptError` starting with ``what`` and ending with ``fix``.
    """
    try:
        meta = json.loads((path / _META).read_bytes())
    except (OSError, ValueError) as exc:
        raise SnapshotCorruptError(f"{what} has an unreadable {_META} ({exc}). {fix}") from exc
    if not isinstance(meta, dict) or meta.get("snapshot") != path.name:
        raise SnapshotCorruptError(f"{what} has metadata that does not name it ({meta!r}). {fix}")
    return meta


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` via a temporary file, fsync and rename."""
    write_atomically(path, json.dumps(data, sort_keys=True).encode())


@runtime_checkable
class CheckpointStorage(Protocol):
    """Durable home of split snapshots: :class:`LocalCheckpointStorage` (directories) or
    :class:`~eventapp.checkpoint.object_storage.ObjectCheckpointStorage` (S3-compatible)."""

    def begin(self, job: str, split: str, name: str) -> Path:
        """A new, empty local directory to write snapshot ``name`` of ``split`` into."""
        ...

    def complete(self, job: str, split: str, name: str, meta: dict[str, Any]) -> Path:
        """Store ``meta`` with the snapshot and make it durable under its final name. Returns the
        snapshot's directory from now on (what :meth:`open` will return)."""
        ...

    def open(self, job: str, split: str, name: str) -> tuple[Path, dict[str, Any]]:
        """The local directory and metadata of a finished snapshot.

        Raises :class:`SnapshotMissingError` or :class:`SnapshotCorruptError`.
        """
        ...

    def list_snapshots(self, job: str, split: str) -> list[SnapshotInfo]:
        """Finished snapshots of ``split``, oldest first."""
        ...

    def delete(self, job: str, split: str, name: str) -> None: ...

    def mark_committed(self, job: str, split: str, name: str) -> None:
        """Record that snapshot ``name`` was committed (a hint; need not be durable)."""
        ...

    def archive(self, job: str, split: str, names: Sequence[str]) -> str:
        """Move snapshots ``names`` aside, out of :meth:`list_snapshots` and never deleted; returns
        where they went."""
        ...

    def splits(self, job: str) -> list[str]:
        """Splits that have snapshots."""
        ...


@runtime_checkable
class CommitPointStorage(Protocol):
    """Checkpoint storage that can also keep the committed checkpoints of splits whose source has no
    commit point of its own (in-memory and file sources)."""

    def create_commit_point(self, job: str, split: str) -> CommitPoint:
        """The commit point of ``split``, stored beside its snapshots."""
        ...


def check_component(component: str) -> str:
    """``component`` if it can be one component of a checkpoint path (or key); else raises."""
    if not component or "/" in component or component in (".", "..") or "\x00" in component:
        raise CheckpointError(f"{component!r} cannot be used as a checkpoint path component")
    return component


_safe = check_component


class LocalCheckpointStorage:
    """Snapshots in a local (or mounted) directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalCheckpointStorage({str(self.root)!r})"

    def split_dir(self, job: str, split: str) -> Path:
        return self.root / _safe(job) / _safe(split)

    def create_commit_point(self, job: str, split: str) -> CommitPoint:
        """A :class:`FileCommitPoint`: ``<split dir>/_committed.json``."""
        return FileCommitPoint(self.split_dir(job, split))

    def begin(self, job: str, split: str, name: str) -> Path:
        base = self.split_dir(job, split)
        final = base / name
        if final.exists():
            raise CheckpointError(f"snapshot {final} already exists; snapshots are never overwritten")
        tmp = base / (name + ".inprogress")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def complete(self, job: str, split: str, name: str, meta: dict[str, Any]) -> Path:
        base = self.split_dir(job, split)
        tmp = base / (name + ".inprogress")
        write_json_atomic(tmp / _META, meta)  # fsyncs the file, then tmp (its directory)
        os.rename(tmp, base / name)
        fsync_directory(base)
        return base / name

    def open(self, job: str, split: str, name: str) -> tuple[Path, dict[str, Any]]:
        path = self.split_dir(job, split) / name
        if not path.is_dir():
            raise SnapshotMissingError(
                f"the committed checkpoint of split {split!r} names snapshot {name!r}, but {path} does "
                f"not exist. Refusing to start rather than silently using older state. Restore the "
                f"checkpoint directory (was checkpoint storage moved or cleaned?), or restore the job "
                f"from a savepoint; starting from scratch requires resetting the split's committed "
                f"position explicitly."
            )
        meta = read_snapshot_meta(
            path,
            f"snapshot {path} of split {split!r}",
            "Refusing to start; restore the snapshot from a backup or restore the job from a savepoint.",
        )
        return path, meta

    def _iter(self, job: str, split: str) -> Iterator[SnapshotInfo]:
        base = self.split_dir(job, split)
        if not base.is_dir():
            return
        marks = base / _COMMITTED_DIR
        committed = set(os.listdir(marks)) if marks.is_dir() else set()
        for entry in base.iterdir():
            m = _NAME.match(entry.name)
            if m and entry.is_dir():
                yield SnapshotInfo(
                    split=split,
                    name=entry.name,
                    checkpoint_id=int(m.group(1)),
                    committed=entry.name in committed,
                )

    def list_snapshots(self, job: str, split: str) -> list[SnapshotInfo]:
        return sorted(self._iter(job, split), key=lambda s: (s.checkpoint_id, s.name))

    def delete(self, job: str, split: str, name: str) -> None:
        path = self.split_dir(job, split) / name
        shutil.rmtree(path, ignore_errors=False)
        (path.parent / _COMMITTED_DIR / name).unlink(missing_ok=True)
        log.debug("checkpoint.snapshot.deleted", job=job, split=split, snapshot=name)

    def mark_committed(self, job: str, split: str, name: str) -> None:
        marks = self.split_dir(job, split) / _COMMITTED_DIR
        marks.mkdir(exist_ok=True)
        (marks / _safe(name)).touch()

    def archive(self, job: str, split: str, names: Sequence[str]) -> str:
        base = self.split_dir(job, split)
        target = base / time.strftime("archive-%Y%m%dT%H%M%SZ", time.gmtime())
        suffix = 0
        while target.exists():
            suffix += 1
            target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
        target.mkdir(parents=True)
        for name in names:
            os.rename(base / _safe(name), target / name)
            mark = base / _COMMITTED_DIR / name
            if mark.exists():
                (target / _COMMITTED_DIR).mkdir(exist_ok=True)
                os.rename(mark, target / _COMMITTED_DIR / name)
        fsync_directory(target)
        fsync_directory(base)
        log.info("checkpoint.snapshots.archived", job=job, split=split, snapshots=list(names), to=str(target))
        return str(target)

    def splits(self, job: str) -> list[str]:
        base = self.root / _safe(job)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())
