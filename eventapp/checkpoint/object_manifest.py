"""The manifest of a snapshot in object storage (its ``_snapshot.json``), and file digests.

``_snapshot.json`` holds the snapshot's metadata (what ``split.json`` holds) and a manifest: each
file's path relative to the snapshot directory -> its object key, size and SHA-256. It is written
last, after every object it names is durable, so its presence marks a complete snapshot.

:class:`FileDigests` caches SHA-256s by ``(st_dev, st_ino, st_size, st_mtime_ns)``: the immutable
files of consecutive RocksDB snapshots are hard links of one inode, so they are hashed once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from eventapp._fs import hash_file

__all__ = [
    "INLINE_MAX_BYTES",
    "MANIFEST_FORMAT",
    "FileDigests",
    "ManifestEntry",
    "SnapshotManifest",
    "file_problem",
]

MANIFEST_FORMAT = 1
#: Files up to this size are kept inline in the manifest, not as objects of their own (as Flink keeps
#: state handles under ``state.storage.fs.memory-threshold``, 20 KB, in the checkpoint metadata).
INLINE_MAX_BYTES = 16 * 1024

_Identity = tuple[int, int, int, int]
_MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """Where one file of a snapshot is stored (an object ``key``, or ``data`` inline in the manifest:
    files up to :data:`INLINE_MAX_BYTES`), and what it must contain."""

    key: str
    size: int
    sha256: str
    data: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        if self.data is not None:
            return {"inline": base64.b64encode(self.data).decode(), "size": self.size, "sha256": self.sha256}
        return {"key": self.key, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ManifestEntry:
        size, sha256 = int(raw["size"]), str(raw["sha256"])
        if "inline" in raw:
            return cls("", size, sha256, base64.b64decode(raw["inline"], validate=True))
        return cls(str(raw["key"]), size, sha256)


@dataclass(frozen=True, slots=True)
class SnapshotManifest:
    """The content of a snapshot's ``_snapshot.json``."""

    name: str
    meta: dict[str, Any]
    #: Relative POSIX path -> entry.
    files: dict[str, ManifestEntry]

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "snapshot": self.name,
                "meta": self.meta,
                "files": {path: entry.to_json() for path, entry in sorted(self.files.items())},
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SnapshotManifest:
        """Parse ``_snapshot.json``. Raises ``ValueError`` (with what is wrong) if it is unreadable."""
        try:
            raw = json.loads(data)
            if raw["format"] != MANIFEST_FORMAT:
                raise ValueError(f"format {raw['format']!r}, expected {MANIFEST_FORMAT}")
            files = {_relative(str(path)): ManifestEntry.from_json(e) for path, e in raw["files"].items()}
            meta = raw["meta"]
            if not isinstance(meta, dict):
                raise ValueError(f"meta is {type(meta).__name__}, not an object")
            return cls(str(raw["snapshot"]), meta, files)
        except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise ValueError(f"missing or malformed field {exc!r}") from exc

    def shared_keys(self, shared_prefix: str) -> set[str]:
        return {e.key for e in self.files.values() if e.data is None and e.key.startswith(shared_prefix)}


def _relative(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid file path {path!r}")
    return path


class FileDigests:
    """SHA-256 of files, cached by inode identity (thread-safe)."""

    def __init__(self) -> None:
        self._digests: dict[_Identity, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _identity(path: Path) -> tuple[_Identity, int]:
        info = os.stat(path)
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns), info.st_size

    def digest(self, path: Path) -> tuple[int, str]:
        """``(size, sha256 hex)`` of ``path``; read only on first sight of its inode."""
        identity, size = self._identity(path)
        with self._lock:
            known = self._digests.get(identity)
        if known is not None:
            return size, known
        digest = hashlib.sha256()
        hash_file(digest, path)
        value = digest.hexdigest()
        if self._identity(path)[0] == identity:  # unchanged while hashed
            self._store(identity, value)
        return size, value

    def remember(self, path: Path, sha256: str) -> None:
        """``path`` (just downloaded and verified) has digest ``sha256``."""
        self._store(self._identity(path)[0], sha256)

    def _store(self, identity: _Identity, sha256: str) -> None:
        with self._lock:
            if len(self._digests) >= _MAX_ENTRIES:  # files of long-deleted snapshots: start over
                self._digests.clear()
            self._digests[identity] = sha256


def file_problem(path: Path, entry: ManifestEntry, *, checksum: bool) -> str | None:
    """What is wrong with ``path`` against ``entry`` (``None``: nothing)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"is missing ({exc.strerror or exc})"
    if size != entry.size:
        return f"has {size} bytes, expected {entry.size} (truncated or overwritten)"
    if checksum:
        digest = hashlib.sha256()
        hash_file(digest, path)
        if digest.hexdigest() != entry.sha256:
            return f"has SHA-256 {digest.hexdigest()}, expected {entry.sha256} (damaged)"
    return None
