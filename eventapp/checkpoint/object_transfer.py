"""Parallel transfers of snapshot files between a local directory and an object store.

Uploads are incremental: files with a shared suffix (immutable RocksDB files) are stored once per
split under a content address ``<split>/shared/<sha256>-<size><suffix>``; :class:`SharedObjects`
remembers which of those this process knows to exist (checked with one HEAD on first sight), so a
file already stored is not uploaded again. Other files are stored under the snapshot's own prefix.

A shared object may only be deleted (see ``ObjectCheckpointStorage.delete``) while holding its
split's lock, and never while an upload of this process relies on it (the *in-flight* keys): an
upload registers the keys of its snapshot under that lock before deciding what to skip.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from eventapp.checkpoint.object_manifest import FileDigests, ManifestEntry, file_problem
from eventapp.errors import ObjectNotFoundError, SnapshotCorruptError, SnapshotMissingError
from eventapp.objectstore.s3 import ObjectStore
from eventapp.runtime.faults import fault_point

__all__ = ["SharedObjects", "Transfers", "UploadPlan"]

log = structlog.get_logger("eventapp.checkpoint")

_T = TypeVar("_T")


class SharedObjects:
    """What this process knows of the shared (content-addressed) objects of each split."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._split_locks: dict[str, threading.RLock] = {}
        self._uploaded: set[str] = set()
        self._in_flight: Counter[str] = Counter()

    def split_lock(self, shared_prefix: str) -> threading.RLock:
        with self._lock:
            return self._split_locks.setdefault(shared_prefix, threading.RLock())

    @contextlib.contextmanager
    def in_flight(self, shared_prefix: str, keys: Iterable[str]) -> Iterator[None]:
        """Protect ``keys`` from deletion while an upload relies on them."""
        held = list(keys)
        with self.split_lock(shared_prefix), self._lock:
            self._in_flight.update(held)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight.subtract(held)
                self._in_flight += Counter()  # drop zero counts

    def protected(self) -> set[str]:
        with self._lock:
            return set(self._in_flight)

    def known(self, key: str) -> bool:
        with self._lock:
            return key in self._uploaded

    def add(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._uploaded.update(keys)

    def forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._uploaded.difference_update(keys)


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """The files of a snapshot directory and where each goes."""

    files: dict[str, tuple[Path, ManifestEntry]]

    def shared_keys(self, shared_prefix: str) -> set[str]:
        return {e.key for _, e in self.files.values() if e.key.startswith(shared_prefix)}


class Transfers:
    """Uploads, downloads and copies of snapshot files on a thread pool."""

    def __init__(self, store: ObjectStore, max_workers: int) -> None:
        self.store = store
        self.shared = SharedObjects()
        self.digests = FileDigests()
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        #: Objects written by :meth:`upload` (for tests and the log).
        self.puts = 0

    def _run(self, fn: Callable[..., _T], calls: Sequence[tuple[Any, ...]]) -> list[_T]:
        """Run ``fn(*args)`` for each of ``calls`` in parallel; wait for all, then raise the first
        failure, if any."""
        if not calls:
            return []
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="eventapp-objectstore")
            pool = self._pool
        futures: list[Future[_T]] = [pool.submit(fn, *args) for args in calls]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]

    def plan(
        self, directory: Path, own_prefix: str, shared_prefix: str, suffixes: tuple[str, ...]
    ) -> UploadPlan:
        """Hash the files under ``directory`` and name their objects."""
        paths: list[tuple[str, Path]] = []
        for root, _dirs, names in os.walk(directory):
            for name in names:
                path = Path(root) / name
                paths.append((path.relative_to(directory).as_posix(), path))
        digested = self._run(self.digests.digest, [(path,) for _, path in paths])
        files: dict[str, tuple[Path, ManifestEntry]] = {}
        for (relative, path), (size, sha256) in zip(paths, digested, strict=True):
            suffix = next((s for s in suffixes if relative.endswith(s)), None)
            key = f"{shared_prefix}{sha256}-{size}{suffix}" if suffix else f"{own_prefix}{relative}"
            files[relative] = (path, ManifestEntry(key, size, sha256))
        return UploadPlan(files)

    def upload(self, plan: UploadPlan, shared_prefix: str) -> tuple[int, int]:
        """Store every file of ``plan`` (call inside :meth:`SharedObjects.in_flight`). Returns
        ``(uploaded, skipped)``."""

        def put(path: Path, entry: ManifestEntry) -> bool:
            shared = entry.key.startswith(shared_prefix)
            if shared and (self.shared.known(entry.key) or self.store.head(entry.key) == entry.size):
                self.shared.add([entry.key])
                return False
            self.store.put_file(entry.key, path)
            fault_point("objectstore.mid_upload")  # some files of the snapshot stored, not all
            if shared:
                self.shared.add([entry.key])
            return True

        done = self._run(put, list(plan.files.values()))
        uploaded = sum(done)
        self.puts += uploaded
        return uploaded, len(done) - uploaded

    def download(self, files: dict[str, ManifestEntry], directory: Path, what: str, fix: str) -> None:
        """Download ``files`` into ``directory`` and verify sizes and checksums.

        Raises :class:`SnapshotMissingError` or :class:`SnapshotCorruptError` naming the object.
        """
        bucket = self.store.bucket

        def get(relative: str, entry: ManifestEntry) -> None:
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.store.get_file(entry.key, path)
            except ObjectNotFoundError as exc:
                raise SnapshotMissingError(
                    f"{what} lists object s3://{bucket}/{entry.key} ({relative}), which does not exist. {fix}"
                ) from exc
            fault_point("objectstore.mid_download")
            problem = file_problem(path, entry, checksum=True)
            if problem is not None:
                raise SnapshotCorruptError(
                    f"{what}: object s3://{bucket}/{entry.key} ({relative}) {problem}. {fix}"
                )
            self.digests.remember(path, entry.sha256)

        self._run(get, list(files.items()))

    def copy_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Server-side copies ``source -> target``, in parallel."""
        self._run(self.store.copy, list(dict(pairs).items()))

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
