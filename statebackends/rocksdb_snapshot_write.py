"""Writing RocksDB state snapshots (the asynchronous part of
:meth:`~eventapp.statebackends.rocksdb_store.RocksDBStateStore.begin_snapshot`): full snapshots
(a RocksDB checkpoint) and changelog snapshots (the previous snapshot's files, hard-linked, plus the
changes since). The layout is described in :mod:`eventapp.statebackends.rocksdb_snapshot`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import rocksdict
import structlog

from eventapp._fs import fsync_directory, fsync_file, write_atomically
from eventapp.errors import CheckpointError

from .rocksdb_changelog import write_changes
from .rocksdb_snapshot import (
    SNAPSHOT_CHANGELOG,
    SNAPSHOT_DB,
    SNAPSHOT_META,
    FileEntry,
    SnapshotRecord,
    crc32_file,
    link_or_copy,
)

__all__ = ["ChangelogSnapshot", "FullSnapshot"]

log = structlog.get_logger("eventapp.statebackends.rocksdb_store")

#: Files of a RocksDB checkpoint that RocksDB itself made durable: SST, blob and OPTIONS files are
#: hard links to files RocksDB synced when it wrote them; MANIFEST and CURRENT are copies it
#: fdatasyncs; the WAL copy is empty (writes skip the WAL); it fsyncs the directory last (an strace
#: of create_checkpoint shows those calls).
_DURABLE_BY_ROCKSDB = re.compile(r"(\d+\.(sst|blob|log)|MANIFEST-\d+|CURRENT|OPTIONS-\d+)")

#: Called with the written snapshot's record (the store links the next changelog snapshot from it),
#: or with ``None`` when the snapshot was not written (the next one must be full).
OnWritten = Callable[[SnapshotRecord | None], None]


def _write_error(scope: str, directory: Path, working: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"could not write the RocksDB state snapshot of scope {scope!r} to {directory}: {exc}. A "
        f"snapshot flushes the working database in {working} and links (on another file system: "
        f"copies) its files into the checkpoint directory, so both need free space and write "
        f"permission. Free space (a full disk is the usual cause), or point "
        f"CheckpointConfig(storage=...) or RocksDBStateBackend(directory=...) at a volume with room; "
        f"the last completed checkpoint is unaffected."
    )


class _Snapshot:
    """A begun snapshot: written once, or released."""

    def __init__(self, scope: str, working: Path, on_written: OnWritten) -> None:
        self._scope = scope
        self._working = working
        self._on_written = on_written
        self._lock = threading.Lock()
        self._ended = False
        self._record: SnapshotRecord | None = None

    def _end(self, record: SnapshotRecord | None) -> bool:
        with self._lock:
            if self._ended:
                return False
            self._ended = True
        self._record = record
        self._on_written(record)
        return True

    def release(self) -> None:
        self._end(None)

    def stored_at(self, directory: Path) -> None:
        """Checkpoint storage moved the written snapshot to ``directory``."""
        record = self._record
        if record is not None and record.directory != directory:
            self._record = replace(record, directory=directory)
            self._on_written(self._record)

    def write(self, directory: Path) -> None:
        with self._lock:
            if self._ended:
                raise CheckpointError(f"the RocksDB snapshot of scope {self._scope!r} was already ended")
        started = time.perf_counter()
        directory = Path(directory)
        try:
            record, figures = self._write(directory)
            write_atomically(directory / SNAPSHOT_META, json.dumps(record.to_json(), indent=1).encode())
        except Exception as exc:  # rocksdict raises bare Exception for RocksDB errors
            self._end(None)
            raise _write_error(self._scope, directory, self._working, exc) from exc
        self._end(record)
        log.debug(
            "state.snapshot.written",
            backend="rocksdb",
            scope=self._scope,
            path=str(directory),
            kind=type(self).__name__,
            files=len(record.files),
            changelog=len(record.changelog),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            **figures,
        )

    def _write(self, directory: Path) -> tuple[SnapshotRecord, dict[str, float]]:
        raise NotImplementedError


class FullSnapshot(_Snapshot):
    """Flush, RocksDB checkpoint into ``db/``, describe its files. RocksDB must not change between
    the snapshot's beginning and this write: the store holds writes back until ``on_written``."""

    def __init__(
        self,
        scope: str,
        working: Path,
        db: rocksdict.Rdict,
        checksums: dict[tuple[int, int, int, int], int],
        on_written: OnWritten,
    ) -> None:
        super().__init__(scope, working, on_written)
        self._db = db
        self._checksums = checksums

    def _write(self, directory: Path) -> tuple[SnapshotRecord, dict[str, float]]:
        started = time.perf_counter()
        target = directory / SNAPSHOT_DB
        # Writes skip the WAL, so the memtables must be in SST files before the checkpoint.
        self._db.flush(wait=True)
        flushed = time.perf_counter()
        rocksdict.Checkpoint(self._db).create_checkpoint(str(target))
        _make_durable(target)
        files = _describe(target, self._checksums)
        figures = {
            "flush_ms": round((flushed - started) * 1000, 3),
            "checkpoint_ms": round((time.perf_counter() - flushed) * 1000, 3),
            "bytes": float(sum(entry.size for entry in files.values())),
        }
        return SnapshotRecord(directory, self._scope, files), figures


class ChangelogSnapshot(_Snapshot):
    """The previous snapshot's files, hard-linked, plus one changelog file of ``changes``."""

    def __init__(
        self,
        scope: str,
        working: Path,
        previous: SnapshotRecord,
        changes: dict[bytes, bytes | None],
        on_written: OnWritten,
    ) -> None:
        super().__init__(scope, working, on_written)
        self._previous = previous
        self._changes = changes

    def _write(self, directory: Path) -> tuple[SnapshotRecord, dict[str, float]]:
        previous = self._previous
        db, changelog = directory / SNAPSHOT_DB, directory / SNAPSHOT_CHANGELOG
        db.mkdir()
        changelog.mkdir()
        for name in previous.files:
            link_or_copy(previous.directory / SNAPSHOT_DB / name, db / name, any_file=True)
        for name, _ in previous.changelog:
            link_or_copy(previous.directory / SNAPSHOT_CHANGELOG / name, changelog / name, any_file=True)
        name = f"{len(previous.changelog) + 1:06d}.changes"
        size, crc = write_changes(changelog / name, self._changes)
        fsync_directory(db)
        fsync_directory(changelog)
        record = SnapshotRecord(
            directory, self._scope, dict(previous.files), [*previous.changelog, (name, FileEntry(size, crc))]
        )
        return record, {"changes": float(len(self._changes)), "bytes": float(size)}


def _make_durable(checkpoint: Path) -> None:
    """fsync what RocksDB's checkpoint left unsynced (rocksdict writes rocksdict-config.json after
    it), then the directory. Syncing everything again cost ~10 ms per split with 8 splits at once."""
    for entry in os.scandir(checkpoint):
        if entry.is_file(follow_symlinks=False) and not _DURABLE_BY_ROCKSDB.fullmatch(entry.name):
            fsync_file(Path(entry.path))
    fsync_directory(checkpoint)


def _describe(root: Path, checksums: dict[tuple[int, int, int, int], int]) -> dict[str, FileEntry]:
    """Size and CRC-32 of every file in ``root``; files seen before (same inode, size and mtime:
    hard links of an earlier snapshot) are not read again. ``checksums`` is updated in place."""
    files: dict[str, FileEntry] = {}
    seen: dict[tuple[int, int, int, int], int] = {}
    for entry in sorted(os.scandir(root), key=lambda item: item.name):
        if not entry.is_file(follow_symlinks=False):
            continue
        info = entry.stat(follow_symlinks=False)
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        crc = checksums.get(identity)
        if crc is None:
            crc = crc32_file(Path(entry.path))
        seen[identity] = crc
        files[entry.name] = FileEntry(info.st_size, crc)
    checksums.clear()
    checksums.update(seen)
    return files
