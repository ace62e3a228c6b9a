"""Checkpoint storage in an S3-compatible object store (``CheckpointConfig(storage="s3://bucket/prefix")``).

Layout of the objects (``P`` is the URI's prefix, see ``docs/object-storage.md``)::

    P/<job>/<split>/<name>/_snapshot.json        metadata + manifest; written last: marks a snapshot
    P/<job>/<split>/shared/<sha256>-<size><sfx>  the snapshots' files by content, each stored once
    P/<job>/<split>/_committed/<name>            commit marks (a hint, as in LocalCheckpointStorage)
    P/<job>/<split>/_committed.json              commit point of sources without their own
    P/<job>/<split>/archive-<UTC time>/...        archived snapshots with copies of their shared files

Snapshots are written into a local staging directory (:meth:`begin`), uploaded by :meth:`complete`
and kept in a local cache directory, which the runtime keeps using (the next RocksDB snapshot
hard-links from it). :meth:`open` uses that cache when it is complete, else downloads.

What a checkpoint waits for is kept small, since the split does not process records meanwhile
(``benchmarks.bench_checkpoint_storage``): the files not stored yet, in parallel, then the metadata
object. The snapshot's ``split.json`` is not stored on its own (the metadata object holds it and a
download writes it back); the commit mark is written in the background (a hint; listing waits for
it), and so are the deletions of pruning (:mod:`eventapp.runtime.pruner`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from eventapp.checkpoint.commit import CommitPoint
from eventapp.checkpoint.object_commit import ObjectCommitPoint
from eventapp.checkpoint.object_manifest import (
    INLINE_MAX_BYTES,
    ManifestEntry,
    SnapshotManifest,
    file_problem,
)
from eventapp.checkpoint.object_transfer import PendingWrites, Transfers
from eventapp.checkpoint.storage import (
    SnapshotInfo,
    check_component,
    parse_snapshot_name,
    read_snapshot_meta,
    write_json_atomic,
)
from eventapp.errors import (
    CheckpointError,
    ConfigurationError,
    ObjectNotFoundError,
    SnapshotCorruptError,
    SnapshotMissingError,
)
from eventapp.objectstore.location import ObjectLocation
from eventapp.objectstore.s3 import ObjectStore, S3ObjectStore, S3Settings
from eventapp.runtime.faults import fault_point

__all__ = ["ObjectCheckpointStorage"]

log = structlog.get_logger("eventapp.checkpoint")

_META = "split.json"
_SNAPSHOT = "_snapshot.json"
_COMMITTED = "_committed"
_SHARED = "shared"
_ARCHIVE = "archive-"
_FIX = (
    "Refusing to start; restore the object from a backup or a bucket version, or restore the job "
    "from a savepoint."
)


def _default_cache(location: ObjectLocation) -> Path:
    return Path(tempfile.gettempdir()) / "eventapp-objectstore" / location.bucket / location.prefix


class ObjectCheckpointStorage:
    """Snapshots in an S3-compatible object store (see the module docstring).

    ``uri``: ``s3://bucket/prefix``. ``settings``: endpoint, region, credentials, parallelism (default:
    boto3's standard chain, e.g. ``AWS_ENDPOINT_URL``). ``store``: another :class:`ObjectStore` on the
    URI's bucket instead. ``cache_dir``: the local directory of staged and cached snapshots.
    ``inline_max_bytes``: files up to this size are kept inline in the snapshot's metadata object
    (Flink's ``state.storage.fs.memory-threshold``); 0 stores every file as an object.
    """

    def __init__(
        self,
        uri: str | ObjectLocation,
        *,
        settings: S3Settings | None = None,
        store: ObjectStore | None = None,
        cache_dir: str | Path | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ) -> None:
        self.location = uri if isinstance(uri, ObjectLocation) else ObjectLocation.parse(uri)
        if store is not None and settings is not None:
            raise ConfigurationError("ObjectCheckpointStorage takes settings or a store, not both")
        if store is not None and store.bucket != self.location.bucket:
            raise ConfigurationError(
                f"ObjectCheckpointStorage({self.location.uri()!r}) was given a store on bucket "
                f"{store.bucket!r}; use a store on bucket {self.location.bucket!r}"
            )
        settings = settings or S3Settings()
        self.store: ObjectStore = store or S3ObjectStore(self.location.bucket, settings)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache(self.location)
        if not isinstance(inline_max_bytes, int) or not 0 <= inline_max_bytes <= 1024 * 1024:
            raise ConfigurationError(
                f"ObjectCheckpointStorage inline_max_bytes must be an int from 0 to 1 MiB (files up to it "
                f"are kept in the snapshot's metadata object), got {inline_max_bytes!r}"
            )
        self.inline_max_bytes = inline_max_bytes
        self.transfers = Transfers(self.store, settings.max_workers)
        self._manifests: dict[str, SnapshotManifest] = {}  # by metadata key; snapshots are immutable
        self._marks = PendingWrites()

    def __repr__(self) -> str:
        return f"ObjectCheckpointStorage({self.location.uri()!r}, endpoint={self.store.endpoint!r})"

    # --- keys and local paths ---------------------------------------------------------------------
    def split_key(self, job: str, split: str) -> str:
        """The key prefix of a split, ending with ``/``."""
        return self.location.key(check_component(job), check_component(split)) + "/"

    def _meta_key(self, job: str, split: str, name: str) -> str:
        return f"{self.split_key(job, split)}{check_component(name)}/{_SNAPSHOT}"

    def _local(self, job: str, split: str) -> Path:
        return self.cache_dir / check_component(job) / check_component(split)

    # --- writing ----------------------------------------------------------------------------------
    def begin(self, job: str, split: str, name: str) -> Path:
        # Names carry the writer's random incarnation: only this process could have stored ``name``,
        # and then it holds the snapshot in its cache (no round trip to the store to ask).
        if (self._local(job, split) / name).exists() or self._meta_key(job, split, name) in self._manifests:
            raise CheckpointError(
                f"snapshot {self.location.uri(self._meta_key(job, split, name))} already exists; "
                f"snapshots are never overwritten"
            )
        staging = self._local(job, split) / (name + ".inprogress")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return staging

    def complete(self, job: str, split: str, name: str, meta: dict[str, Any]) -> Path:
        base = self._local(job, split)
        staging = base / (name + ".inprogress")
        split_key = self.split_key(job, split)
        shared_prefix = f"{split_key}{_SHARED}/"
        started = time.perf_counter()
        try:
            write_json_atomic(staging / _META, meta)
            plan = self.transfers.plan(
                staging, shared_prefix, skip=(_META,), inline_max=self.inline_max_bytes
            )
            with self.transfers.shared.in_flight(shared_prefix, plan.shared_keys(shared_prefix)):
                uploaded, skipped = self.transfers.upload(plan, shared_prefix)
                manifest = SnapshotManifest(name, meta, {r: e for r, (_, e) in plan.files.items()})
                fault_point("objectstore.before_metadata")  # every file stored, not visible yet
                self.store.put_bytes(self._meta_key(job, split, name), manifest.to_bytes())  # last
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._manifests[self._meta_key(job, split, name)] = manifest
        final = base / name
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        log.debug(
            "checkpoint.objectstore.uploaded",
            job=job,
            split=split,
            snapshot=name,
            uploaded=uploaded,
            skipped=skipped,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return final

    def mark_committed(self, job: str, split: str, name: str) -> None:
        """Write the mark in the background (a hint; :meth:`list_snapshots` waits for it)."""
        key = f"{self.split_key(job, split)}{_COMMITTED}/{check_component(name)}"
        self._marks.add(self.transfers.submit(self.store.put_bytes, key, b""), key)

    def create_commit_point(self, job: str, split: str) -> CommitPoint:
        """An :class:`ObjectCommitPoint`: the object ``P/<job>/<split>/_committed.json``."""
        return ObjectCommitPoint(self.store, f"{self.split_key(job, split)}_committed.json")

    # --- reading ----------------------------------------------------------------------------------
    def _manifest(self, job: str, split: str, name: str) -> SnapshotManifest:
        key = self._meta_key(job, split, name)
        cached = self._manifests.get(key)
        if cached is not None:
            return cached
        uri = self.location.uri(key)
        try:
            data = self.store.get_bytes(key)
        except ObjectNotFoundError as exc:
            raise SnapshotMissingError(
                f"the committed checkpoint of split {split!r} names snapshot {name!r}, but its metadata "
                f"object {uri} does not exist. Refusing to start rather than silently using older "
                f"state. Restore the objects (was the bucket or prefix cleaned?), or restore the job "
                f"from a savepoint; starting from scratch requires resetting the split's committed "
                f"position explicitly."
            ) from exc
        try:
            manifest = SnapshotManifest.from_bytes(data)
        except ValueError as exc:
            raise SnapshotCorruptError(f"snapshot metadata {uri} is unreadable ({exc}). {_FIX}") from exc
        if manifest.name != name or manifest.meta.get("snapshot") != name:
            raise SnapshotCorruptError(
                f"snapshot metadata {uri} does not name snapshot {name!r} (it names "
                f"{manifest.name!r}). {_FIX}"
            )
        self._manifests[key] = manifest
        return manifest

    def open(self, job: str, split: str, name: str) -> tuple[Path, dict[str, Any]]:
        manifest = self._manifest(job, split, name)
        local = self._local(job, split) / name
        complete = (local / _META).is_file() and all(
            file_problem(local / relative, entry, checksum=False) is None
            for relative, entry in manifest.files.items()
        )
        if not complete:
            self._download(job, split, name, manifest, local)
        meta = read_snapshot_meta(
            local, f"snapshot {self.location.uri(self._meta_key(job, split, name))}", _FIX
        )
        # Every shared file of an opened snapshot exists: the next upload need not check them.
        self.transfers.shared.add(manifest.shared_keys(f"{self.split_key(job, split)}{_SHARED}/"))
        return local, meta

    def _download(self, job: str, split: str, name: str, manifest: SnapshotManifest, local: Path) -> None:
        files = manifest.files
        fresh = local.with_name(f"{name}.download-{uuid.uuid4().hex[:8]}")
        fresh.mkdir(parents=True)
        started = time.perf_counter()
        try:
            uri = self.location.uri(self._meta_key(job, split, name))
            what = f"snapshot {name!r} of split {split!r} ({uri})"
            self.transfers.download(files, fresh, what, _FIX)
            if _META not in files:  # stored in the metadata object only
                write_json_atomic(fresh / _META, manifest.meta)
            if local.exists():
                shutil.rmtree(local)
            fresh.rename(local)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        log.info(
            "checkpoint.objectstore.downloaded",
            job=job,
            split=split,
            snapshot=name,
            files=len(files),
            bytes=sum(e.size for e in files.values()),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def list_snapshots(self, job: str, split: str) -> list[SnapshotInfo]:
        """The split's snapshots (those whose metadata object exists) and their commit marks. The
        whole split prefix is listed: servers with a filer (SeaweedFS) keep a ``<name>/``
        "directory" after its last object is deleted, so prefixes prove nothing."""
        self._marks.wait()
        prefix = self.split_key(job, split)
        names: list[tuple[int, str]] = []
        committed: set[str] = set()
        for info in self.store.list(prefix):
            parts = info.key[len(prefix) :].split("/")
            if len(parts) != 2:
                continue
            if parts[1] == _SNAPSHOT and (cid := parse_snapshot_name(parts[0])) is not None:
                names.append((cid, parts[0]))
            elif parts[0] == _COMMITTED:
                committed.add(parts[1])
        return [SnapshotInfo(split, n, cid, committed=n in committed) for cid, n in sorted(names)]

    def splits(self, job: str) -> list[str]:
        self._marks.wait()
        prefix = self.location.key(check_component(job)) + "/"
        return sorted({info.key[len(prefix) :].split("/")[0] for info in self.store.list(prefix)})

    # --- deleting and archiving -------------------------------------------------------------------
    def delete(self, job: str, split: str, name: str) -> None:
        split_key = self.split_key(job, split)
        shared_prefix = f"{split_key}{_SHARED}/"
        meta_key = self._meta_key(job, split, name)
        self._marks.wait()
        with self.transfers.shared.split_lock(shared_prefix):
            self.store.delete_many([meta_key])  # first: never visible half-deleted
            self._manifests.pop(meta_key, None)
            self.store.delete_many([f"{split_key}{_COMMITTED}/{name}"])
            self._collect_shared(job, split, shared_prefix)
        shutil.rmtree(self._local(job, split) / name, ignore_errors=True)
        log.debug("checkpoint.snapshot.deleted", job=job, split=split, snapshot=name)

    def _collect_shared(self, job: str, split: str, shared_prefix: str) -> None:
        """Delete the split's shared objects that no remaining snapshot references (nor an upload of
        this process relies on). Called under the split's lock."""
        referenced = set().union(
            *(
                self._manifest(job, split, i.name).shared_keys(shared_prefix)
                for i in self.list_snapshots(job, split)
            )
        )
        protected = self.transfers.shared.protected()
        unused = [
            info.key
            for info in self.store.list(shared_prefix)
            if info.key not in referenced and info.key not in protected
        ]
        if unused:
            self.transfers.shared.forget(unused)
            self.store.delete_many(unused)
            log.debug("checkpoint.objectstore.shared_deleted", job=job, split=split, objects=len(unused))

    def archive(self, job: str, split: str, names: Sequence[str]) -> str:
        split_key = self.split_key(job, split)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target, suffix = f"{split_key}{_ARCHIVE}{stamp}/", 0
        while self.store.list(target):
            suffix += 1
            target = f"{split_key}{_ARCHIVE}{stamp}.{suffix}/"
        committed = {i.name for i in self.list_snapshots(job, split) if i.committed}
        copies: dict[str, str] = {}
        manifests: list[tuple[str, SnapshotManifest]] = []
        for name in names:
            manifest = self._manifest(job, split, check_component(name))
            files: dict[str, ManifestEntry] = {}
            for relative, entry in manifest.files.items():
                if entry.data is not None:  # inline: the archived manifest holds it too
                    files[relative] = entry
                    continue
                key = f"{target}{_SHARED}/{entry.key.rsplit('/', 1)[1]}"  # every object is shared
                copies[entry.key] = key
                files[relative] = ManifestEntry(key, entry.size, entry.sha256)
            manifests.append((name, SnapshotManifest(name, manifest.meta, files)))
        self.transfers.copy_many(copies.items())
        for name, manifest in manifests:  # after the copies: an archived manifest names what exists
            self.store.put_bytes(f"{target}{name}/{_SNAPSHOT}", manifest.to_bytes())
            if name in committed:
                self.store.put_bytes(f"{target}{_COMMITTED}/{name}", b"")
        for name in names:
            self.delete(job, split, name)
        uri = self.location.uri(target.rstrip("/"))
        log.info("checkpoint.snapshots.archived", job=job, split=split, snapshots=list(names), to=uri)
        return uri

    def close(self) -> None:
        """Write the pending commit marks, stop the transfer threads and close the client."""
        self._marks.wait()
        self.transfers.close()
        self.store.close()
