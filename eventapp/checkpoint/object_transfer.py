"""Parallel transfers of snapshot files between a local directory and an object store.

Uploads are incremental: every file of a snapshot is stored once per split under a content address
``<split>/shared/<sha256>-<size><suffix>`` (an object that is never modified, whatever kind of file
it holds: RocksDB's immutable SST and blob files, changelog files, and the small files such as
``OPTIONS`` or an unchanged ``MANIFEST`` that are copied into every snapshot); :class:`SharedObjects`
remembers which of those this process knows to exist, so a file already stored is not uploaded
again. A file of at least :data:`HEAD_MIN_BYTES` not known yet (after a restart) is looked for with
one HEAD first; a smaller one is simply stored (a PUT costs what a HEAD does).

A shared object may only be deleted (see ``ObjectCheckpointStorage.delete``) while holding its
split's lock, and never while an upload of this process relies on it (the *in-flight* keys): an
upload registers the keys of its snapshot under that lock before deciding what to skip.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import structlog

from eventapp.checkpoint.object_manifest import INLINE_MAX_BYTES, FileDigests, ManifestEntry, file_problem
from eventapp.errors import ObjectNotFoundError, SnapshotCorruptError, SnapshotMissingError
from eventapp.objectstore.s3 import ObjectStore
from eventapp.objectstore.tree import local_tree, wait_all
from eventapp.runtime.faults import fault_point

__all__ = ["HEAD_MIN_BYTES", "PendingWrites", "SharedObjects", "Transfers", "UploadPlan"]

log = structlog.get_logger("eventapp.checkpoint")

_T = TypeVar("_T")

#: A file at least this large not known to be stored yet is looked for (HEAD) before it is uploaded.
HEAD_MIN_BYTES = 256 * 1024
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,12}$")


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


class PendingWrites:
    """Writes running in the background whose outcome matters only as a hint (commit marks): a
    failure is logged, never raised; :meth:`wait` lets readers see them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[Future[Any], str]] = []

    def add(self, future: Future[Any], key: str) -> None:
        with self._lock:
            self._pending = [(f, k) for f, k in self._pending if not f.done()]
            self._pending.append((future, key))

    def wait(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for future, key in pending:
            error = future.exception()
            if error is not None:
                log.warning(
                    "checkpoint.objectstore.mark_failed", key=key, error=f"{type(error).__name__}: {error}"
                )


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """The files of a snapshot directory and where each goes."""

    files: dict[str, tuple[Path, ManifestEntry]]

    def shared_keys(self, shared_prefix: str) -> set[str]:
        return {e.key for _, e in self.files.values() if e.data is None and e.key.startswith(shared_prefix)}


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
        pool = self._pool_now()
        return wait_all([pool.submit(fn, *args) for args in calls])

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Run ``fn(*args)`` on the transfer pool, in the background."""
        return self._pool_now().submit(fn, *args)

    def _pool_now(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="eventapp-objectstore")
            return self._pool

    def plan(
        self,
        directory: Path,
        shared_prefix: str,
        skip: Collection[str] = (),
        inline_max: int = INLINE_MAX_BYTES,
    ) -> UploadPlan:
        """Hash the files under ``directory`` (but those in ``skip``) and name their objects; files
        of up to ``inline_max`` bytes go inline into the manifest."""
        paths = [(relative, path) for relative, path in local_tree(directory).items() if relative not in skip]
        files: dict[str, tuple[Path, ManifestEntry]] = {}
        large: list[tuple[str, Path]] = []
        for relative, path in paths:
            if path.stat().st_size > inline_max:
                large.append((relative, path))
                continue
            data = path.read_bytes()  # kept in the manifest itself
            files[relative] = (path, ManifestEntry("", len(data), hashlib.sha256(data).hexdigest(), data))
        digested = self._run(self.digests.digest, [(path,) for _, path in large])
        for (relative, path), (size, sha256) in zip(large, digested, strict=True):
            suffix = PurePosixPath(relative).suffix
            suffix = suffix if _SUFFIX.match(suffix) else ""
            files[relative] = (path, ManifestEntry(f"{shared_prefix}{sha256}-{size}{suffix}", size, sha256))
        return UploadPlan(files)

    def upload(self, plan: UploadPlan, shared_prefix: str) -> tuple[int, int]:
        """Store every file of ``plan`` (call inside :meth:`SharedObjects.in_flight`). Returns
        ``(uploaded, skipped)``."""

        def put(path: Path, entry: ManifestEntry) -> bool:
            shared = entry.key.startswith(shared_prefix)
            if shared and (
                self.shared.known(entry.key)
                or (entry.size >= HEAD_MIN_BYTES and self.store.head(entry.key) == entry.size)
            ):
                self.shared.add([entry.key])
                return False
            self.store.put_file(entry.key, path)
            fault_point("objectstore.mid_upload")  # some files of the snapshot stored, not all
            if shared:
                self.shared.add([entry.key])
            return True

        done = self._run(put, [(p, e) for p, e in plan.files.values() if e.data is None])
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
            if entry.data is not None:  # inline in the manifest
                path.write_bytes(entry.data)
                where = f"the inline file {relative}"
            else:
                try:
                    self.store.get_file(entry.key, path)
                except ObjectNotFoundError as exc:
                    raise SnapshotMissingError(
                        f"{what} lists object s3://{bucket}/{entry.key} ({relative}), which does not "
                        f"exist. {fix}"
                    ) from exc
                fault_point("objectstore.mid_download")
                where = f"object s3://{bucket}/{entry.key} ({relative})"
            problem = file_problem(path, entry, checksum=True)
            if problem is not None:
                raise SnapshotCorruptError(f"{what}: {where} {problem}. {fix}")
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
