"""One scope's keyed state in a RocksDB database: reads, writes, prefix scans and snapshots
(:class:`RocksDBStateStore`, opened by :class:`~eventapp.statebackends.rocksdb.RocksDBStateBackend`).

The working database is scratch (writes skip the write-ahead log); a snapshot flushes it and writes a
RocksDB checkpoint plus the metadata described in :mod:`eventapp.statebackends.rocksdb_snapshot`.

**Write-back cache.** A crossing into RocksDB costs ~1.5 us per get or put, far more than the state
logic around it, and a keyed function reads and writes the same few entries over and over. So the
store keeps the entries it read or wrote in a dict of raw bytes (``cache_entries`` of them): a get
of a cached entry never reaches RocksDB, and writes stay in the dict, marked dirty, until they are
written to RocksDB in one WriteBatch: before a snapshot, before any ordered read (``scan``, ``first``,
``delete_prefix``: RocksDB orders the keys, the dict does not), and whenever ``cache_entries`` dirty
entries have piled up. Values are cached as bytes, so what a caller gets is always a fresh copy, as
from RocksDB itself. The cache is lost with the process like everything written since the last
snapshot; nothing durable depends on it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import weakref
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import rocksdict
import structlog

from eventapp._fs import fsync_tree, write_atomically
from eventapp.errors import CheckpointError, StateError
from eventapp.state.store import prefix_successor

from .rocksdb_snapshot import SNAPSHOT_DB, SNAPSHOT_FORMAT, SNAPSHOT_META, crc32_file

__all__ = ["RocksDBStateStore"]

log = structlog.get_logger(__name__)

_MAX_HEADS = 16
#: A cached entry known to be absent from the database.
_ABSENT: bytes | None = None
_UNKNOWN = object()


class _ClosedCache(dict[bytes, bytes | None]):
    """The cache of a closed store: every use raises (no check on the hot path of an open one)."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self._scope = scope

    def _closed(self) -> StateError:
        return StateError(f"the RocksDB store of scope {self._scope!r} is closed")

    def get(self, key: bytes, default: object = None) -> bytes | None:
        raise self._closed()

    def __setitem__(self, key: bytes, value: bytes | None) -> None:
        raise self._closed()


class RocksDBStateStore:
    """One scope's state in a RocksDB database (see :class:`~eventapp.state.store.KeyedStateStore`)."""

    def __init__(
        self,
        scope: str,
        db: rocksdict.Rdict,
        working_dir: Path,
        on_close: Callable[[RocksDBStateStore], None],
        cache_entries: int = 0,
    ) -> None:
        self.scope = scope
        self.working_dir = working_dir
        self._db = db
        self._on_close = on_close
        #: Cached entries (``None``: absent from the database) and which of them are not written yet.
        self._cache: dict[bytes, bytes | None] = {}
        self._dirty: set[bytes] = set()
        self._cache_entries = cache_entries
        self._scans: weakref.WeakSet[Generator[tuple[bytes, bytes], None, None]] = weakref.WeakSet()
        self._checksums: dict[tuple[int, int, int, int], int] = {}
        #: (device, inode) of the files the last snapshot fsynced (see eventapp._fs.fsync_tree).
        self._synced: set[tuple[int, int]] = set()
        self._closed = False
        # Head hints, for the few prefixes recently passed to first(): prefix -> a key such that the
        # prefix has no live key below it. Seeking there skips the tombstones that pile up at the
        # head of a prefix when its smallest key is deleted again and again (firing timers); without
        # it each first() would step over every tombstone: O(n) per call. Puts lower the hints; every
        # hinted range [prefix, head) lies within [_heads_low, _heads_high), a cheap test per put.
        self._heads: dict[bytes, bytes] = {}
        self._heads_low = b""
        self._heads_high = b""

    def get(self, key: bytes) -> bytes | None:
        cached = self._cache.get(key, _UNKNOWN)
        if cached is not _UNKNOWN:
            return cached  # type: ignore[return-value]
        value: bytes | None = self._db.get(key)
        if self._cache_entries:
            if len(self._cache) >= self._cache_entries:
                self._evict()
            self._cache[key] = value
        return value

    def put(self, key: bytes, value: bytes) -> None:
        if not self._cache_entries:
            self._put_now(key, value)
            return
        self._cache[key] = value
        dirty = self._dirty
        dirty.add(key)
        if len(dirty) >= self._cache_entries:
            self.write_back()

    def delete(self, key: bytes) -> None:
        if not self._cache_entries:
            del self._db[key]
            return
        self._cache[key] = _ABSENT
        dirty = self._dirty
        dirty.add(key)
        if len(dirty) >= self._cache_entries:
            self.write_back()

    def write_back(self) -> None:
        """Write the dirty cached entries to RocksDB in one WriteBatch."""
        dirty = self._dirty
        if not dirty:
            return
        cache = self._cache
        batch = rocksdict.WriteBatch(raw_mode=True)
        low, high = self._heads_low, self._heads_high
        lowered = []
        for key in dirty:
            value = cache[key]
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
                if low <= key < high:
                    lowered.append(key)
        self._db.write(batch)
        dirty.clear()
        for key in lowered:
            self._lower_heads(key)
        if len(cache) >= self._cache_entries:
            cache.clear()

    def _evict(self) -> None:
        """Make room in a full cache: write the dirty entries back, then forget every entry."""
        self.write_back()
        self._cache.clear()

    def _put_now(self, key: bytes, value: bytes) -> None:
        self._db[key] = value
        if self._heads_low <= key < self._heads_high:
            self._lower_heads(key)

    def delete_prefix(self, prefix: bytes) -> None:
        self.write_back()
        self._cache.clear()
        upper = prefix_successor(prefix)
        if upper is not None:
            self._db.delete_range(prefix, upper)
            return
        # Only b"" or all-0xff prefixes have no successor: delete their (rare) keys one by one.
        batch = rocksdict.WriteBatch(raw_mode=True)
        iterator = self._iterator(prefix, None)
        while iterator.valid():
            batch.delete(iterator.key())
            iterator.next()
        del iterator
        if not batch.is_empty():
            self._db.write(batch)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        self.write_back()
        scan = self._scan(prefix, prefix_successor(prefix), start)
        self._scans.add(scan)
        return scan

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        if self._dirty:
            self.write_back()
        upper = prefix_successor(prefix)
        iterator = self._iterator(prefix, upper)
        if iterator.valid():
            key: bytes = iterator.key()
            if key.startswith(prefix):  # else: prefix has no successor (all 0xff), no upper bound
                self._set_head(prefix, key)
                return key, iterator.value()
        if upper is not None:
            self._set_head(prefix, upper)
        return None

    def snapshot(self, directory: Path) -> None:
        started = time.perf_counter()
        directory = Path(directory)
        target = directory / SNAPSHOT_DB
        try:
            self.write_back()
            # Writes skip the WAL, so the memtables must be in SST files before the checkpoint.
            self._db.flush(wait=True)
            rocksdict.Checkpoint(self._db).create_checkpoint(str(target))
            # Unchanged SST files are hard links to files an earlier snapshot made durable.
            self._synced = fsync_tree(target, self._synced)
            files = self._describe_files(target)
            meta = {"format": SNAPSHOT_FORMAT, "backend": "rocksdb", "scope": self.scope, "files": files}
            write_atomically(directory / SNAPSHOT_META, json.dumps(meta, indent=1, sort_keys=True).encode())
        except Exception as exc:  # rocksdict raises bare Exception for RocksDB errors
            raise CheckpointError(
                f"could not write the RocksDB state snapshot of scope {self.scope!r} to {directory}: "
                f"{exc}. A snapshot flushes the working database in {self.working_dir} and links (on "
                f"another file system: copies) its files into the checkpoint directory, so both need "
                f"free space and write permission. Free space (a full disk is the usual cause), or "
                f"point CheckpointConfig(storage=...) or RocksDBStateBackend(directory=...) at a "
                f"volume with room; the last completed checkpoint is unaffected."
            ) from exc
        shared = sum(1 for name in files if os.stat(target / name).st_nlink > 1)
        log.debug(
            "state.snapshot.written",
            backend="rocksdb",
            scope=self.scope,
            path=str(directory),
            files=len(files),
            shared_files=shared,
            bytes=sum(entry["size"] for entry in files.values()),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._dirty.clear()  # scratch: nothing written since the last snapshot survives a close
        self._cache = _ClosedCache(self.scope)
        # A live RocksDB iterator keeps the database open (and its LOCK held): end open scans first.
        for scan in list(self._scans):
            scan.close()
        self._scans.clear()
        self._db.close()
        shutil.rmtree(self.working_dir, ignore_errors=True)
        self._on_close(self)

    def _iterator(
        self, prefix: bytes, upper: bytes | None, start: bytes | None = None
    ) -> rocksdict.RdictIter:
        """An iterator bounded by ``upper``, at the first key ``>= start`` (or ``prefix``)."""
        options = rocksdict.ReadOptions()
        if upper is not None:
            options.set_iterate_upper_bound(upper)
        iterator = self._db.iter(options)
        head = self._heads.get(prefix)
        if start is None or (head is not None and start < head):
            start = prefix if head is None else head
        iterator.seek(start)
        return iterator

    def _set_head(self, prefix: bytes, head: bytes) -> None:
        heads = self._heads
        if not heads or (prefix not in heads and len(heads) >= _MAX_HEADS):
            heads.clear()
            self._heads_low, self._heads_high = prefix, head
        else:
            self._heads_low = min(self._heads_low, prefix)
            self._heads_high = max(self._heads_high, head)
        heads[prefix] = head

    def _lower_heads(self, key: bytes) -> None:
        heads = self._heads
        for prefix, head in heads.items():
            if key < head and key.startswith(prefix):
                heads[prefix] = key

    def _scan(
        self, prefix: bytes, upper: bytes | None, start: bytes | None
    ) -> Generator[tuple[bytes, bytes], None, None]:
        iterator = self._iterator(prefix, upper, start)
        try:
            while iterator.valid():
                key: bytes = iterator.key()
                if upper is None and not key.startswith(prefix):
                    return
                yield key, iterator.value()
                iterator.next()
        finally:
            del iterator

    def _describe_files(self, root: Path) -> dict[str, dict[str, int]]:
        """Size and CRC-32 of every snapshot file; shared (hard-linked) files are hashed only once."""
        files: dict[str, dict[str, int]] = {}
        checksums: dict[tuple[int, int, int, int], int] = {}
        for entry in sorted(os.scandir(root), key=lambda item: item.name):
            if not entry.is_file(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
            identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            crc = self._checksums.get(identity)
            if crc is None:
                crc = crc32_file(Path(entry.path))
            checksums[identity] = crc
            files[entry.name] = {"size": info.st_size, "crc32": crc}
        self._checksums = checksums
        return files
