"""The files of a RocksDB state snapshot, and restoring them into a working directory.

A snapshot directory holds

* ``db/``: a RocksDB checkpoint (unchanged SST files are hard links shared with the working
  database and with earlier snapshots, which makes even full snapshots incremental);
* ``changelog/`` (format 2, optional): the changes made since that checkpoint, one file per
  snapshot taken since, in order (:mod:`eventapp.statebackends.rocksdb_changelog`). A *changelog
  snapshot* hard-links the previous snapshot's ``db/`` and changelog files and adds one file: it
  never flushes or checkpoints RocksDB. Every few snapshots (``RocksDBConfig.changelog_snapshots``)
  one is *full* again (a new checkpoint, no changelog), which bounds the restore;
* ``eventapp-snapshot.json``: the format, the files with sizes and CRC-32s, the changelog in order;
  written last, so its presence marks a complete snapshot.

Restoring verifies the files, hard-links (or copies) ``db/`` into a fresh working directory, opens it
and applies the changelog. Format-1 snapshots (no changelog) are read as before.

Never modify snapshot files in place: files are shared by hard links, so an in-place write would
change every snapshot (and the working database) that shares the file.
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rocksdict
import structlog

from eventapp._fs import link_or_copy as fs_link_or_copy
from eventapp.errors import SnapshotCorruptError

from .rocksdb_changelog import read_changes

__all__ = [
    "SNAPSHOT_CHANGELOG",
    "SNAPSHOT_DB",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_META",
    "FileEntry",
    "SnapshotRecord",
    "apply_changelog",
    "corrupt",
    "crc32_file",
    "link_or_copy",
    "read_record",
    "restore_files",
]

log = structlog.get_logger(__name__)

SNAPSHOT_DB = "db"
SNAPSHOT_CHANGELOG = "changelog"
SNAPSHOT_META = "eventapp-snapshot.json"
#: Written by this version; 1 (no changelog) is read too.
SNAPSHOT_FORMAT = 2
_READABLE_FORMATS = (1, 2)
_SHARED_SUFFIXES = (".sst", ".blob")  # immutable once written: safe to hard-link
_CHUNK = 4 << 20  # 4 MiB


@dataclass(frozen=True, slots=True)
class FileEntry:
    size: int
    crc32: int

    def to_json(self) -> dict[str, int]:
        return {"size": self.size, "crc32": self.crc32}


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """What a snapshot directory holds (its metadata): the next changelog snapshot links from it."""

    directory: Path
    scope: str
    #: ``db/`` file name -> size and CRC.
    files: dict[str, FileEntry]
    #: Changelog file names in the order they apply, with sizes and CRCs.
    changelog: list[tuple[str, FileEntry]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "backend": "rocksdb",
            "scope": self.scope,
            "files": {name: entry.to_json() for name, entry in self.files.items()},
            "changelog": [{"name": name, **entry.to_json()} for name, entry in self.changelog],
        }


def read_record(snapshot: Path) -> SnapshotRecord:
    """The metadata of the snapshot at ``snapshot``.

    :raises SnapshotCorruptError: it is missing, unreadable or of another format or backend.
    """
    meta_path = snapshot / SNAPSHOT_META
    try:
        meta = json.loads(meta_path.read_bytes())
        if meta["format"] not in _READABLE_FORMATS or meta["backend"] != "rocksdb":
            raise corrupt(snapshot, f"has format {meta['format']!r} of backend {meta['backend']!r}")
        files = {
            _checked_name(snapshot, str(name)): FileEntry(int(entry["size"]), int(entry["crc32"]))
            for name, entry in meta["files"].items()
        }
        changelog = [
            (_checked_name(snapshot, str(item["name"])), FileEntry(int(item["size"]), int(item["crc32"])))
            for item in meta.get("changelog", [])
        ]
        return SnapshotRecord(snapshot, str(meta.get("scope", "")), files, changelog)
    except OSError as exc:
        raise corrupt(snapshot, f"has no readable {SNAPSHOT_META} ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise corrupt(snapshot, f"has an unreadable {SNAPSHOT_META} ({exc!r})") from exc


def _checked_name(snapshot: Path, name: str) -> str:
    if "/" in name or name in {"", ".", ".."}:
        raise corrupt(snapshot, f"lists an invalid file name {name!r}")
    return name


def restore_files(snapshot: Path, working: Path, *, verify: bool) -> SnapshotRecord:
    """Check the snapshot against its metadata (sizes; CRCs with ``verify``) and link (or copy) its
    ``db/`` files into ``working``. Returns its record; :func:`apply_changelog` applies the rest."""
    record = read_record(snapshot)
    _check(snapshot, snapshot / SNAPSHOT_CHANGELOG, record.changelog, verify)
    source = snapshot / SNAPSHOT_DB
    working.mkdir()
    try:
        _check(snapshot, source, list(record.files.items()), verify)
        for name in record.files:
            link_or_copy(source / name, working / name)
    except BaseException:
        shutil.rmtree(working, ignore_errors=True)
        raise
    return record


def _check(snapshot: Path, directory: Path, entries: list[tuple[str, FileEntry]], verify: bool) -> None:
    for name, entry in entries:
        path = directory / name
        try:
            actual = path.stat().st_size
        except OSError as exc:
            raise corrupt(snapshot, f"is missing {path} ({exc.strerror or exc})") from exc
        if actual != entry.size:
            raise corrupt(snapshot, f"has {path} of {actual} bytes, expected {entry.size}")
        if verify and crc32_file(path) != entry.crc32:
            raise corrupt(snapshot, f"has {path} with a wrong checksum (overwritten or damaged)")


def apply_changelog(db: rocksdict.Rdict, record: SnapshotRecord) -> int:
    """Apply the snapshot's changelog files, in order, to the database opened from its ``db/``.
    Returns the number of changes applied."""
    applied = 0
    for name, _ in record.changelog:
        try:
            changes = read_changes(record.directory / SNAPSHOT_CHANGELOG / name)
        except SnapshotCorruptError as exc:
            raise corrupt(record.directory, str(exc)) from exc
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        db.write(batch)
        applied += len(changes)
    return applied


def link_or_copy(source: Path, target: Path, *, any_file: bool = False) -> None:
    """Hard-link ``source`` to ``target`` (SST and blob files, or ``any_file`` that is immutable);
    copy it when linking is impossible (another filesystem) or not safe (mutable files)."""
    if any_file or source.name.endswith(_SHARED_SUFFIXES):
        copied = fs_link_or_copy(source, target)
        if copied is not None:  # another filesystem, or no hard links there: copied instead
            log.debug("state.snapshot.copy_instead_of_link", path=str(source), error=str(copied))
        return
    shutil.copyfile(source, target)


def crc32_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def corrupt(snapshot: Path, problem: str) -> SnapshotCorruptError:
    return SnapshotCorruptError(
        f"RocksDB state snapshot {snapshot} {problem}. The snapshot cannot be restored: restore from "
        f"an earlier checkpoint, or start the job without state if losing it is acceptable."
    )
