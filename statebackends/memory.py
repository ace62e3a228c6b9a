"""The in-memory state backend: a dict for point lookups plus a sorted key list for ordered scans.

Fast (get/put of an existing key is one or two dict operations) and bounded only by the heap: use it
for tests and small state. Snapshots are one self-checking file, ``state.bin``::

    magic b"EVSTMEM\\0" | version u32 | count u64 | count x (len u32, key, len u32, value) | crc32 u32

All integers are big-endian; the CRC-32 covers every byte before it.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NoReturn

import structlog
from sortedcontainers import SortedList

from eventapp._fs import fsync_directory
from eventapp.errors import CheckpointError, SnapshotCorruptError, StateError
from eventapp.state.store import KeyedStateStore, StateSnapshot, prefix_successor

__all__ = ["SNAPSHOT_FILE", "MemoryStateBackend", "MemoryStateStore"]

log = structlog.get_logger(__name__)

SNAPSHOT_FILE = "state.bin"
_MAGIC = b"EVSTMEM\x00"
_VERSION = 1
_HEADER = struct.Struct(">8sIQ")
_LENGTH = struct.Struct(">I")
_CRC = struct.Struct(">I")
_FLUSH_BYTES = 1 << 20


def _closed(*_args: object, **_kwargs: object) -> NoReturn:
    raise StateError("state store is closed; open the scope again with StateBackend.open()")


class _ClosedDict(dict[bytes, bytes]):
    """Stands in for the data of a closed store, so that any later use fails loudly."""

    get = __getitem__ = __setitem__ = __delitem__ = __contains__ = pop = _closed


class _ClosedKeys(SortedList):  # type: ignore[misc]
    """Stands in for the keys of a closed store, so that any later use fails loudly."""

    add = remove = irange = islice = bisect_left = __iter__ = __len__ = __delitem__ = _closed


class MemoryStateStore:
    """An ordered ``bytes -> bytes`` store held in memory (see :class:`KeyedStateStore`)."""

    def __init__(self, scope: str, data: dict[bytes, bytes] | None = None) -> None:
        self.scope = scope
        self._data: dict[bytes, bytes] = {} if data is None else data
        self._keys: SortedList = SortedList(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        data = self._data
        if key not in data:
            self._keys.add(key)
        data[key] = value

    def put_all(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        data = self._data
        new: list[bytes] = []
        for key, value in entries:
            if key not in data:
                new.append(key)  # a key repeated in entries is in data by its second time
            data[key] = value
        self._keys.update(new)  # one sorted merge instead of an insertion per key

    def delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None:
            self._keys.remove(key)

    def delete_prefix(self, prefix: bytes) -> None:
        lo, hi = self._bounds(prefix)
        if lo == hi:
            return
        data = self._data
        for key in self._keys.islice(lo, hi):
            del data[key]
        del self._keys[lo:hi]

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        upper = prefix_successor(prefix)
        data = self._data
        for key in self._keys.irange(start if start is not None else prefix, upper, (True, False)):
            yield key, data[key]

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        for key in self._keys.irange(prefix):
            if key.startswith(prefix):
                return key, self._data[key]
            return None
        return None

    def snapshot(self, directory: Path) -> None:
        self.begin_snapshot().write(directory)

    def begin_snapshot(self) -> StateSnapshot:
        """Copies the entries (and their order): the synchronous part costs O(entries)."""
        return _MemorySnapshot(self.scope, list(self._keys), dict(self._data))

    def close(self) -> None:
        self._data = _ClosedDict()
        self._keys = _ClosedKeys()

    def _bounds(self, prefix: bytes) -> tuple[int, int]:
        keys = self._keys
        upper = prefix_successor(prefix)
        lo = keys.bisect_left(prefix)
        hi = len(keys) if upper is None else keys.bisect_left(upper)
        return lo, hi


class _MemorySnapshot:
    """A copy of a memory store's entries, written as one snapshot file."""

    def __init__(self, scope: str, keys: list[bytes], data: dict[bytes, bytes]) -> None:
        self._scope = scope
        self._keys: list[bytes] | None = keys
        self._data = data

    def write(self, directory: Path) -> None:
        keys = self._keys
        if keys is None:
            raise CheckpointError(f"the memory state snapshot of scope {self._scope!r} was released")
        started = time.perf_counter()
        path = Path(directory) / SNAPSHOT_FILE
        try:
            size = _write_snapshot(path, keys, self._data)
        except OSError as exc:
            raise CheckpointError(
                f"could not write the memory state snapshot of scope {self._scope!r} to {path}: {exc}"
            ) from exc
        finally:
            self.release()
        log.debug(
            "state.snapshot.written",
            backend="memory",
            scope=self._scope,
            path=str(path),
            keys=len(keys),
            bytes=size,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def release(self) -> None:
        self._keys = None
        self._data = {}

    def stored_at(self, directory: Path) -> None:
        return None  # every memory snapshot is whole


class MemoryStateBackend:
    """A :class:`~eventapp.state.store.StateBackend` that keeps every scope's state on the heap.

    Each :meth:`open` returns a new, independent store; nothing survives the process except
    snapshots. Memory grows with the state: for large state use ``RocksDBStateBackend``.
    """

    @property
    def name(self) -> str:
        return "memory"

    def open(self, scope: str, restore_from: Path | None = None) -> KeyedStateStore:
        if restore_from is None:
            return MemoryStateStore(scope)
        started = time.perf_counter()
        path = Path(restore_from) / SNAPSHOT_FILE
        data = _read_snapshot(path)
        log.info(
            "state.snapshot.restored",
            backend="memory",
            scope=scope,
            path=str(path),
            keys=len(data),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return MemoryStateStore(scope, data)

    def __repr__(self) -> str:
        return "MemoryStateBackend()"


def _write_snapshot(path: Path, keys: list[bytes], data: dict[bytes, bytes]) -> int:
    """Write the framed snapshot file atomically; returns its size in bytes."""
    tmp = path.with_name(path.name + ".tmp")
    pack_length = _LENGTH.pack
    size = 0
    crc = 0
    with open(tmp, "wb") as handle:
        buffer = bytearray(_HEADER.pack(_MAGIC, _VERSION, len(keys)))
        for key in keys:
            value = data[key]
            buffer += pack_length(len(key))
            buffer += key
            buffer += pack_length(len(value))
            buffer += value
            if len(buffer) >= _FLUSH_BYTES:
                crc = zlib.crc32(buffer, crc)
                handle.write(buffer)
                size += len(buffer)
                buffer.clear()
        crc = zlib.crc32(buffer, crc)
        buffer += _CRC.pack(crc)
        handle.write(buffer)
        size += len(buffer)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)
    return size


def _read_snapshot(path: Path) -> dict[bytes, bytes]:
    """Load and verify a snapshot file written by :func:`_write_snapshot`."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise _corrupt(path, f"cannot be read ({exc.strerror or exc})") from exc
    if len(blob) < _HEADER.size + _CRC.size:
        raise _corrupt(path, f"is truncated ({len(blob)} bytes, shorter than the header)")
    magic, version, count = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise _corrupt(path, f"is not a memory-backend snapshot (magic {magic!r})")
    if version != _VERSION:
        raise _corrupt(path, f"has format version {version}; this eventapp reads version {_VERSION}")
    body_end = len(blob) - _CRC.size
    (stored_crc,) = _CRC.unpack_from(blob, body_end)
    view = memoryview(blob)
    if zlib.crc32(view[:body_end]) != stored_crc:
        raise _corrupt(path, "fails its checksum (truncated or overwritten)")
    data: dict[bytes, bytes] = {}
    offset = _HEADER.size
    unpack_length = _LENGTH.unpack_from
    try:
        for _ in range(count):
            (length,) = unpack_length(blob, offset)
            offset += 4
            key = blob[offset : offset + length]
            offset += length
            (length,) = unpack_length(blob, offset)
            offset += 4
            data[key] = blob[offset : offset + length]
            offset += length
    except struct.error as exc:
        raise _corrupt(path, f"ends inside entry {len(data)} of {count}") from exc
    if offset != body_end or len(data) != count:
        raise _corrupt(path, f"holds {len(data)} well-formed entries where its header says {count}")
    return data


def _corrupt(path: Path, problem: str) -> SnapshotCorruptError:
    return SnapshotCorruptError(
        f"memory state snapshot {path} {problem}. The snapshot cannot be restored: restore from an "
        f"earlier checkpoint, or start the job without state if losing it is acceptable."
    )
