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

A scope's store is :mod:`eventapp.statebackends.rocksdb_store`; the snapshot files and their restore
are :mod:`eventapp.statebackends.rocksdb_snapshot`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import rocksdict
import structlog

from eventapp.errors import ConfigurationError, StateError
from eventapp.state.store import KeyedStateStore

from .rocksdb_snapshot import SNAPSHOT_DB as SNAPSHOT_DB
from .rocksdb_snapshot import SNAPSHOT_META as SNAPSHOT_META
from .rocksdb_snapshot import SnapshotRecord, apply_changelog, corrupt, restore_files
from .rocksdb_store import RocksDBStateStore

__all__ = ["RocksDBConfig", "RocksDBStateBackend", "RocksDBStateStore"]

log = structlog.get_logger(__name__)

MiB = 1 << 20
_SAFE_SCOPE = re.compile(r"[A-Za-z0-9._-]+")
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
    overheads) and the write-back caches of the scopes (``cache_entries`` entries of raw bytes each),
    however many keys there are: the block cache (LRU, which also holds index and filter blocks) and
    the write-buffer budget are shared by every scope of the backend.

    ``cache_entries``: how many entries each scope keeps in its write-back cache (see
    :mod:`eventapp.statebackends.rocksdb_store`); 0 sends every get and put to RocksDB.

    ``changelog_snapshots``: how many snapshots in a row may be *changelog* snapshots, which write
    only the entries changed since the previous snapshot (at most ``changelog_entries`` of them)
    and hard-link its files, instead of flushing and checkpointing RocksDB; the next one is full
    again (see :mod:`eventapp.statebackends.rocksdb_snapshot`). 0: every snapshot is full. Restoring
    applies at most that many changelog files on top of the last full checkpoint.
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
    cache_entries: int = 100_000
    changelog_snapshots: int = 9
    changelog_entries: int = 100_000

    def __post_init__(self) -> None:
        _at_least("block_cache_bytes", self.block_cache_bytes, MiB, "1 MiB")
        _at_least("write_buffer_bytes", self.write_buffer_bytes, MiB, "1 MiB")
        _at_least("max_write_buffers", self.max_write_buffers, 2, "2 (one active, one flushing)")
        _at_least("total_write_buffer_bytes", self.total_write_buffer_bytes, MiB, "1 MiB")
        _at_least("max_background_jobs", self.max_background_jobs, 1, "1")
        if self.max_open_files != -1:
            _at_least("max_open_files", self.max_open_files, 16, "16 (or -1 for unlimited)")
        _at_least("bloom_bits_per_key", self.bloom_bits_per_key, 0, "0 (0 disables bloom filters)")
        _at_least("cache_entries", self.cache_entries, 0, "0 (0 disables the write-back cache)")
        _at_least("changelog_snapshots", self.changelog_snapshots, 0, "0 (0: every snapshot is full)")
        _at_least("changelog_entries", self.changelog_entries, 1, "1")
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
        cache_entries: int = _DEFAULTS.cache_entries,
        changelog_snapshots: int = _DEFAULTS.changelog_snapshots,
        changelog_entries: int = _DEFAULTS.changelog_entries,
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
            cache_entries=cache_entries,
            changelog_snapshots=changelog_snapshots,
            changelog_entries=changelog_entries,
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
        record: SnapshotRecord | None = None
        if restore_from is None:
            try:
                db = rocksdict.Rdict(str(working), self._options(create=True))
            except Exception as exc:  # rocksdict raises bare Exception for RocksDB errors
                raise StateError(f"could not create the RocksDB database {working}: {exc}") from exc
            log.debug("state.store.opened", backend="rocksdb", scope=scope, path=str(working))
        else:
            restore_from = Path(restore_from)
            record = restore_files(restore_from, working, verify=self.config.verify_restore_checksums)
            try:
                db = rocksdict.Rdict(str(working), self._options(create=False))
            except Exception as exc:  # rocksdict raises bare Exception for RocksDB errors
                shutil.rmtree(working, ignore_errors=True)
                raise corrupt(restore_from, f"cannot be opened by RocksDB ({exc})") from exc
            try:
                changes = apply_changelog(db, record)
            except BaseException:
                db.close()
                shutil.rmtree(working, ignore_errors=True)
                raise
            log.info(
                "state.snapshot.restored",
                backend="rocksdb",
                scope=scope,
                path=str(restore_from),
                changelog_files=len(record.changelog),
                changes=changes,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        db.set_write_options(self._write_options)
        config = self.config
        store = RocksDBStateStore(
            scope,
            db,
            working,
            self._forget,
            config.cache_entries,
            config.changelog_snapshots,
            config.changelog_entries,
        )
        if record is not None:
            store.restored_from(record)
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
