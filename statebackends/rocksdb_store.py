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

import shutil
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import takewhile
from pathlib import Path
from typing import cast

import rocksdict
import structlog

from eventapp.state.store import StateSnapshot, prefix_successor

from .rocksdb_closed import ClosedCache
from .rocksdb_snapshot import SnapshotRecord
from .rocksdb_snapshot_write import ChangelogSnapshot, FullSnapshot

__all__ = ["RocksDBStateStore"]

log = structlog.get_logger(__name__)

_MAX_HEADS = 16
#: Entries per WriteBatch of put_all.
_BULK = 50_000
#: A cached entry known to be absent from the database.
_ABSENT: bytes | None = None
_UNKNOWN = object()
#: With the cache disabled, writes buffered while a snapshot is in progress before one waits for it.
_SNAPSHOT_OVERLAY = 100_000


class RocksDBStateStore:
    """One scope's state in a RocksDB database (see :class:`~eventapp.state.store.KeyedStateStore`)."""

    def __init__(
        self,
        scope: str,
        db: rocksdict.Rdict,
        working_dir: Path,
        on_close: Callable[[RocksDBStateStore], None],
        cache_entries: int = 0,
        changelog_snapshots: int = 0,
        changelog_entries: int = 100_000,
    ) -> None:
        self.scope = scope
        self.working_dir = working_dir
        self._db = db
        self._on_close = on_close
        #: Cached entries (``None``: absent from the database) and which of them are not written yet.
        self._cache: dict[bytes, bytes | None] = {}
        self._dirty: set[bytes] = set()
        self._cache_entries = cache_entries
        #: Set once the full snapshot in progress (if any) is written or released.
        self._snapshot_done: threading.Event | None = None
        #: Changelog snapshots (see begin_snapshot): at most this many in a row, of at most
        #: ``changelog_entries`` changes each; the entries written to RocksDB since the last
        #: snapshot (``None``: untracked, the next snapshot is full); the last snapshot written.
        self._changelog_snapshots = changelog_snapshots
        # The first chain after opening is shorter by a per-scope amount, so that the splits of a
        # worker, which all start with a full snapshot, do not all take their full ones together.
        self._chain_limit = changelog_snapshots - zlib.crc32(scope.encode()) % max(1, changelog_snapshots)
        self._chains = 0
        self._changelog_entries = changelog_entries
        self._changes: dict[bytes, bytes | None] | None = {} if changelog_snapshots else None
        self._previous: SnapshotRecord | None = None
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

    def put_all(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Straight to RocksDB in WriteBatches of ``_BULK`` entries (the cache is written back
        first and keeps no copy of them), recorded for the changelog like any write."""
        items = entries if isinstance(entries, list) else list(entries)
        self.write_back()
        self._wait_for_snapshot()
        cache = self._cache
        if cache:
            for key, _ in items:
                cache.pop(key, None)
        low, high = self._heads_low, self._heads_high
        if low < high:
            for key, _ in items:
                if low <= key < high:
                    self._lower_heads(key)
        changes = self._changes
        if changes is not None:
            if len(changes) + len(items) > self._changelog_entries:
                self._changes = None  # too many for a changelog: the next snapshot is full
            else:
                changes.update(items)
        for start in range(0, len(items), _BULK):
            batch = rocksdict.WriteBatch(raw_mode=True)
            put = batch.put
            for key, value in items[start : start + _BULK]:
                put(key, value)
            self._db.write(batch)

    def delete(self, key: bytes) -> None:
        if not self._cache_entries and not self._dirty and not self._snapshot_in_progress():
            del self._db[key]
            self._changed(key, None)
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
        changes = self._changes
        for key in dirty:
            value = cache[key]
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
                if low <= key < high:
                    lowered.append(key)
            if changes is not None:
                changes[key] = value
        self._db.write(batch)
        dirty.clear()
        if changes is not None and len(changes) > self._changelog_entries:
            self._changes = None  # too many for a changelog: the next snapshot is full
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
        self._changed(key, value)

    def _changed(self, key: bytes, value: bytes | None) -> None:
        changes = self._changes
        if changes is not None:
            changes[key] = value
            if len(changes) > self._changelog_entries:
                self._changes = None

    def delete_prefix(self, prefix: bytes) -> None:
        self._wait_for_snapshot()
        self.write_back()
        self._cache.clear()
        self._changes = None  # a range deletion is no list of changes: the next snapshot is full
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
        """Write the cached entries back, then fix the snapshot: a *changelog* snapshot (the
        entries written back since the previous snapshot; RocksDB is not touched) when the previous
        one is known and the chain is short enough, else a *full* one (a RocksDB checkpoint; until it
        is written or released RocksDB does not change: writes stay in the cache, and a full cache
        or an ordered read of dirty entries waits for it). See
        :mod:`eventapp.statebackends.rocksdb_snapshot`."""
        self._wait_for_snapshot()
        self.write_back()
        changes = self._changes
        self._changes = {} if self._changelog_snapshots else None
        previous = self._previous
        if (
            previous is not None
            and changes is not None
            and len(previous.changelog) < self._chain_limit
            and previous.directory.is_dir()
        ):
            self._previous = None  # until this one is written (or released: then a full one)
            return ChangelogSnapshot(self.scope, self.working_dir, previous, changes, self._written)
        self._chains += 1
        if self._chains > 1:  # the chain this full snapshot starts is a whole one
            self._chain_limit = self._changelog_snapshots
        done = threading.Event()
        self._snapshot_done = done

        def written(record: SnapshotRecord | None) -> None:
            self._written(record)
            done.set()

        return FullSnapshot(self.scope, self.working_dir, self._db, self._checksums, written)

    def _written(self, record: SnapshotRecord | None) -> None:
        """A snapshot ended (in the writing thread): the next changelog snapshot links from
        ``record`` (``None``: it was not written; its changes are lost to the changelog, so the next
        snapshot is full)."""
        self._previous = record

    def restored_from(self, record: SnapshotRecord) -> None:
        """The store was opened from the snapshot ``record``: the next changelog snapshot links from it."""
        self._previous = record
        self._changes = {} if self._changelog_snapshots else None

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

    def close(self) -> None:
        if self._closed:
            return
        self._wait_for_snapshot()  # a snapshot being written still uses the database
        self._closed = True
        self._dirty.clear()  # scratch: nothing written since the last snapshot survives a close
        self._cache = ClosedCache(self.scope)
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
        iterator.seek(self._seek_key(prefix, start))
        return iterator

    def _seek_key(self, prefix: bytes, start: bytes | None) -> bytes:
        """Where a scan of ``prefix`` from ``start`` begins: past the prefix's known-empty head."""
        head = self._heads.get(prefix)
        if start is None or (head is not None and start < head):
            return prefix if head is None else head
        return start

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
        options = rocksdict.ReadOptions()
        if upper is not None:
            options.set_iterate_upper_bound(upper)
        # rocksdict's own (key, value) iterator: one call per entry instead of four.
        items = cast(
            Iterator[tuple[bytes, bytes]],  # raw mode: keys and values are bytes
            self._db.items(from_key=self._seek_key(prefix, start), read_opt=options),
        )
        try:
            if upper is None and prefix:  # an all-0xff prefix: no upper bound to stop at
                yield from takewhile(lambda item: item[0].startswith(prefix), items)
            else:
                yield from items
        finally:
            del items
