"""The changelog files of RocksDB state snapshots: the entries a store changed between two snapshots.

A changelog snapshot (see :mod:`eventapp.statebackends.rocksdb_snapshot`) is the last full RocksDB
checkpoint plus, in order, one changelog file per snapshot taken since: restoring it opens the
checkpoint and applies the files one after the other (Flink's changelog state backend, FLIP-158,
with the materialization every few snapshots). A file holds each changed key once, with its value
at the snapshot, or a deletion:

``b"EACL" version:1 count:4 ( len(key):4 key ( 0xffffffff | len(value):4 value ) )* crc32:4``

(big-endian; the CRC covers everything before it). Keys are sorted, so the same changes always make
the same file.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

from eventapp.errors import SnapshotCorruptError

__all__ = ["read_changes", "write_changes"]

_MAGIC = b"EACL"
_VERSION = 1
_HEADER = struct.Struct(">4sBI")
_LENGTH = struct.Struct(">I")
_DELETED = 0xFFFFFFFF


def write_changes(path: Path, changes: Mapping[bytes, bytes | None]) -> tuple[int, int]:
    """Write ``changes`` (``None``: the key was deleted) to ``path`` and fsync it (not its
    directory). Returns the file's size and CRC-32."""
    pack = _LENGTH.pack
    buffer = bytearray(_HEADER.pack(_MAGIC, _VERSION, len(changes)))
    for key in sorted(changes):
        value = changes[key]
        buffer += pack(len(key))
        buffer += key
        if value is None:
            buffer += pack(_DELETED)
        else:
            buffer += pack(len(value))
            buffer += value
    buffer += pack(zlib.crc32(buffer))
    with open(path, "xb") as handle:
        handle.write(buffer)
        handle.flush()
        os.fsync(handle.fileno())
    return len(buffer), zlib.crc32(buffer)


def read_changes(path: Path) -> list[tuple[bytes, bytes | None]]:
    """The changes in ``path``, in key order.

    :raises SnapshotCorruptError: the file is missing, truncated or fails its checksum.
    """
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise SnapshotCorruptError(f"changelog file {path} cannot be read ({exc.strerror or exc})") from exc
    if len(blob) < _HEADER.size + _LENGTH.size:
        raise SnapshotCorruptError(f"changelog file {path} is truncated ({len(blob)} bytes)")
    magic, version, count = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version != _VERSION:
        raise SnapshotCorruptError(
            f"changelog file {path} is not a version-{_VERSION} eventapp changelog ({magic!r} {version})"
        )
    body_end = len(blob) - _LENGTH.size
    if zlib.crc32(memoryview(blob)[:body_end]) != _LENGTH.unpack_from(blob, body_end)[0]:
        raise SnapshotCorruptError(f"changelog file {path} fails its checksum (truncated or overwritten)")
    changes: list[tuple[bytes, bytes | None]] = []
    offset = _HEADER.size
    unpack = _LENGTH.unpack_from
    try:
        for _ in range(count):
            (length,) = unpack(blob, offset)
            key = blob[offset + 4 : offset + 4 + length]
            offset += 4 + length
            (length,) = unpack(blob, offset)
            offset += 4
            if length == _DELETED:
                changes.append((key, None))
            else:
                changes.append((key, blob[offset : offset + length]))
                offset += length
    except struct.error as exc:
        raise SnapshotCorruptError(
            f"changelog file {path} ends inside entry {len(changes)} of {count}"
        ) from exc
    if offset != body_end:
        raise SnapshotCorruptError(f"changelog file {path} holds more than the {count} entries it announces")
    return changes
