"""``eventapp savepoint create``: a savepoint assembled from every split's newest committed checkpoint.

Each split checkpoints on its own, so a savepoint of a job is, per split, the state and position of
its newest checkpoint that committed (marked committed in checkpoint storage). Creating one reads
checkpoint storage only: it neither stops nor fences the running job, commits nothing, and does not
become a recovery point (Flink >= 1.15). A snapshot pruned while it is being read is replaced by the
split's newer one.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from eventapp._fs import tree_size
from eventapp.checkpoint.meta import SnapshotMeta
from eventapp.checkpoint.storage import CheckpointStorage, SnapshotInfo
from eventapp.errors import SavepointError, SnapshotMissingError
from eventapp.savepoint.format import SavepointMetadata
from eventapp.savepoint.native import read_snapshot_entries
from eventapp.savepoint.state_file import WrittenStateFile, write_state_file
from eventapp.savepoint.writer import SavepointWriter, writing_savepoint
from eventapp.state.keys import MIN_TIMESTAMP

__all__ = ["PARALLEL_MIN_BYTES", "CreatedSavepoint", "create_savepoint"]

log = structlog.get_logger("eventapp.savepoint")

_ATTEMPTS = 3

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CreatedSavepoint:
    path: Path
    metadata: SavepointMetadata
    #: Splits with no committed checkpoint: in the savepoint with empty state and no position.
    never_checkpointed: tuple[str, ...]


def create_savepoint(
    storage: CheckpointStorage,
    job: str,
    splits: Sequence[str],
    target: Path,
    *,
    max_parallelism: int,
    partitioner: str,
    native: bool = False,
    workers: int | None = None,
) -> CreatedSavepoint:
    """Write a savepoint of ``job``'s ``splits`` under ``target``: canonical (entries files), or with
    ``native`` the checkpoints' own snapshot files (:mod:`eventapp.savepoint.native`).

    A canonical savepoint's state files are written by ``workers`` processes at once, one split
    each (as Flink's subtasks write theirs); ``None``: one per CPU when the snapshots hold more than
    :data:`PARALLEL_MIN_BYTES`, else in this process (``1``).

    :raises SavepointError: no split has a committed checkpoint, or a snapshot cannot be read. On
        failure the half-written directory is removed.
    """
    newest = {s: _newest_committed(storage, job, s) for s in splits}
    if not any(newest.values()):
        raise SavepointError(
            f"job {job!r} has no committed checkpoint in {storage!r} for any of its splits "
            f"{list(splits)}; a savepoint is made from committed checkpoints: run the job with "
            f"checkpointing until one completes (eventapp checkpoints list shows them)"
        )
    if workers is not None and workers < 1:
        raise SavepointError(f"workers={workers}: write with at least 1 process (or None: one per CPU)")
    never = [split for split in splits if newest[split] is None]
    with writing_savepoint(
        target, job=job, max_parallelism=max_parallelism, partitioner=partitioner, origin="checkpoints"
    ) as writer:
        if native:
            metas = {s: _add_native(writer, storage, job, s, info) for s, info in newest.items() if info}
        else:
            metas = _add_canonical(writer, storage, job, newest, max_parallelism, workers)
        for split in never:
            writer.add_split(split, (), position=None, max_timestamp=MIN_TIMESTAMP)
        # The backend names are informative only (the format is the same for all).
        backends = sorted({meta.backend for meta in metas.values()})
        metadata = writer.finish(backend=",".join(backends) or None)
    directory = writer.directory
    log.info(
        "savepoint.created",
        job=job,
        path=str(directory),
        savepoint_id=metadata.id,
        splits=len(splits),
        type="native" if native else "canonical",
        never_checkpointed=never,
    )
    return CreatedSavepoint(directory, metadata, tuple(never))


def _newest_committed(storage: CheckpointStorage, job: str, split: str) -> SnapshotInfo | None:
    committed = [i for i in storage.list_snapshots(job, split) if i.committed]
    return committed[-1] if committed else None


def _add_native(
    writer: SavepointWriter, storage: CheckpointStorage, job: str, split: str, newest: SnapshotInfo
) -> SnapshotMeta:
    def link(path: Path, meta: SnapshotMeta) -> SnapshotMeta:
        writer.add_native_split(
            split,
            path / "state",
            backend=meta.backend,
            operators=meta.operators,
            position=meta.position,
            max_timestamp=meta.max_timestamp,
            checkpoint_id=meta.checkpoint_id,
            snapshot=meta.snapshot,
            schemas=meta.schemas,
        )
        return meta

    return _from_newest(storage, job, split, newest, link)


def _add_canonical(
    writer: SavepointWriter,
    storage: CheckpointStorage,
    job: str,
    newest: dict[str, SnapshotInfo | None],
    max_parallelism: int,
    workers: int | None,
) -> dict[str, SnapshotMeta]:
    """Write the state file of every split with a committed checkpoint, in ``workers`` processes."""
    jobs = [
        _CanonicalSplit(
            storage, job, split, info, writer.directory, writer.reserve_file("entries"), max_parallelism
        )
        for split, info in newest.items()
        if info is not None
    ]
    if workers is None:
        workers = _default_workers(storage, job, jobs)
    workers = min(workers, len(jobs))
    if workers > 1:
        method = _start_method()
        log.info("savepoint.writing", job=job, splits=len(jobs), workers=workers, start_method=method)
        context = mp.get_context(method)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
            results = list(pool.map(_write_canonical, jobs))
    else:
        log.info("savepoint.writing", job=job, splits=len(jobs), workers=1, start_method=None)
        results = [_write_canonical(split_job) for split_job in jobs]
    metas: dict[str, SnapshotMeta] = {}
    for split_job, (meta, written) in zip(jobs, results, strict=True):
        writer.add_written_split(
            split_job.split,
            written,
            position=meta.position,
            max_timestamp=meta.max_timestamp,
            checkpoint_id=meta.checkpoint_id,
            snapshot=meta.snapshot,
            schemas=meta.schemas,
        )
        metas[split_job.split] = meta
    return metas


#: Snapshots (all splits together) smaller than this are written in the calling process: a worker
#: process costs ~0.1 s (fork) to ~0.5 s (spawn, imports), ~100-200 k entries' worth of writing.
PARALLEL_MIN_BYTES = 4 << 20


def _default_workers(storage: CheckpointStorage, job: str, jobs: Sequence[_CanonicalSplit]) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cpus < 2 or len(jobs) < 2:
        return 1
    size = 0
    for split_job in jobs:
        assert split_job.newest is not None
        try:
            path, _ = storage.open(job, split_job.split, split_job.newest.name)
        except (SnapshotMissingError, FileNotFoundError):
            continue  # pruned meanwhile: the writer takes the newer one
        size += tree_size(path / "state")
        if size >= PARALLEL_MIN_BYTES:
            return cpus
    return 1


def _start_method() -> str:
    """Worker processes are forked when this process has one thread (cheap, and safe: no other
    thread holds a lock), spawned otherwise (the job manager creates savepoints from a thread;
    each spawned worker imports eventapp first, ~0.5 s)."""
    return "fork" if threading.active_count() == 1 and "fork" in mp.get_all_start_methods() else "spawn"


def _init_worker() -> None:
    """A forked worker leaves the objects it inherited alone (a collection would touch, so copy, the
    parent's pages) and does not collect at all: writing creates no reference cycles, and the
    process ends with the savepoint."""
    gc.freeze()
    gc.disable()


@dataclass(frozen=True, slots=True)
class _CanonicalSplit:
    """What a worker process needs to write one split's state file (picklable)."""

    storage: CheckpointStorage
    job: str
    split: str
    newest: SnapshotInfo | None
    directory: Path
    relative: str
    max_parallelism: int


def _write_canonical(split_job: _CanonicalSplit) -> tuple[SnapshotMeta, WrittenStateFile]:
    """Write ``split_job``'s state file from its split's newest committed snapshot (in a worker
    process, or in this one)."""

    def write(path: Path, meta: SnapshotMeta) -> tuple[SnapshotMeta, WrittenStateFile]:
        with read_snapshot_entries(meta.backend, path / "state") as store:
            entries = store.scan(b"")
            written = write_state_file(
                split_job.directory, split_job.relative, split_job.split, entries, split_job.max_parallelism
            )
        return meta, written

    assert split_job.newest is not None
    return _from_newest(split_job.storage, split_job.job, split_job.split, split_job.newest, write)


def _from_newest(
    storage: CheckpointStorage,
    job: str,
    split: str,
    newest: SnapshotInfo,
    action: Callable[[Path, SnapshotMeta], _T],
) -> _T:
    """``action(snapshot directory, its metadata)`` on ``split``'s newest committed snapshot
    (``newest``, listed again after a prune)."""
    info: SnapshotInfo | None = newest
    for attempt in range(_ATTEMPTS):
        if attempt:
            info = _newest_committed(storage, job, split)
        assert info is not None
        try:
            path, data = storage.open(job, split, info.name)
            return action(path, SnapshotMeta.from_json(path, data))
        except (SnapshotMissingError, FileNotFoundError) as exc:
            # Pruned while being read (the job kept checkpointing): take the newer one.
            log.info("savepoint.snapshot_pruned", split=split, snapshot=info.name, attempt=attempt + 1)
            if attempt + 1 == _ATTEMPTS:
                raise SavepointError(
                    f"split {split!r}: its newest committed snapshots were pruned while being read "
                    f"{_ATTEMPTS} times; retry, or raise CheckpointConfig.retained"
                ) from exc
    raise AssertionError("unreachable")
