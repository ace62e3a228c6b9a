"""Copies of a directory tree between a local directory and an object store prefix, in parallel.

A *tree* in an object store is every object whose key starts with ``<prefix>/`` (the whole bucket
for the prefix ``""``); a file's relative path is the rest of its key. Every copy is verified by
size (each file the copy wrote has the size of its source), and:

* :func:`upload_tree` writes the files named ``last`` after every other file is stored and verified,
  so a reader that waits for them (a savepoint's ``_metadata``) never sees a partial tree;
* :func:`download_tree` writes into a temporary sibling directory renamed to the target when every
  file is there and verified (the target never holds a partial tree);
* :func:`copy_tree` copies server-side (S3 CopyObject, also across buckets of one endpoint), the
  ``last`` files last.

Nothing here deletes or overwrites outside the target; the callers decide whether the target may
exist (see :mod:`eventapp.savepoint.remote`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from eventapp.errors import ObjectStoreError
from eventapp.objectstore.s3 import ObjectStore

__all__ = [
    "TreeCopy",
    "copy_tree",
    "delete_tree",
    "download_tree",
    "list_tree",
    "local_tree",
    "tree_prefix",
    "upload_tree",
    "wait_all",
]

_T = TypeVar("_T")

log = structlog.get_logger("eventapp.objectstore")

DEFAULT_WORKERS = 8


@dataclass(frozen=True, slots=True)
class TreeCopy:
    """What a copy transferred."""

    files: int
    bytes: int


def tree_prefix(prefix: str) -> str:
    """The key prefix of the tree at ``prefix`` (``"a/b"`` -> ``"a/b/"``; ``""``: the bucket)."""
    return f"{prefix.strip('/')}/" if prefix.strip("/") else ""


def wait_all(futures: Sequence[Future[_T]]) -> list[_T]:
    """The results of ``futures``, once every one is done; the first failure, if any, is raised
    (after all finished, so that none is still writing)."""
    errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]


def _run(calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], workers: int) -> None:
    """Run every call in parallel; wait for all, then raise the first failure, if any."""
    if not calls:
        return
    with ThreadPoolExecutor(max(1, min(workers, len(calls))), thread_name_prefix="eventapp-tree") as pool:
        wait_all([pool.submit(fn, *args) for fn, args in calls])


def local_tree(directory: Path) -> dict[str, Path]:
    """Every regular file under ``directory``: relative POSIX path -> path."""
    files: dict[str, Path] = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(root) / name
            if path.is_file():
                files[path.relative_to(directory).as_posix()] = path
    return files


def list_tree(store: ObjectStore, prefix: str) -> dict[str, int]:
    """Every object of the tree at ``prefix``: relative path -> size."""
    base = tree_prefix(prefix)
    return {info.key[len(base) :]: info.size for info in store.list(base) if info.key != base}


def _size_problem(store: ObjectStore, key: str, expected: int, actual: int | None) -> ObjectStoreError:
    found = "is missing" if actual is None else f"has {actual} bytes"
    return ObjectStoreError(
        f"copy to s3://{store.bucket}/{key} at {store.endpoint} is incomplete: the object {found}, its "
        f"source has {expected} bytes (truncated or changed during the copy); retry the copy"
    )


def _check_sizes(store: ObjectStore, prefix: str, expected: Mapping[str, int]) -> None:
    stored = list_tree(store, prefix)
    base = tree_prefix(prefix)
    for relative, size in sorted(expected.items()):
        if stored.get(relative) != size:
            raise _size_problem(store, base + relative, size, stored.get(relative))


def upload_tree(
    store: ObjectStore,
    directory: Path,
    prefix: str,
    *,
    last: Collection[str] = (),
    workers: int = DEFAULT_WORKERS,
) -> TreeCopy:
    """Upload every file under ``directory`` to the tree at ``prefix``; the files whose relative
    path is in ``last`` are uploaded after all others are stored and verified."""
    started = time.perf_counter()
    files = local_tree(directory)
    missing = sorted(set(last) - set(files))
    if missing:
        raise ObjectStoreError(f"cannot upload {directory}: it has no {', '.join(missing)}")
    sizes = {relative: path.stat().st_size for relative, path in files.items()}
    base = tree_prefix(prefix)
    first = [(store.put_file, (base + r, p)) for r, p in sorted(files.items()) if r not in last]
    _run(first, workers)
    _check_sizes(store, prefix, {r: s for r, s in sizes.items() if r not in last})
    for relative in sorted(last):
        store.put_file(base + relative, files[relative])
        stored = store.head(base + relative)
        if stored != sizes[relative]:
            raise _size_problem(store, base + relative, sizes[relative], stored)
    copied = TreeCopy(len(files), sum(sizes.values()))
    log.debug(
        "objectstore.tree.uploaded",
        source=str(directory),
        target=f"s3://{store.bucket}/{prefix}",
        files=copied.files,
        bytes=copied.bytes,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return copied


def download_tree(
    store: ObjectStore,
    prefix: str,
    directory: Path,
    *,
    workers: int = DEFAULT_WORKERS,
    objects: Mapping[str, int] | None = None,
) -> TreeCopy:
    """Download the tree at ``prefix`` into ``directory``, which must not exist: written into a
    temporary sibling first, renamed when every file is there with its listed size. ``objects``:
    the tree's listing (relative path -> size) when the caller has it already."""
    started = time.perf_counter()
    if os.path.lexists(directory):
        raise ObjectStoreError(f"cannot download s3://{store.bucket}/{prefix} into {directory}: it exists")
    listing = dict(list_tree(store, prefix) if objects is None else objects)
    base = tree_prefix(prefix)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.download-{secrets.token_hex(4)}")
    staging.mkdir()

    def get(relative: str, size: int) -> None:
        path = staging / relative
        if staging not in path.parents or ".." in Path(relative).parts:
            raise ObjectStoreError(f"object s3://{store.bucket}/{base}{relative} has an unsafe key")
        path.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(base + relative, path)
        actual = path.stat().st_size
        if actual != size:
            raise ObjectStoreError(
                f"download of s3://{store.bucket}/{base}{relative} at {store.endpoint} got {actual} "
                f"bytes, the object has {size} (changed during the download?); retry"
            )

    try:
        _run([(get, item) for item in sorted(listing.items())], workers)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    copied = TreeCopy(len(listing), sum(listing.values()))
    log.debug(
        "objectstore.tree.downloaded",
        source=f"s3://{store.bucket}/{prefix}",
        target=str(directory),
        files=copied.files,
        bytes=copied.bytes,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return copied


def copy_tree(
    source: ObjectStore,
    source_prefix: str,
    target: ObjectStore,
    target_prefix: str,
    *,
    last: Collection[str] = (),
    workers: int = DEFAULT_WORKERS,
) -> TreeCopy:
    """Copy the tree at ``source_prefix`` to ``target_prefix`` server-side (``target`` may be on
    another bucket of the same endpoint); the ``last`` files after all others are verified."""
    started = time.perf_counter()
    listing = list_tree(source, source_prefix)
    src, dst = tree_prefix(source_prefix), tree_prefix(target_prefix)
    if source.bucket == target.bucket and (dst.startswith(src) or src.startswith(dst)):
        raise ObjectStoreError(
            f"cannot copy s3://{source.bucket}/{source_prefix} into s3://{target.bucket}/{target_prefix}: "
            f"one lies inside the other; choose a target beside the source"
        )
    missing = sorted(set(last) - set(listing))
    if missing:
        raise ObjectStoreError(f"cannot copy s3://{source.bucket}/{source_prefix}: it has no {missing}")

    def copy(relative: str) -> None:
        target.copy(src + relative, dst + relative, source_bucket=source.bucket)

    _run([(copy, (r,)) for r in sorted(listing) if r not in last], workers)
    _check_sizes(target, target_prefix, {r: s for r, s in listing.items() if r not in last})
    for relative in sorted(last):
        copy(relative)
        stored = target.head(dst + relative)
        if stored != listing[relative]:
            raise _size_problem(target, dst + relative, listing[relative], stored)
    copied = TreeCopy(len(listing), sum(listing.values()))
    log.debug(
        "objectstore.tree.copied",
        source=f"s3://{source.bucket}/{source_prefix}",
        target=f"s3://{target.bucket}/{target_prefix}",
        files=copied.files,
        bytes=copied.bytes,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return copied


def delete_tree(store: ObjectStore, prefix: str, *, first: Sequence[str] = ()) -> int:
    """Delete every object of the tree at ``prefix`` (never anything outside ``<prefix>/``); the
    files ``first`` (relative paths) before the others. Returns how many objects were deleted."""
    base = tree_prefix(prefix)
    if not base:
        raise ObjectStoreError(
            f"refusing to delete every object of bucket {store.bucket!r}: name a prefix inside it"
        )
    if first:
        store.delete_many([base + relative for relative in first])
    rest = [base + relative for relative in list_tree(store, prefix)]
    store.delete_many(rest)
    return len(rest) + len(first)
