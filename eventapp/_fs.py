"""Small filesystem helpers (internal): fsync and atomic writes, for state backends and checkpoint storage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

_CHUNK = 1 << 20

__all__ = [
    "fsync_directory",
    "fsync_file",
    "fsync_tree",
    "hash_file",
    "link_or_copy",
    "tree_size",
    "write_atomically",
]


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data and metadata to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Make the entries of directory ``path`` (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (inclusive), directories after their content."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        directory = Path(dirpath)
        for name in filenames:
            fsync_file(directory / name)
        fsync_directory(directory)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync, rename and fsync of the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def link_or_copy(source: Path, target: Path) -> OSError | None:
    """Hard-link ``source`` to ``target``, or copy it when linking is impossible (another
    filesystem, or no hard links there). Returns the error that made it copy, if any. Only for
    files that are never modified in place (a link shares them)."""
    try:
        os.link(source, target)
    except OSError as exc:
        shutil.copyfile(source, target)
        return exc
    return None


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def hash_file(digest: _Digest, path: Path) -> int:
    """Feed the content of ``path`` into ``digest`` (hashlib's or zlib-like) in chunks; returns
    its size in bytes."""
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size


def tree_size(root: Path) -> int:
    """Bytes of every file under ``root`` (hard links count once per name)."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            total += os.stat(os.path.join(directory, name)).st_size
    return total
