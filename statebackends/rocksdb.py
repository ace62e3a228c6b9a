"""The RocksDB state backend: state on local disk, memory bounded by a shared block cache.

Layout: ``<directory>/<scope>/db`` is a scope's *working* database. It is scratch: writes skip the
write-ahead log and :meth:`RocksDBStateBackend.open` deletes any leftover working database. Only
snapshots are durable. A snapshot directory holds ``db/`` (a RocksDB checkpoint: unchanged SST files
are hard links shared with the working database and with earlier snapshots, which makes snapshots
incremental) and ``eventapp-snapshot.json`` (file sizes and CRC-32s; written last, so its presence
marks a complete snapshot). Restoring verifies the files, hard-links (or copies) them into a fresh
working directory and opens it.

Never modify snapshot files in place: SST files are shared by hard links, so an in-place write would
change every snapshot (and the working database) that shares the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import weakref
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import rocksdict
import structlog

from eventapp._fs import fsync_tree, write_atomically
from eventapp.errors import CheckpointError, ConfigurationError, SnapshotCorruptError, StateError
from eventapp.state.store import KeyedStateStore, prefix_successor

__all__ = ["RocksDBConfig", "RocksDBStateBackend", "RocksDBStateStore"]

log = structlog.get_logger(__name__)

MiB = 1 << 20
SNAPSHOT_DB = "db"
SNAPSHOT_META = "eventapp-snapshot.json"
_SNAPSHOT_FORMAT = 1
_SHARED_SUFFIXES = (".sst", ".blob")  # immutable once written: safe to hard-link
_CHUNK = 4 * MiB
_SAFE_SCOPE = re.compile(r"[A-Za-z0-9._-]+")
_MAX_HEADS = 16
_MAX_SCOPE_NAME = 100

Compression = Literal["lz4", "zstd", "snappy", "none"]
_COMPRESSION: dict[str, Callable[[], rocksdict.DBCompressionType]] = {
    "lz4": rocksdict.DBCompressionType.lz4,
    "zstd": rocksdict.DBCompressionType.zstd,
    "snappy": rocksdict.DBCompressionType.snappy,
    "none": rocksdict.DBCompressionType.none,
}


@dataclass(frozen=True, slots=True)
class RocksDBConfig:
    """Tuning of :class:`RocksDBStateBackend`; validated at construction.

    Memory is bounded by ``block_cache_bytes + total_write_buffer_bytes`` (plus small per-file
    overheads), however many keys or scopes there are: the block cache (LRU, which also holds index
    and filter blocks) and the write-buffer budget are shared by every scope of the backend.
    """

    block_cache_bytes: int = 64 * MiB
    write_buffer_bytes: int = 16 * MiB
    max_write_buffers: int = 2
    total_write_buffer_bytes: int = 64 * MiB
    max_background_jobs: int = 2
    max_open_files: int = 512
    compression: Compression = "lz4"
    bloom_bits_per_key: int = 10
    verify_restore_checksums: bool = True

    def __post_init__(self) -> None:
        _at_least("block_cache_bytes", self.block_cache_bytes, MiB, "1 MiB")
        _at_least("write_buffer_bytes", self.write_buffer_bytes, MiB, "1 MiB")
        _at_least("max_write_buffers", self.max_write_buffers, 2, "2 (one active, one flushing)")
        _at_least("total_write_buffer_bytes", self.total_write_buffer_bytes, MiB, "1 MiB")
        _at_least("max_background_jobs", self.max_background_jobs, 1, "1")
        if self.max_open_files != -1:
            _at_least("max_open_files", self.max_open_files, 16, "16 (or -1 for unlimited)")
        _at_least("bloom_bits_per_key", self.bloom_bits_per_key, 0, "0 (0 disables bloom filters)")
        if self.write_buffer_bytes > self.total_write_buffer_bytes:
            raise ConfigurationError(
                f"RocksDBStateBackend: write_buffer_bytes ({self.write_buffer_bytes}) is larger than "
                f"total_write_buffer_bytes ({self.total_write_buffer_bytes}), the memtable budget "
                f"shared by all scopes; lower write_buffer_bytes or raise total_write_buffer_bytes"
            )
        if self.compression not in _COMPRESSION:
            raise ConfigurationError(
                f"RocksDBStateBackend: compression={self.compression!r} is not supported; "
                f"use one of {sorted(_COMPRESSION)}"
            )
        if not isinstance(self.verify_restore_checksums, bool):
            raise ConfigurationError(
                "RocksDBStateBackend: verify_restore_checksums must be True or False, "
                f"got {self.verify_restore_checksums!r}"
            )


def _at_least(name: str, value: object, minimum: int, described: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(
            f"RocksDBStateBackend: {name} must be an integer of at least {described}, got {value!r}"
        )


_DEFAULTS = RocksDBConfig()


class RocksDBStateStore:
    """One scope's state in a RocksDB database (see :class:`~eventapp.state.store.KeyedStateStore`)."""

    def __init__(
        self,
        scope: str,
        db: rocksdict.Rdict,
        working_dir: Path,
        on_close: Callable[[RocksDBStateStore], None],
    ) -> None:
        self.scope = scope
        self.working_dir = working_dir
        self._db = db
        self._on_close = on_close
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
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._db[key] = value
        if self._heads_low <= key < self._heads_high:
            self._lower_heads(key)

    def delete(self, key: bytes) -> None:
        del self._db[key]

    def delete_prefix(self, prefix: bytes) -> None:
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
        scan = self._scan(prefix, prefix_successor(prefix), start)
        self._scans.add(scan)
        return scan

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
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
            # Writes skip the WAL, so the memtables must be in SST files before the checkpoint.
            self._db.flush(wait=True)
            rocksdict.Checkpoint(self._db).create_checkpoint(str(target))
            fsync_tree(target)
            files = self._describe_files(target)
            meta = {"format": _SNAPSHOT_FORMAT, "backend": "rocksdb", "scope": self.scope, "files": files}
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
                crc = _crc32_file(Path(entry.path))
            checksums[identity] = crc
            files[entry.name] = {"size": info.st_size, "crc32": crc}
        self._checksums = checksums
        return files


class RocksDBStateBackend:
    """A :class:`~eventapp.state.store.StateBackend` keeping each scope in its own RocksDB database.

    ``directory`` holds the working databases (``None``: a private temporary directory, removed by
    :meth:`close` or at interpreter exit). Put it on a local disk. The keyword arguments are the
    fields of :class:`RocksDBConfig` (see there); invalid values raise :class:`ConfigurationError`.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        block_cache_bytes: int = _DEFAULTS.block_cache_bytes,
        write_buffer_bytes: int = _DEFAULTS.write_buffer_bytes,
        max_write_buffers: int = _DEFAULTS.max_write_buffers,
        total_write_buffer_bytes: int = _DEFAULTS.total_write_buffer_bytes,
        max_background_jobs: int = _DEFAULTS.max_background_jobs,
        max_open_files: int = _DEFAULTS.max_open_files,
        compression: Compression = _DEFAULTS.compression,
        bloom_bits_per_key: int = _DEFAULTS.bloom_bits_per_key,
        verify_restore_checksums: bool = _DEFAULTS.verify_restore_checksums,
    ) -> None:
        self.config = RocksDBConfig(
            block_cache_bytes=block_cache_bytes,
            write_buffer_bytes=write_buffer_bytes,
            max_write_buffers=max_write_buffers,
            total_write_buffer_bytes=total_write_buffer_bytes,
            max_background_jobs=max_background_jobs,
            max_open_files=max_open_files,
            compression=compression,
            bloom_bits_per_key=bloom_bits_per_key,
            verify_restore_checksums=verify_restore_checksums,
        )
        self._private_dir: str | None = None
        if directory is None:
            self._private_dir = tempfile.mkdtemp(prefix="eventapp-rocksdb-")
            self.directory = Path(self._private_dir)
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._private_dir, True)
        else:
            self.directory = Path(directory)
            if self.directory.exists() and not self.directory.is_dir():
                raise ConfigurationError(
                    f"RocksDBStateBackend: directory {self.directory} exists and is not a directory; "
                    f"pass a directory on a local disk (it is created if missing)"
                )
        self._cache = rocksdict.Cache(self.config.block_cache_bytes)
        self._write_buffers = rocksdict.WriteBufferManager(self.config.total_write_buffer_bytes, False)
        self._write_options = rocksdict.WriteOptions()
        self._write_options.disable_wal = True  # type: ignore[assignment,method-assign]
        self._stores: dict[str, RocksDBStateStore] = {}

    @property
    def name(self) -> str:
        return "rocksdb"

    def open(self, scope: str, restore_from: Path | None = None) -> KeyedStateStore:
        previous = self._stores.get(scope)
        if previous is not None:
            log.warning("state.store.replaced", backend="rocksdb", scope=scope)
            previous.close()
        started = time.perf_counter()
        working = self.directory / scope_dirname(scope) / SNAPSHOT_DB
        if working.exists():
            shutil.rmtree(working)
        working.parent.mkdir(parents=True, exist_ok=True)
        if restore_from is None:
            try:
                db = rocksdict.Rdict(str(working), self._options(create=True))
            except Exception as exc:  # rocksdict raises bare Exception for RocksDB errors
                raise StateError(f"could not create the RocksDB database {working}: {exc}") from exc
            log.debug("state.store.opened", backend="rocksdb", scope=scope, path=str(working))
        else:
            restore_from = Path(restore_from)
            _restore_files(restore_from, working, verify=self.config.verify_restore_checksums)
            try:
                db = rocksdict.Rdict(str(working), self._options(create=False))
            except Exception as exc:  # rocksdict raises bare Exception for RocksDB errors
                shutil.rmtree(working, ignore_errors=True)
                raise _corrupt(restore_from, f"cannot be opened by RocksDB ({exc})") from exc
            log.info(
                "state.snapshot.restored",
                backend="rocksdb",
                scope=scope,
                path=str(restore_from),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        db.set_write_options(self._write_options)
        store = RocksDBStateStore(scope, db, working, self._forget)
        self._stores[scope] = store
        return store

    def close(self) -> None:
        """Close every open store and remove the private temporary directory, if any."""
        for store in list(self._stores.values()):
            store.close()
        if self._private_dir is not None:
            self._cleanup()

    def __repr__(self) -> str:
        return f"RocksDBStateBackend(directory={str(self.directory)!r}, config={self.config!r})"

    def _forget(self, store: RocksDBStateStore) -> None:
        if self._stores.get(store.scope) is store:
            del self._stores[store.scope]

    def _options(self, *, create: bool) -> rocksdict.Options:
        config = self.config
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(self._cache)
        table.set_cache_index_and_filter_blocks(True)  # index/filter memory counts against the cache
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        if config.bloom_bits_per_key:
            table.set_bloom_filter(config.bloom_bits_per_key, False)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(create)
        options.set_paranoid_checks(True)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_size(config.write_buffer_bytes)
        options.set_max_write_buffer_number(config.max_write_buffers)
        options.set_write_buffer_manager(self._write_buffers)
        options.set_max_background_jobs(config.max_background_jobs)
        options.set_max_open_files(config.max_open_files)
        options.set_compression_type(_COMPRESSION[config.compression]())
        options.set_keep_log_file_num(2)
        options.set_max_log_file_size(4 * MiB)
        # Timers and deleted state leave tombstones; compact files that are mostly deletions.
        options.add_compact_on_deletion_collector_factory(10_000, 5_000, 0.5)
        return options


def scope_dirname(scope: str) -> str:
    """A directory name for ``scope``: the scope itself when safe, else a sanitized, unique form."""
    if _SAFE_SCOPE.fullmatch(scope) and scope not in {".", ".."} and len(scope) <= _MAX_SCOPE_NAME:
        return scope
    digest = hashlib.sha256(scope.encode()).hexdigest()[:12]
    return (re.sub(r"[^A-Za-z0-9._-]", "_", scope).strip(".")[:_MAX_SCOPE_NAME] or "scope") + "-" + digest


def _restore_files(snapshot: Path, working: Path, *, verify: bool) -> None:
    """Check the snapshot against its metadata and link (or copy) its files into ``working``."""
    meta_path = snapshot / SNAPSHOT_META
    try:
        meta = json.loads(meta_path.read_bytes())
        files: dict[str, dict[str, int]] = meta["files"]
        if meta["format"] != _SNAPSHOT_FORMAT or meta["backend"] != "rocksdb":
            raise _corrupt(snapshot, f"has format {meta['format']!r} of backend {meta['backend']!r}")
        entries = [(str(name), int(entry["size"]), int(entry["crc32"])) for name, entry in files.items()]
    except OSError as exc:
        raise _corrupt(snapshot, f"has no readable {SNAPSHOT_META} ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _corrupt(snapshot, f"has an unreadable {SNAPSHOT_META} ({exc!r})") from exc
    source = snapshot / SNAPSHOT_DB
    working.mkdir()
    try:
        for name, size, crc in entries:
            if "/" in name or name in {"", ".", ".."}:
                raise _corrupt(snapshot, f"lists an invalid file name {name!r}")
            path = source / name
            try:
                actual = path.stat().st_size
            except OSError as exc:
                raise _corrupt(snapshot, f"is missing {path} ({exc.strerror or exc})") from exc
            if actual != size:
                raise _corrupt(snapshot, f"has {path} of {actual} bytes, expected {size}")
            if verify and _crc32_file(path) != crc:
                raise _corrupt(snapshot, f"has {path} with a wrong checksum (overwritten or damaged)")
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


def _crc32_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _corrupt(snapshot: Path, problem: str) -> SnapshotCorruptError:
    return SnapshotCorruptError(
        f"RocksDB state snapshot {snapshot} {problem}. The snapshot cannot be restored: restore from "
        f"an earlier checkpoint, or start the job without state if losing it is acceptable."
    )
