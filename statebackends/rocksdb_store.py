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
import re
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import rocksdict
import structlog

from eventapp._fs import fsync_directory, fsync_file, write_atomically
from eventapp.errors import CheckpointError, StateError
from eventapp.state.store import StateSnapshot, prefix_successor

from .rocksdb_snapshot import SNAPSHOT_DB, SNAPSHOT_FORMAT, SNAPSHOT_META, crc32_file

__all__ = ["RocksDBStateStore"]

log = structlog.get_logger(__name__)

_MAX_HEADS = 16
#: A cached entry known to be absent from the database.
_ABSENT: bytes | None = None
_UNKNOWN = object()
#: With the cache disabled, writes buffered while a snapshot is in progress before one waits for it.
_SNAPSHOT_OVERLAY = 100_000


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


#: Files of a RocksDB checkpoint that RocksDB itself made durable: SST, blob and OPTIONS files are
#: hard links to files RocksDB synced when it wrote them; MANIFEST and CURRENT are copies it
#: fdatasyncs; the WAL copy is empty (writes skip the WAL); it fsyncs the directory last (an strace
#: of create_checkpoint shows those calls).
_DURABLE_BY_ROCKSDB = re.compile(r"(\d+\.(sst|blob|log)|MANIFEST-\d+|CURRENT|OPTIONS-\d+)")


def _make_durable(checkpoint: Path) -> None:
    """fsync what RocksDB's checkpoint left unsynced (rocksdict writes rocksdict-config.json after
    it), then the directory. Syncing everything again cost ~10 ms per split with 8 splits at once."""
    for entry in os.scandir(checkpoint):
        if entry.is_file(follow_symlinks=False) and not _DURABLE_BY_ROCKSDB.fullmatch(entry.name):
            fsync_file(Path(entry.path))
    fsync_directory(checkpoint)


class _RocksDBSnapshot:
    """A snapshot of a RocksDB store that began (its cache was written back) but is not written yet."""

    __slots__ = ("_done", "_store")

    def __init__(self, store: RocksDBStateStore, done: threading.Event) -> None:
        self._store = store
        self._done = done

    def write(self, directory: Path) -> None:
        if self._done.is_set():
            raise CheckpointError(f"the RocksDB snapshot of scope {self._store.scope!r} was already written")
        try:
            self._store._write_snapshot(directory)
        finally:
            self._done.set()

    def release(self) -> None:
        self._done.set()


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
        #: Set once the snapshot in progress (if any) is written or released.
        self._snapshot_done: threading.Event | None = None
        self._scans: weakref.WeakSet[Generator[tuple[bytes, bytes], None, None]] = weakref.WeakSet()
        self._checksums: dict[tuple[int, int, int, int], int] = {}
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
        if not self._cache_entries and not self._dirty and not self._snapshot_in_progress():
            self._put_now(key, value)
            return
        self._cache[key] = value
        dirty = self._dirty
        dirty.add(key)
        if len(dirty) >= self._dirty_limit():
            self.write_back()

    def delete(self, key: bytes) -> None:
        if not self._cache_entries and not self._dirty and not self._snapshot_in_progress():
            del self._db[key]
            return
        self._cache[key] = _ABSENT
        dirty = self._dirty
        dirty.add(key)
        if len(dirty) >= self._dirty_limit():
            self.write_back()

    def _dirty_limit(self) -> int:
        """How many dirty entries make a write-back (which waits for a snapshot in progress)."""
        if self._cache_entries:
            return self._cache_entries
        # No cache: writes are buffered only while a snapshot is in progress (RocksDB must not
        # change then), and written back at the first write after it.
        return _SNAPSHOT_OVERLAY if self._snapshot_in_progress() else 1

    def write_back(self) -> None:
        """Write the dirty cached entries to RocksDB in one WriteBatch (after the snapshot in
        progress, if any, is written: until then RocksDB must not change)."""
        dirty = self._dirty
        if not dirty:
            return
        self._wait_for_snapshot()
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
        self._wait_for_snapshot()
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
        self.begin_snapshot().write(directory)

    def begin_snapshot(self) -> StateSnapshot:
        """Write the cached entries back; until the snapshot is written (or released) RocksDB does
        not change: writes stay in the cache (when it is full, or for an ordered read of dirty
        entries, the store waits for the snapshot)."""
        self._wait_for_snapshot()
        self.write_back()
        done = threading.Event()
        self._snapshot_done = done
        return _RocksDBSnapshot(self, done)

    def _snapshot_in_progress(self) -> bool:
        done = self._snapshot_done
        if done is None:
            return False
        if done.is_set():
            self._snapshot_done = None
            return False
        return True

    def _wait_for_snapshot(self) -> None:
        done = self._snapshot_done
        if done is not None:
            if not done.is_set():
                started = time.perf_counter()
                done.wait()
                log.debug(
                    "state.store.waited_for_snapshot",
                    backend="rocksdb",
                    scope=self.scope,
                    waited_ms=round((time.perf_counter() - started) * 1000, 3),
                )
            self._snapshot_done = None

    def _write_snapshot(self, directory: Path) -> None:
        """The asynchronous part: flush, RocksDB checkpoint, fsync, metadata (another thread)."""
        started = time.perf_counter()
        directory = Path(directory)
        target = directory / SNAPSHOT_DB
        try:
            # Writes skip the WAL, so the memtables must be in SST files before the checkpoint.
            self._db.flush(wait=True)
            flushed = time.perf_counter()
            rocksdict.Checkpoint(self._db).create_checkpoint(str(target))
            _make_durable(target)
            linked = time.perf_counter()
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
            flush_ms=round((flushed - started) * 1000, 3),
            checkpoint_ms=round((linked - flushed) * 1000, 3),
        )

    def close(self) -> None:
        if self._closed:
            return
        self._wait_for_snapshot()  # a snapshot being written still uses the database
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
