"""The files of a RocksDB state snapshot, and restoring them into a working directory.

A snapshot directory holds ``db/`` (a RocksDB checkpoint: unchanged SST files are hard links shared
with the working database and with earlier snapshots, which makes snapshots incremental) and
``eventapp-snapshot.json`` (file sizes and CRC-32s; written last, so its presence marks a complete
snapshot). Restoring verifies the files, hard-links (or copies) them into a fresh working directory.

Never modify snapshot files in place: SST files are shared by hard links, so an in-place write would
change every snapshot (and the working database) that shares the file.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import structlog

from eventapp.errors import SnapshotCorruptError

__all__ = ["SNAPSHOT_DB", "SNAPSHOT_FORMAT", "SNAPSHOT_META", "corrupt", "crc32_file", "restore_files"]

log = structlog.get_logger(__name__)

SNAPSHOT_DB = "db"
SNAPSHOT_META = "eventapp-snapshot.json"
SNAPSHOT_FORMAT = 1
_SHARED_SUFFIXES = (".sst", ".blob")  # immutable once written: safe to hard-link
_CHUNK = 4 << 20  # 4 MiB


def restore_files(snapshot: Path, working: Path, *, verify: bool) -> None:
    """Check the snapshot against its metadata and link (or copy) its files into ``working``."""
    meta_path = snapshot / SNAPSHOT_META
    try:
        meta = json.loads(meta_path.read_bytes())
        files: dict[str, dict[str, int]] = meta["files"]
        if meta["format"] != SNAPSHOT_FORMAT or meta["backend"] != "rocksdb":
            raise corrupt(snapshot, f"has format {meta['format']!r} of backend {meta['backend']!r}")
        entries = [(str(name), int(entry["size"]), int(entry["crc32"])) for name, entry in files.items()]
    except OSError as exc:
        raise corrupt(snapshot, f"has no readable {SNAPSHOT_META} ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise corrupt(snapshot, f"has an unreadable {SNAPSHOT_META} ({exc!r})") from exc
    source = snapshot / SNAPSHOT_DB
    working.mkdir()
    try:
        for name, size, crc in entries:
            if "/" in name or name in {"", ".", ".."}:
                raise corrupt(snapshot, f"lists an invalid file name {name!r}")
            path = source / name
            try:
                actual = path.stat().st_size
            except OSError as exc:
                raise corrupt(snapshot, f"is missing {path} ({exc.strerror or exc})") from exc
            if actual != size:
                raise corrupt(snapshot, f"has {path} of {actual} bytes, expected {size}")
            if verify and crc32_file(path) != crc:
                raise corrupt(snapshot, f"has {path} with a wrong checksum (overwritten or damaged)")
            _link_or_copy(path, working / name)
    except BaseException:
        shutil.rmtree(working, ignore_errors=True)
        raise


def _link_or_copy(source: Path, target: Path) -> None:
    if source.name.endswith(_SHARED_SUFFIXES):
        try:
            os.link(source, target)
        except OSError as exc:  # another filesystem, or no hard links there: copy instead
            log.debug("state.snapshot.copy_instead_of_link", path=str(source), error=str(exc))
        else:
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
