"""Savepoints in an object store (``s3://bucket/prefix``): the one place where an ``s3://`` savepoint
becomes a local directory, and a local one is stored in a bucket (see docs/savepoints.md).

A savepoint at ``s3://b/p`` is the tree of objects ``p/...`` holding the savepoint directory's files
under their relative paths; its ``p/_metadata`` object is written last (and deleted first), so it
marks a complete savepoint exactly as the ``_metadata`` file marks a complete local one.

* :func:`fetch_savepoint`: download (once per local cache) and verify; restore and inspect open the
  local copy. The savepoint in the bucket is never modified.
* :func:`create_savepoint_at`: write the savepoint into a local temporary directory, upload it
  (``_metadata`` last), remove the local copy.
* :func:`copy_savepoint`, :func:`dispose_savepoint`: copy between a local disk and a bucket (or two
  buckets, server-side), and delete one, checked first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from eventapp.errors import ObjectNotFoundError, ObjectStoreError, SavepointError
from eventapp.objectstore.location import ObjectLocation
from eventapp.objectstore.s3 import ObjectStore, S3ObjectStore, S3Settings
from eventapp.objectstore.tree import copy_tree, delete_tree, download_tree, list_tree, upload_tree
from eventapp.savepoint.create import CreatedSavepoint
from eventapp.savepoint.format import METADATA, SavepointMetadata, verify_state_file

__all__ = [
    "copy_savepoint",
    "create_savepoint_at",
    "default_cache",
    "dispose_savepoint",
    "fetch_savepoint",
    "is_remote",
    "path_or_uri",
]

log = structlog.get_logger("eventapp.savepoint")

_SCHEME = "s3://"
#: Objects of checkpoint storage (eventapp.checkpoint.object_storage): never in a savepoint.
_CHECKPOINT_MARKERS = ("_snapshot.json", "_committed.json", "split.json")
_CACHE_ENV = "EVENTAPP_SAVEPOINT_CACHE"


def is_remote(path: str | Path) -> bool:
    """``path`` names an object store location (``s3://...``)."""
    return isinstance(path, str) and path.startswith(_SCHEME)


def path_or_uri(value: str) -> Path | str:
    """A command-line savepoint path: ``s3://...`` stays a string, anything else is a local path."""
    return value if is_remote(value) else Path(value)


def default_cache() -> Path:
    """Where downloaded savepoints are kept: ``$EVENTAPP_SAVEPOINT_CACHE``, else
    ``<temp dir>/eventapp-savepoints``."""
    configured = os.environ.get(_CACHE_ENV, "").strip()
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "eventapp-savepoints"


def savepoint_location(uri: str) -> ObjectLocation:
    """The location of the savepoint ``uri``; a bucket root is refused (a savepoint is a prefix)."""
    location = ObjectLocation.parse(uri)
    if not location.prefix:
        raise SavepointError(
            f"{uri} is a whole bucket, not a savepoint: name the savepoint's prefix, for example "
            f"s3://{location.bucket}/savepoints/savepoint-<job>-<time>-<id> (as 'eventapp savepoint "
            f"create' printed it)"
        )
    return location


@contextlib.contextmanager
def _store(location: ObjectLocation, settings: S3Settings | None) -> Iterator[ObjectStore]:
    store = S3ObjectStore(location.bucket, settings)
    try:
        yield store
    finally:
        store.close()


def _metadata(store: ObjectStore, location: ObjectLocation) -> tuple[bytes, SavepointMetadata]:
    """The savepoint's ``_metadata`` object, parsed and checked."""
    key = location.key(METADATA)
    try:
        content = store.get_bytes(key)
    except ObjectNotFoundError as exc:
        raise SavepointError(
            f"there is no savepoint at {location.uri()}: it holds no {METADATA} object "
            f"({location.uri(key)}). It is not a savepoint, an incomplete one (its upload was "
            f"interrupted) or a disposed one; "
            f"pass the s3:// path 'eventapp savepoint create' printed (list them with "
            f"'aws s3 ls {location.uri()}/')"
        ) from exc
    return content, SavepointMetadata.loads(content, location.uri(key))


def _check_objects(location: ObjectLocation, metadata: SavepointMetadata, objects: dict[str, int]) -> None:
    """Every state file of ``metadata`` is stored with its size (a truncated object is refused)."""
    for split, state in sorted(metadata.splits.items()):
        key = location.uri(location.key(state.file))
        if state.native is not None:
            inside = [size for relative, size in objects.items() if relative.startswith(f"{state.file}/")]
            size: int | None = sum(inside) if inside else None
        else:
            size = objects.get(state.file)
        if size is None:
            raise SavepointError(
                f"savepoint {location.uri()} is incomplete: {key} (split {split!r}) is missing; restore "
                f"the object, or use another savepoint"
            )
        if size != state.size:
            raise SavepointError(
                f"savepoint object {key} (split {split!r}) has {size} bytes, its metadata says "
                f"{state.size}: it was truncated or replaced; the savepoint is damaged"
            )


def _verify_local(directory: Path, where: str) -> SavepointMetadata:
    """Check a local savepoint whole (``_metadata`` and every state file's SHA-256)."""
    metadata = SavepointMetadata.read(directory)
    for split, state in metadata.splits.items():
        try:
            verify_state_file(directory, split, state)
        except SavepointError as exc:
            if where == str(directory):
                raise
            raise SavepointError(f"savepoint {where} (downloaded to {directory}): {exc}") from exc
    return metadata


def _download(store: ObjectStore, location: ObjectLocation, target: Path) -> SavepointMetadata:
    """Download the savepoint at ``location`` into ``target`` (must not exist), verified."""
    content, metadata = _metadata(store, location)
    objects = list_tree(store, location.prefix)
    _check_objects(location, metadata, objects)
    staging = target.with_name(f".{target.name}.verify-{os.getpid()}-{os.urandom(3).hex()}")
    download_tree(store, location.prefix, staging, objects=objects)
    try:
        if (staging / METADATA).read_bytes() != content:
            raise SavepointError(
                f"savepoint {location.uri()} changed while it was downloaded; retry (or copy it first)"
            )
        _verify_local(staging, location.uri())
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return metadata


def fetch_savepoint(uri: str, *, cache_dir: Path | None = None, settings: S3Settings | None = None) -> Path:
    """The local, verified copy of the savepoint ``uri``: downloaded into ``cache_dir`` (default
    :func:`default_cache`) unless a copy of this very savepoint (same id and ``_metadata``) is there.
    Concurrent fetches (the workers of one job manager) each download into a temporary directory; the
    first rename wins, the others use it."""
    location = savepoint_location(uri)
    cache = cache_dir if cache_dir is not None else default_cache()
    with _store(location, settings) as store:
        content, metadata = _metadata(store, location)
        local = cache / f"{metadata.id}"
        if local.is_dir() and (local / METADATA).is_file() and (local / METADATA).read_bytes() == content:
            log.debug("savepoint.fetch.cached", savepoint=uri, path=str(local))
            return local
        cache.mkdir(parents=True, exist_ok=True)
        fresh = cache / f"{metadata.id}.{os.getpid()}-{os.urandom(3).hex()}"
        _download(store, location, fresh)
    try:
        fresh.rename(local)
    except OSError:  # a copy is there: another process renamed its copy first, or a broken one
        if not (local / METADATA).is_file() or (local / METADATA).read_bytes() != content:
            log.warning("savepoint.fetch.cache_mismatch", savepoint=uri, path=str(local), used=str(fresh))
            return fresh  # the other copy is never removed: another process may use it
        shutil.rmtree(fresh, ignore_errors=True)
    log.debug("savepoint.fetch.downloaded", savepoint=uri, path=str(local))
    return local


def _refuse_existing(store: ObjectStore, location: ObjectLocation) -> None:
    if list_tree(store, location.prefix):
        raise SavepointError(
            f"{location.uri()} already holds objects (a savepoint?); refusing to overwrite it: choose "
            f"another target, or dispose of the savepoint there first (eventapp savepoint dispose)"
        )


def _upload(directory: Path, location: ObjectLocation, store: ObjectStore) -> None:
    """Upload a local savepoint to an empty ``location``, ``_metadata`` last. On failure the objects
    written so far (without ``_metadata``: an incomplete savepoint) are removed."""
    _refuse_existing(store, location)
    try:
        upload_tree(store, directory, location.prefix, last=[METADATA])
    except BaseException:
        try:
            delete_tree(store, location.prefix, first=[METADATA])
        except ObjectStoreError as cleanup:
            log.warning("savepoint.upload.cleanup_failed", target=location.uri(), error=str(cleanup))
        raise


def create_savepoint_at(
    target: str | Path, create: Callable[[Path], CreatedSavepoint], *, settings: S3Settings | None = None
) -> tuple[str, CreatedSavepoint]:
    """``create(directory)`` (e.g. :func:`~eventapp.savepoint.create.create_savepoint` with its
    arguments) under ``target``; for an ``s3://`` target into a local temporary directory, then
    uploaded as ``<target>/<savepoint name>`` and removed locally. Returns the savepoint's path (or
    ``s3://`` URI) and what ``create`` returned."""
    if not is_remote(target):
        created = create(Path(target))
        return str(created.path), created
    parent = ObjectLocation.parse(str(target))
    with _store(parent, settings) as store:
        store.check()  # a missing bucket or an unreachable endpoint fails before any work
        staging = Path(tempfile.mkdtemp(prefix="eventapp-savepoint-upload-"))
        try:
            created = create(staging)
            location = ObjectLocation(parent.bucket, parent.key(created.path.name))
            _upload(created.path, location, store)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("savepoint.uploaded", savepoint=location.uri(), savepoint_id=created.metadata.id)
    return location.uri(), created


def dispose_savepoint(uri: str, *, settings: S3Settings | None = None) -> int:
    """Delete the savepoint ``uri``: checked to be one (its ``_metadata`` parses) and to hold
    nothing else (no checkpoint storage, no other savepoint); ``_metadata`` first, then every object
    under ``<prefix>/``. Returns how many objects were deleted."""
    location = savepoint_location(uri)
    with _store(location, settings) as store:
        _metadata(store, location)
        objects = list_tree(store, location.prefix)
        for relative in sorted(objects):
            name = relative.rsplit("/", 1)[-1]
            if name in _CHECKPOINT_MARKERS or "_committed/" in relative or relative.startswith("_committed"):
                raise SavepointError(
                    f"refusing to dispose of {uri}: it holds {location.uri(location.key(relative))}, an "
                    f"object of checkpoint storage; a savepoint holds none. Check the path"
                )
            if name == METADATA and relative != METADATA:
                raise SavepointError(
                    f"refusing to dispose of {uri}: it holds another savepoint "
                    f"({location.uri(location.key(relative))}); dispose of savepoints one by one"
                )
        deleted = delete_tree(store, location.prefix, first=[METADATA])
    log.info("savepoint.disposed", savepoint=uri, objects=deleted)
    return deleted


def copy_savepoint(source: str | Path, target: str | Path, *, settings: S3Settings | None = None) -> str:
    """Copy the savepoint ``source`` to ``target`` (each a local directory or an ``s3://`` URI; the
    target is the new savepoint itself and must not exist). The source is checked first (a local one
    whole, a remote one by its ``_metadata`` and object sizes) and never modified."""
    if is_remote(source):
        src = savepoint_location(str(source))
        with _store(src, settings) as src_store:
            content, metadata = _metadata(src_store, src)
            _check_objects(src, metadata, list_tree(src_store, src.prefix))
            if not is_remote(target):
                local = Path(target)
                _refuse_local(local)
                _download(src_store, src, local)
                return str(local)
            dst = savepoint_location(str(target))
            with _store(dst, settings) as dst_store:
                _refuse_existing(dst_store, dst)
                copy_tree(src_store, src.prefix, dst_store, dst.prefix, last=[METADATA])
                if dst_store.get_bytes(dst.key(METADATA)) != content:
                    raise SavepointError(f"the copy {dst.uri()} of {src.uri()} differs; retry")
                return dst.uri()
    directory = Path(source)
    if directory.name == METADATA and directory.is_file():
        directory = directory.parent
    _verify_local(directory, str(directory))
    if not is_remote(target):
        local = Path(target)
        _refuse_local(local)
        staging = local.with_name(f".{local.name}.copy-{os.urandom(3).hex()}")
        try:
            shutil.copytree(directory, staging)
            _verify_local(staging, str(staging))
            staging.rename(local)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return str(local)
    dst = savepoint_location(str(target))
    with _store(dst, settings) as store:
        _upload(directory, dst, store)
    return dst.uri()


def _refuse_local(target: Path) -> None:
    if os.path.lexists(target):
        raise SavepointError(
            f"{target} already exists; refusing to overwrite it: choose a new directory, or dispose of "
            f"the savepoint there first (eventapp savepoint dispose)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
