"""Opens a worker's split tasks: fence and recover each split's commit point, apply the restore
rules (:mod:`eventapp.checkpoint.restore`), and open each split's store from the snapshot its
committed checkpoint names (or the one ``--from-checkpoint`` names, or a savepoint's entries, or
empty).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from eventapp.checkpoint.commit import CommitPoint, CommittedCheckpoint
from eventapp.checkpoint.restore import (
    RestoreRequest,
    explicit_snapshots,
    lost_state,
    refuse_or_archive,
)
from eventapp.checkpoint.storage import CheckpointStorage, CommitPointStorage, SnapshotInfo
from eventapp.config import CheckpointingMode, JobConfig
from eventapp.errors import (
    ConfigurationError,
    ProducerFencedError,
    RestoreError,
    SourceError,
    SupersededError,
)
from eventapp.runtime.checkpointer import Checkpointer, RestoredSnapshot
from eventapp.runtime.operators import Operator
from eventapp.runtime.split_task import SplitTask
from eventapp.runtime.two_phase import TwoPhaseWriters
from eventapp.savepoint.reader import Savepoint
from eventapp.savepoint.restore import SavepointRestore, plan_restore
from eventapp.sink import Sink, SinkContext
from eventapp.source import CommittingSource, Source

__all__ = ["apply_start_positions", "open_split_tasks", "raise_most_telling"]


def raise_most_telling(errors: Sequence[BaseException | None]) -> None:
    """Raise the error that decides what the worker does next, if any split failed: being superseded
    by a newer instance (step back), then being fenced (recover again), then the first other error.
    A fenced split's sibling may fail differently (a commit timing out on a fenced producer)."""
    failed = [e for e in errors if e is not None]
    for kind in (SupersededError, ProducerFencedError, BaseException):
        for error in failed:
            if isinstance(error, kind):
                raise error


def apply_start_positions(tasks: Mapping[str, SplitTask], positions: Mapping[str, int], source: str) -> None:
    """Where a reader started splits without a restored position becomes their position (so it is
    checkpointed even if the split reads nothing, and a restart continues there)."""
    for split, position in positions.items():
        task = tasks.get(split)
        if task is None:
            raise SourceError(
                f"source {source!r} reported a start position for split {split!r}, which this worker "
                f"does not read (it reads {list(tasks)}); the source's reader is wrong"
            )
        if task.position is None:
            task.position = position


def open_split_tasks(
    job: str,
    config: JobConfig,
    source: Source[Any],
    splits: list[str],
    checkpointer: Checkpointer | None,
    restore: RestoreRequest,
    now_ms: int,
    log: Any,
    operators: Sequence[str] = (),
) -> list[SplitTask]:
    """The split tasks of ``splits``, each with its commit point, restored and ready to read.
    ``operators``: the uids of the job's stateful operators (checked against a savepoint).
    On failure every commit point opened so far is closed."""
    storage = None if checkpointer is None else checkpointer.storage
    commit_points: dict[str, CommitPoint | None] = {}
    tasks: list[SplitTask] = []
    try:
        # A savepoint is checked whole before any split is fenced or opened.
        savepoint = _savepoint_plan(restore, job, config, source, splits, operators, log)
        snapshots = _committed_snapshots(storage, job, splits)
        explicit = _explicit_snapshots(storage, restore, job, splits)
        for split in splits:
            commit_points[split] = _commit_point(config, source, storage, job, split)
        recovered = _recover(commit_points, {s: bool(snapshots.get(s)) for s in splits})
        lost = lost_state(snapshots, recovered, explicit if savepoint is None else dict.fromkeys(splits))
        if lost:
            assert storage is not None
            refuse_or_archive(job, storage, lost, commit_points, restore, log)
        dead_letters = config.error_policy.dead_letter_sink is not None
        for split in splits:
            if savepoint is not None:
                task = _savepoint_task(
                    split, config, checkpointer, recovered[split], savepoint, dead_letters, now_ms, log
                )
            else:
                task = _restored_task(
                    split,
                    config,
                    checkpointer,
                    recovered[split],
                    explicit.get(split),
                    dead_letters,
                    now_ms,
                    log,
                )
            task.commit_point = commit_points.pop(split)
            tasks.append(task)
    except BaseException:
        for unused in commit_points.values():
            if unused is not None:
                unused.close()
        for task in tasks:
            task.close()
        raise
    return tasks


def _savepoint_plan(
    restore: RestoreRequest,
    job: str,
    config: JobConfig,
    source: Source[Any],
    splits: list[str],
    operators: Sequence[str],
    log: Any,
) -> SavepointRestore | None:
    if restore.from_savepoint is None:
        return None
    plan = plan_restore(
        Savepoint.open(restore.from_savepoint),
        job=job,
        operators=operators,
        source_splits=list(source.splits()),
        splits=splits,
        partitioner=config.partitioner,
        max_parallelism=config.max_parallelism,
        allow_non_restored_state=restore.allow_non_restored_state,
        uid_renames=restore.uid_renames,
        backend=config.state_backend.name,
    )
    if plan.dropped:
        log.warning(
            "savepoint.state_dropped",
            savepoint=str(plan.savepoint.path),
            operators=list(plan.dropped),
            hint="--allow-non-restored-state: the state of these operators was not restored",
        )
    return plan


def _savepoint_task(
    split: str,
    config: JobConfig,
    checkpointer: Checkpointer | None,
    committed: CommittedCheckpoint | None,
    plan: SavepointRestore,
    dead_letters: bool,
    now_ms: int,
    log: Any,
) -> SplitTask:
    """The split restored from the savepoint, unless its committed checkpoint already continues a
    restore of this same savepoint (a restart with the same command after a crash): then that."""
    if committed is not None and committed.snapshot and checkpointer is not None:
        restored = checkpointer.committed_snapshot(split, committed)
        if restored.meta.savepoint == plan.id:
            log.info("split.savepoint_already_restored", split=split, savepoint_id=plan.id)
            return _restored_task(
                split, config, checkpointer, committed, None, dead_letters, now_ms, log, restored
            )
    native = plan.native.get(split)
    if native is not None:
        store = config.state_backend.open(split, restore_from=native)  # links or copies: NO_CLAIM
    else:
        store = config.state_backend.open(split)
        try:
            store.put_all(plan.entries[split])
        except BaseException:
            store.close()
            raise
    task = SplitTask(
        split,
        store,
        dead_letters=dead_letters,
        checkpoint_id=0 if committed is None else committed.checkpoint_id,
        position=plan.positions[split],
        max_timestamp=plan.max_timestamps[split],
        savepoint=plan.id,
        schemas=plan.schemas,
        now_ms=now_ms,
    )
    log.warning(
        "split.restored_from_savepoint",
        split=split,
        savepoint=str(plan.savepoint.path),
        savepoint_id=plan.id,
        entries=len(plan.entries[split]) if native is None else "native",
        position=plan.positions[split],
        resharded=plan.resharded,
        committed_checkpoint_id=None if committed is None else committed.checkpoint_id,
    )
    return task


def _commit_point(
    config: JobConfig, source: Source[Any], storage: CheckpointStorage | None, job: str, split: str
) -> CommitPoint | None:
    checkpoint = config.checkpoint
    if checkpoint is None:
        return None
    exactly_once = checkpoint.mode is CheckpointingMode.EXACTLY_ONCE
    if isinstance(source, CommittingSource):
        cp: CommitPoint = source.create_commit_point(job, split, exactly_once)
        return cp
    if not isinstance(storage, CommitPointStorage):
        raise ConfigurationError(
            f"source {source.name!r} keeps no committed positions and checkpoint storage "
            f"{storage!r} cannot keep them (it has no create_commit_point); use "
            f"LocalCheckpointStorage or ObjectCheckpointStorage"
        )
    return storage.create_commit_point(job, split)


def _committed_snapshots(
    storage: CheckpointStorage | None, job: str, splits: list[str]
) -> dict[str, list[SnapshotInfo]]:
    """Per split, the snapshots in checkpoint storage that a commit completed."""
    if storage is None:
        return {}
    return {s: [i for i in storage.list_snapshots(job, s) if i.committed] for s in splits}


def _explicit_snapshots(
    storage: CheckpointStorage | None, restore: RestoreRequest, job: str, splits: list[str]
) -> dict[str, tuple[Path, dict[str, Any]]]:
    path = restore.from_checkpoint
    if path is None:
        return {}
    if storage is None:
        raise ConfigurationError("--from-checkpoint needs checkpointing (JobConfig(checkpoint=...))")
    found = explicit_snapshots(path, job, splits)
    if not found:
        raise RestoreError(
            f"--from-checkpoint {path} holds no snapshot of this worker's splits {splits}; point it "
            f"at a snapshot, split or job directory of job {job!r}"
        )
    return found


def _recover(
    commit_points: dict[str, CommitPoint | None], has_snapshots: dict[str, bool]
) -> dict[str, CommittedCheckpoint | None]:
    """Recover every split's commit point (fence, read the committed checkpoint). Concurrently:
    each is a few broker round trips (``init_transactions`` can wait ~0.5 s for librdkafka's
    retry timer), and they are independent."""
    result: dict[str, CommittedCheckpoint | None] = {s: None for s in commit_points}
    todo = {s: cp for s, cp in commit_points.items() if cp is not None}
    if len(todo) <= 1:
        for split, cp in todo.items():
            result[split] = cp.recover(has_committed_snapshots=has_snapshots[split])
        return result
    with ThreadPoolExecutor(max_workers=min(len(todo), 16), thread_name_prefix="eventapp-recover") as pool:
        futures = {
            s: pool.submit(
                contextvars.copy_context().run,
                lambda cp=cp, s=s: cp.recover(has_committed_snapshots=has_snapshots[s]),
            )
            for s, cp in todo.items()
        }
        wait(futures.values())
    raise_most_telling([f.exception() for f in futures.values()])
    for split, future in futures.items():
        result[split] = future.result()
    return result


def _restored_task(
    split: str,
    config: JobConfig,
    checkpointer: Checkpointer | None,
    committed: CommittedCheckpoint | None,
    explicit: tuple[Path, dict[str, Any]] | None,
    dead_letters: bool,
    now_ms: int,
    log: Any,
    committed_snapshot: RestoredSnapshot | None = None,
) -> SplitTask:
    """``committed_snapshot``: ``committed``'s snapshot, if the caller has read it already."""
    backend = config.state_backend
    if explicit is None and (committed is None or not committed.snapshot):
        task = SplitTask(split, backend.open(split), dead_letters=dead_letters, now_ms=now_ms)
        if committed is not None:
            task.position = committed.position
            task.checkpoint_id = committed.checkpoint_id
            log.warning(
                "split.position_without_snapshot",
                split=split,
                position=committed.position,
                hint="committed position has no eventapp checkpoint; starting with empty state",
            )
        return task
    assert checkpointer is not None
    if explicit is not None:
        restored = checkpointer.explicit_snapshot(*explicit)
        meta = restored.meta
        # A new lineage from the user's snapshot (never pruned by it); checkpoint ids stay
        # monotonic for the commit point.
        task = SplitTask(
            split,
            backend.open(split, restore_from=restored.path / "state"),
            dead_letters=dead_letters,
            checkpoint_id=max(meta.checkpoint_id, 0 if committed is None else committed.checkpoint_id),
            position=meta.position,
            max_timestamp=meta.max_timestamp,
            schemas=meta.schemas,
            now_ms=now_ms,
        )
        task.restored_from = restored.path
        log.warning(
            "split.restored_explicitly",
            split=split,
            snapshot=str(restored.path),
            checkpoint_id=meta.checkpoint_id,
            position=meta.position,
            committed_checkpoint_id=None if committed is None else committed.checkpoint_id,
            committed_position=None if committed is None else committed.position,
        )
        return task
    assert committed is not None
    restored = committed_snapshot or checkpointer.committed_snapshot(split, committed)
    meta = restored.meta
    task = SplitTask(
        split,
        backend.open(split, restore_from=restored.path / "state"),
        dead_letters=dead_letters,
        checkpoint_id=committed.checkpoint_id,
        position=committed.position,
        max_timestamp=meta.max_timestamp,
        lineage=meta.lineage,
        savepoint=meta.savepoint,
        schemas=meta.schemas,
        now_ms=now_ms,
    )
    task.lineages[committed.snapshot] = task.lineage
    task.restored_from = restored.path
    log.info(
        "split.restored",
        split=split,
        checkpoint_id=committed.checkpoint_id,
        snapshot=committed.snapshot,
        position=committed.position,
        lineage=task.lineage,
    )
    return task


def attach_writers(
    task: SplitTask, head: Operator, job: str, config: JobConfig, sinks: Sequence[Sink[Any]]
) -> None:
    """Give ``task`` its input's chain ``head`` and a writer of each of ``sinks`` (the job's and its
    shuffles'), inside its commit point's transaction; recommit what its restored checkpoint's
    two-phase writers had prepared."""
    transaction = None if task.commit_point is None else task.commit_point.transaction
    ctx = SinkContext(job=job, split=task.id, transaction=transaction)
    writers = [sink.create_writer(ctx) for sink in sinks]
    dead_letter_sink = config.error_policy.dead_letter_sink
    dead_letter_writer = None if dead_letter_sink is None else dead_letter_sink.create_writer(ctx)
    task.attach(head, writers, dead_letter_writer)
    two_phase = TwoPhaseWriters(sinks, writers)
    if two_phase:
        if config.checkpoint is None:
            raise ConfigurationError(
                f"job {job!r} has a sink that applies its writes when a checkpoint commits "
                f"(exactly-once), but no checkpointing: enable it with "
                f"JobConfig(checkpoint=CheckpointConfig(...)), or make the sink at-least-once"
            )
        task.two_phase = two_phase
        if task.restored_from is not None:
            two_phase.recommit(task.id, task.restored_from, task.checkpoint_id)
