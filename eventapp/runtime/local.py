"""Runs a job in this process: reads the assigned splits, drives operators, timers, watermarks,
checkpoints and restores. Used directly by ``Job.run()`` and by worker processes.
"""

from __future__ import annotations

import contextvars
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from eventapp.checkpoint.commit import CommitPoint, CommittedCheckpoint
from eventapp.checkpoint.local_commit import FileCommitPoint
from eventapp.checkpoint.restore import (
    LEGACY_LINEAGE,
    RestoreRequest,
    explicit_snapshots,
    lost_state,
    refuse_or_archive,
)
from eventapp.checkpoint.storage import CheckpointStorage, SnapshotInfo, snapshot_name
from eventapp.config import CheckpointingMode
from eventapp.deadletter import DeadLetter
from eventapp.errors import (
    ConfigurationError,
    EventAppError,
    ProducerFencedError,
    RecordProcessingError,
    RestoreError,
    SerializationError,
    SnapshotCorruptError,
    SourceError,
    SupersededError,
)
from eventapp.functions import TimeDomain
from eventapp.runtime.faults import fault_point
from eventapp.runtime.journal import JournaledStore
from eventapp.runtime.keyed_process import Emit, KeyedProcessOperator
from eventapp.sink import SinkContext, SinkWriter
from eventapp.source import CommittingSource, SourceReader, SourceRecord
from eventapp.state.scope import ExecutionScope
from eventapp.state.store import KeyedStateStore
from eventapp.stream import (
    FilterNode,
    FlatMapNode,
    Job,
    MapNode,
    Node,
    ProcessNode,
    SinkNode,
    SourceNode,
)
from eventapp.watermarks import MAX_WATERMARK, MIN_WATERMARK, SplitWatermark, combine

__all__ = ["JobResult", "LocalRunner"]

log = structlog.get_logger("eventapp.runtime")

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a finished (or stopped) run did."""

    records_read: int
    dead_letters: int
    checkpoints: int
    duration_s: float


class _Split:
    """Everything the runner holds for one split."""

    __slots__ = (
        "checkpoint_id",
        "commit_point",
        "dead_letter_writer",
        "id",
        "journal",
        "lineage",
        "lineages",
        "position",
        "raw_store",
        "store",
        "watermark",
        "writers",
    )

    def __init__(self, split_id: str, raw_store: KeyedStateStore, journal: bool) -> None:
        self.id = split_id
        self.raw_store = raw_store
        self.journal = JournaledStore(raw_store) if journal else None
        self.store: KeyedStateStore = self.journal if self.journal is not None else raw_store
        self.commit_point: CommitPoint | None = None
        self.writers: list[SinkWriter[Any]] = []
        self.dead_letter_writer: SinkWriter[Any] | None = None
        self.position: int | None = None
        self.watermark = SplitWatermark()
        self.checkpoint_id = 0
        #: This split's snapshot lineage (see eventapp.checkpoint.restore); pruning stays inside it.
        self.lineage = secrets.token_hex(6)
        #: Lineage of each snapshot name seen in storage (read once from its metadata).
        self.lineages: dict[str, str] = {}


def raise_most_telling(errors: Sequence[BaseException | None]) -> None:
    """Raise the error that decides what the worker does next, if any split failed: being superseded
    by a newer instance (step back), then being fenced (recover again), then the first other error.
    A fenced split's sibling may fail differently (a commit timing out on a fenced producer)."""
    failed = [e for e in errors if e is not None]
    for kind in (SupersededError, ProducerFencedError, BaseException):
        for error in failed:
            if isinstance(error, kind):
                raise error


class LocalRunner:
    """Executes a :class:`~eventapp.Job` over some (default: all) of its source's splits."""

    def __init__(
        self, job: Job, splits: Sequence[str] | None = None, restore: RestoreRequest | None = None
    ) -> None:
        if job.source_node is None:
            raise ConfigurationError(f"job {job.name!r} has no source; call job.from_source(...) first")
        self.job = job
        self.config = job.config
        self._source_node: SourceNode = job.source_node
        self._requested = None if splits is None else list(splits)
        self._restore = restore or RestoreRequest()
        self._execution = ExecutionScope(self.config.clock)
        self._operators: list[KeyedProcessOperator] = []
        self._splits: dict[str, _Split] = {}
        self._stores: dict[str, KeyedStateStore] = {}
        self._reader: SourceReader[Any] | None = None
        self._push: Emit | None = None
        self._buffer: list[tuple[SinkWriter[Any], Any, int | None]] | None = None
        self._dead_letter = self.config.error_policy.dead_letter_sink is not None
        self._incarnation = secrets.token_hex(4)
        self._log = log.bind(job=job.name)
        self._opened = False
        self._finished = False
        self._stop_requested = False
        self._stop_reason = ""
        self._records = 0
        self._dead_letters = 0
        self._checkpoints = 0
        self._last_checkpoint_ms = 0
        self._started = 0.0
        self._storage: CheckpointStorage | None = None
        self._checkpoint_pool: ThreadPoolExecutor | None = None
        self._strategy = self._source_node.watermarks
        self._bound = self._strategy.max_out_of_orderness_ms or 0

    # --- properties used by tests and tools ------------------------------------------------------------
    @property
    def splits(self) -> list[str]:
        return list(self._splits)

    @property
    def watermark(self) -> int:
        return self._execution.watermark

    @property
    def finished(self) -> bool:
        return self._finished

    def store(self, split: str) -> KeyedStateStore:
        return self._splits[split].raw_store

    def operator(self, uid: str) -> KeyedProcessOperator:
        for op in self._operators:
            if op.uid == uid:
                return op
        raise KeyError(uid)

    def committed_checkpoint_id(self, split: str) -> int:
        return self._splits[split].checkpoint_id

    # --- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        if self._opened:
            return
        self._started = time.monotonic()
        source = self._source_node.source
        checkpoint = self.config.checkpoint
        if checkpoint is not None and isinstance(source, CommittingSource):
            source.validate_checkpointing(
                checkpoint.interval_ms, checkpoint.mode is CheckpointingMode.EXACTLY_ONCE
            )
        available = list(source.splits())
        assigned = available if self._requested is None else self._requested
        unknown = [s for s in assigned if s not in available]
        if unknown:
            raise ConfigurationError(
                f"splits {unknown} are not splits of source {source.name!r} (it has {available})"
            )
        self._storage = checkpoint.resolved_storage() if checkpoint is not None else None
        now = self.config.clock.now_ms()
        self._last_checkpoint_ms = now
        start_positions: dict[str, int] = {}
        commit_points: dict[str, CommitPoint | None] = {}
        try:
            snapshots = self._committed_snapshots(assigned)
            explicit = self._explicit_snapshots(assigned)
            for split_id in assigned:
                commit_points[split_id] = self._commit_point(split_id)
            recovered = self._recover(commit_points, {s: bool(snapshots.get(s)) for s in assigned})
            lost = lost_state(snapshots, recovered, explicit)
            if lost:
                assert self._storage is not None
                refuse_or_archive(self.job.name, self._storage, lost, commit_points, self._restore, self._log)
            for split_id in assigned:
                sp = self._open_split(
                    split_id, now, commit_points.pop(split_id), recovered[split_id], explicit.get(split_id)
                )
                self._splits[split_id] = sp
                self._stores[split_id] = sp.store
                if sp.position is not None:
                    start_positions[split_id] = sp.position
            self._push = self._compile_root()
            for op in self._operators:
                op.open()
            self._reader = source.create_reader(assigned, start_positions)
            for split_id, position in self._reader.start_positions().items():
                if split_id not in self._splits:
                    raise SourceError(
                        f"source {source.name!r} reported a start position for split {split_id!r}, which "
                        f"this worker does not read (it reads {assigned}); the source's reader is wrong"
                    )
                sp = self._splits[split_id]
                if sp.position is None:
                    sp.position = position  # checkpointed even if the split reads nothing
        except BaseException:
            for unused in commit_points.values():
                if unused is not None:
                    unused.close()
            self._close_resources()
            raise
        self._opened = True
        self._log.info(
            "job.started",
            splits=assigned,
            backend=self.config.state_backend.name,
            checkpointing=None if checkpoint is None else checkpoint.mode.value,
            incarnation=self._incarnation,
        )

    def _commit_point(self, split_id: str) -> CommitPoint | None:
        checkpoint = self.config.checkpoint
        if checkpoint is None:
            return None
        source = self._source_node.source
        exactly_once = checkpoint.mode is CheckpointingMode.EXACTLY_ONCE
        if isinstance(source, CommittingSource):
            cp: CommitPoint = source.create_commit_point(self.job.name, split_id, exactly_once)
            return cp
        assert self._storage is not None
        split_dir = getattr(self._storage, "split_dir", None)
        if split_dir is None:
            raise ConfigurationError(
                f"source {source.name!r} keeps no committed positions and checkpoint storage "
                f"{self._storage!r} has no local directory for them; use LocalCheckpointStorage"
            )
        return FileCommitPoint(split_dir(self.job.name, split_id))

    def _committed_snapshots(self, splits: list[str]) -> dict[str, list[SnapshotInfo]]:
        """Per split, the snapshots in checkpoint storage that a commit completed."""
        storage = self._storage
        if storage is None:
            return {}
        return {s: [i for i in storage.list_snapshots(self.job.name, s) if i.committed] for s in splits}

    def _explicit_snapshots(self, splits: list[str]) -> dict[str, tuple[Path, dict[str, Any]]]:
        path = self._restore.from_checkpoint
        if path is None:
            return {}
        if self._storage is None:
            raise ConfigurationError("--from-checkpoint needs checkpointing (JobConfig(checkpoint=...))")
        found = explicit_snapshots(path, self.job.name, splits)
        if not found:
            raise RestoreError(
                f"--from-checkpoint {path} holds no snapshot of this worker's splits {splits}; point it "
                f"at a snapshot, split or job directory of job {self.job.name!r}"
            )
        return found

    @staticmethod
    def _recover(
        commit_points: dict[str, CommitPoint | None], has_snapshots: dict[str, bool]
    ) -> dict[str, CommittedCheckpoint | None]:
        """Recover every split's commit point (fence, read the committed checkpoint). Concurrently:
        each is a few broker round trips (``init_transactions`` can wait ~0.5 s for librdkafka's
        retry timer), and they are independent."""
        result: dict[str, CommittedCheckpoint | None] = {s: None for s in commit_points}
        todo = {s: cp for s, cp in commit_points.items() if cp is not None}
        if len(todo) <= 1:
            for split_id, cp in todo.items():
                result[split_id] = cp.recover(has_committed_snapshots=has_snapshots[split_id])
            return result
        with ThreadPoolExecutor(
            max_workers=min(len(todo), 16), thread_name_prefix="eventapp-recover"
        ) as pool:
            futures = {
                s: pool.submit(
                    contextvars.copy_context().run,
                    lambda cp=cp, s=s: cp.recover(has_committed_snapshots=has_snapshots[s]),
                )
                for s, cp in todo.items()
            }
            wait(futures.values())
        raise_most_telling([f.exception() for f in futures.values()])
        for split_id, future in futures.items():
            result[split_id] = future.result()
        return result

    def _open_split(
        self,
        split_id: str,
        now: int,
        commit_point: CommitPoint | None,
        committed: CommittedCheckpoint | None,
        explicit: tuple[Path, dict[str, Any]] | None,
    ) -> _Split:
        backend = self.config.state_backend
        if explicit is not None or (committed is not None and committed.snapshot):
            assert self._storage is not None
            if explicit is not None:
                path, meta = explicit
            else:
                assert committed is not None
                path, meta = self._storage.open(self.job.name, split_id, committed.snapshot)
            if meta.get("backend") != backend.name:
                raise RestoreError(
                    f"snapshot {path} of split {split_id!r} was written by the {meta.get('backend')!r} "
                    f"state backend but this job uses {backend.name!r}; run with the same backend, or "
                    f"move state with a savepoint"
                )
            if meta.get("format") != SNAPSHOT_FORMAT:
                raise SnapshotCorruptError(
                    f"snapshot {path} has format {meta.get('format')!r}, this eventapp reads "
                    f"{SNAPSHOT_FORMAT}; restore with the eventapp version that wrote it"
                )
            raw_store = backend.open(split_id, restore_from=path / "state")
            sp = _Split(split_id, raw_store, self._dead_letter)
            sp.watermark = SplitWatermark(int(meta["max_timestamp"]), now)
            if explicit is not None:
                # A new lineage from the user's snapshot (never pruned by it); checkpoint ids stay
                # monotonic for the commit point.
                snapshot_id = int(meta["checkpoint_id"])
                sp.checkpoint_id = max(snapshot_id, 0 if committed is None else committed.checkpoint_id)
                sp.position = None if meta.get("position") is None else int(meta["position"])
                self._log.warning(
                    "split.restored_explicitly",
                    split=split_id,
                    snapshot=str(path),
                    checkpoint_id=snapshot_id,
                    position=sp.position,
                    committed_checkpoint_id=None if committed is None else committed.checkpoint_id,
                    committed_position=None if committed is None else committed.position,
                )
            else:
                assert committed is not None
                sp.checkpoint_id = committed.checkpoint_id
                sp.position = committed.position
                sp.lineage = str(meta.get("lineage", LEGACY_LINEAGE))
                sp.lineages[committed.snapshot] = sp.lineage
                self._log.info(
                    "split.restored",
                    split=split_id,
                    checkpoint_id=committed.checkpoint_id,
                    snapshot=committed.snapshot,
                    position=committed.position,
                    lineage=sp.lineage,
                )
        else:
            sp = _Split(split_id, backend.open(split_id), self._dead_letter)
            sp.watermark = SplitWatermark(MIN_WATERMARK, now)
            if committed is not None:
                sp.position = committed.position
                sp.checkpoint_id = committed.checkpoint_id
                self._log.warning(
                    "split.position_without_snapshot",
                    split=split_id,
                    position=committed.position,
                    hint="committed position has no eventapp checkpoint; starting with empty state",
                )
        sp.commit_point = commit_point
        transaction = None if commit_point is None else commit_point.transaction
        ctx = SinkContext(job=self.job.name, split=split_id, transaction=transaction)
        sp.writers = [node.sink.create_writer(ctx) for node in self.job.sinks]
        dead_letter_sink = self.config.error_policy.dead_letter_sink
        if dead_letter_sink is not None:
            sp.dead_letter_writer = dead_letter_sink.create_writer(ctx)
        return sp

    def close(self) -> None:
        """Stop: close functions, writers, stores and the reader. Does not checkpoint."""
        if not self._opened:
            return
        self._opened = False
        for op in self._operators:
            op.close()
        self._close_resources()
        self._log.info(
            "job.stopped",
            records=self._records,
            checkpoints=self._checkpoints,
            dead_letters=self._dead_letters,
        )

    def _close_resources(self) -> None:
        if self._checkpoint_pool is not None:
            self._checkpoint_pool.shutdown(wait=True)
            self._checkpoint_pool = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        for sp in self._splits.values():
            for w in sp.writers:
                w.close()
            if sp.dead_letter_writer is not None:
                sp.dead_letter_writer.close()
            if sp.commit_point is not None:
                sp.commit_point.close()
            sp.raw_store.close()

    def result(self) -> JobResult:
        return JobResult(
            records_read=self._records,
            dead_letters=self._dead_letters,
            checkpoints=self._checkpoints,
            duration_s=time.monotonic() - self._started,
        )

    # --- driving -------------------------------------------------------------------------------------
    def request_stop(self, reason: str = "requested") -> None:
        """Ask :meth:`run` to stop after the current step, with a final checkpoint. Safe to call from
        a signal handler: it only sets attributes (``run`` logs ``job.stop_requested``)."""
        self._stop_reason = reason
        self._stop_requested = True

    def run(self, max_duration_s: float | None = None) -> JobResult:
        """Run until the source is finished, :meth:`request_stop` is called or ``max_duration_s``
        passed. A stopped (not finished) job takes a final checkpoint when checkpointing is on, so
        a redeploy resumes exactly there. Then close."""
        self.open()
        deadline = None if max_duration_s is None else time.monotonic() + max_duration_s
        try:
            while not self._finished and not self._stop_requested:
                self.step()
                if deadline is not None and time.monotonic() >= deadline:
                    break
            if self._stop_requested:
                self._log.info("job.stop_requested", reason=self._stop_reason)
            if not self._finished:
                if self.config.checkpoint is not None:
                    self.checkpoint()
                else:
                    self._flush_writers()
        except EventAppError as exc:
            self._log.error("job.failed", error=str(exc), error_type=type(exc).__name__)
            raise
        finally:
            self.close()
        return self.result()

    def step(self) -> int:
        """One poll of the source plus watermark, timer and checkpoint work. Returns the number of
        records and timers handled."""
        if not self._opened:
            self.open()
        if self._finished:
            return 0
        reader = self._reader
        assert reader is not None
        records = reader.poll(self.config.max_batch_records, self.config.poll_timeout_s)
        for record in records:
            self._process_record(record)
        now = self.config.clock.now_ms()
        handled = len(records)
        if records and self._strategy.idleness_ms is not None:
            for split_id in {r.split for r in records}:
                self._splits[split_id].watermark.last_active_ms = now
        handled += self._advance_watermark(now)
        handled += self._fire(TimeDomain.PROCESSING_TIME, now)
        self._cleanup_ttl()
        checkpoint = self.config.checkpoint
        if checkpoint is not None and now - self._last_checkpoint_ms >= checkpoint.interval_ms:
            self.checkpoint()
        if reader.is_finished() and not records:
            self._finish()
        return handled

    def run_until_idle(self) -> int:
        """Step until a step handles nothing. Returns the total handled."""
        total = 0
        while True:
            n = self.step()
            total += n
            if n == 0:
                return total

    def _finish(self) -> None:
        """End of a bounded input: the watermark goes to +inf (every event-time timer fires), then a
        final checkpoint is taken if checkpointing is on. Processing-time timers do not fire."""
        self._set_watermark(MAX_WATERMARK)
        if self.config.checkpoint is not None:
            self.checkpoint()
        else:
            self._flush_writers()
        self._finished = True
        self._log.info("job.finished", records=self._records)

    def _flush_writers(self) -> None:
        for sp in self._splits.values():
            for w in sp.writers:
                w.flush()
            if sp.dead_letter_writer is not None:
                sp.dead_letter_writer.flush()

    # --- records -------------------------------------------------------------------------------------
    def _process_record(self, record: SourceRecord[Any]) -> None:
        sp = self._splits[record.split]
        ex = self._execution
        ex.store = sp.store
        ex.split = sp.id
        ex.position = record.position
        self._records += 1
        if record.error is not None:
            self._handle_source_failure(sp, record, record.error)
        else:
            ts = record.timestamp
            assigner = self._strategy.timestamp_assigner
            if assigner is not None:
                try:
                    ts = assigner(record.value, ts)
                    if not isinstance(ts, int) or isinstance(ts, bool):
                        raise SerializationError(
                            f"the timestamp assigner returned {ts!r} ({type(ts).__name__}); it must "
                            f"return epoch milliseconds as an int"
                        )
                except Exception as exc:  # noqa: BLE001 - raised or dead-lettered by the policy
                    operator = f"timestamp assigner of source {self._source_node.name}"
                    self._handle_source_failure(sp, record, exc, operator)
                    self._advance_position(sp, record)
                    return
            if ts is not None and ts > sp.watermark.max_timestamp:
                sp.watermark.max_timestamp = ts
            push = self._push
            assert push is not None
            if self._dead_letter:
                self._guarded(sp, lambda: push(record.value, ts), ts, None)
            else:
                push(record.value, ts)
        self._advance_position(sp, record)
        fault_point("record.after_process")

    @staticmethod
    def _advance_position(sp: _Split, record: SourceRecord[Any]) -> None:
        if record.position is not None:
            sp.position = record.position + 1

    def _handle_source_failure(
        self, sp: _Split, record: SourceRecord[Any], cause: BaseException, operator: str | None = None
    ) -> None:
        """``operator`` names what failed (default: the source, which could not decode the record)."""
        err = RecordProcessingError(
            operator=operator or self._source_node.name,
            key=None,
            record=record.raw if record.error is not None else record.value,
            split=record.split,
            position=record.position,
            cause=cause,
        )
        if not self._dead_letter:
            raise err from cause
        self._write_dead_letter(sp, err, record.timestamp)

    def _guarded(
        self, sp: _Split, action: Callable[[], None], ts: int | None, consumed_timer: bytes | None
    ) -> None:
        """Run ``action`` so that on failure its state writes and outputs are undone and a dead
        letter is written instead."""
        journal = sp.journal
        assert journal is not None
        buffer: list[tuple[SinkWriter[Any], Any, int | None]] = []
        self._buffer = buffer
        try:
            action()
        except RecordProcessingError as err:
            self._buffer = None
            journal.rollback()
            if consumed_timer is not None:
                journal.inner.delete(consumed_timer)
            self._write_dead_letter(sp, err, ts)
            return
        finally:
            self._buffer = None
        journal.commit()
        for writer, value, out_ts in buffer:
            writer.write(value, out_ts)

    def _write_dead_letter(self, sp: _Split, err: RecordProcessingError, ts: int | None) -> None:
        writer = sp.dead_letter_writer
        assert writer is not None
        writer.write(DeadLetter.from_error(err, ts), ts)
        self._dead_letters += 1
        self._log.warning(
            "record.dead_lettered",
            operator=err.operator,
            split=err.split,
            position=err.position,
            error=f"{type(err.cause).__name__}: {err.cause}",
        )

    # --- watermarks and timers -----------------------------------------------------------------------
    def _advance_watermark(self, now: int) -> int:
        if not self._strategy.emits_watermarks or not self._splits:
            return 0
        splits = (sp.watermark for sp in self._splits.values())
        combined = combine(splits, self._bound, self._strategy.idleness_ms, now)
        if combined is not None and combined > self._execution.watermark:
            return self._set_watermark(combined)
        return 0

    def _set_watermark(self, watermark: int) -> int:
        self._execution.watermark = watermark
        return self._fire(TimeDomain.EVENT_TIME, watermark)

    def _fire(self, domain: TimeDomain, limit: int) -> int:
        fired = 0
        guard = self._timer_guard if self._dead_letter else None
        for op in self._operators:
            fired += op.fire_timers(domain, limit, self._stores, guard)
        return fired

    def _timer_guard(self, action: Callable[[], None], split: str, consumed_timer: bytes) -> None:
        sp = self._splits[split]
        self._guarded(sp, action, self._execution.timestamp, consumed_timer)

    def _cleanup_ttl(self) -> None:
        for op in self._operators:
            if not op.states.ttl_states():
                continue
            for sp in self._splits.values():
                self._execution.store = sp.raw_store
                self._execution.split = sp.id
                op.cleanup_expired_state(sp.id, sp.raw_store)

    # --- checkpoints ---------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Checkpoint every split: flush, snapshot, commit, prune."""
        checkpoint = self.config.checkpoint
        if checkpoint is None:
            raise ConfigurationError("checkpoint() needs JobConfig(checkpoint=CheckpointConfig(...))")
        started = time.perf_counter()
        # The interval runs from the start of one checkpoint to the start of the next (as in Flink),
        # so the pause does not stretch the period.
        self._last_checkpoint_ms = self.config.clock.now_ms()
        splits = list(self._splits.values())
        if len(splits) <= 1:
            for sp in splits:
                self._checkpoint_split(sp, checkpoint.retained)
        else:
            self._checkpoint_concurrently(splits, checkpoint.retained)
        self._checkpoints += 1
        self._log.info(
            "checkpoint.completed",
            splits=len(self._splits),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def _checkpoint_concurrently(self, splits: list[_Split], retained: int) -> None:
        """Splits are independent (own store, writers, transaction, snapshot directory), and their
        checkpoints wait mostly on I/O that releases the GIL (broker round trips, fsync), so they
        run in parallel. Every split finishes (or fails) before this returns; the first error is
        raised."""
        if self._checkpoint_pool is None:
            self._checkpoint_pool = ThreadPoolExecutor(
                max_workers=min(len(splits), 16), thread_name_prefix=f"eventapp-checkpoint-{self.job.name}"
            )
        # Each task runs in a copy of this thread's context, so its log lines keep the bound
        # context (subtask, parallelism).
        futures = [
            self._checkpoint_pool.submit(contextvars.copy_context().run, self._checkpoint_split, sp, retained)
            for sp in splits
        ]
        wait(futures)
        raise_most_telling([f.exception() for f in futures])

    def _checkpoint_split(self, sp: _Split, retained: int) -> None:
        storage = self._storage
        assert storage is not None and sp.commit_point is not None
        fault_point("checkpoint.before_flush")
        for w in sp.writers:
            w.flush()
        if sp.dead_letter_writer is not None:
            sp.dead_letter_writer.flush()
        fault_point("checkpoint.after_flush")
        checkpoint_id = sp.checkpoint_id + 1
        name = snapshot_name(checkpoint_id, self._incarnation)
        directory = storage.begin(self.job.name, sp.id, name)
        state_dir = directory / "state"
        state_dir.mkdir()
        sp.raw_store.snapshot(state_dir)
        fault_point("checkpoint.after_state_snapshot")
        storage.complete(
            self.job.name,
            sp.id,
            name,
            {
                "format": SNAPSHOT_FORMAT,
                "snapshot": name,
                "job": self.job.name,
                "split": sp.id,
                "checkpoint_id": checkpoint_id,
                "position": sp.position,
                "max_timestamp": sp.watermark.max_timestamp,
                "backend": self.config.state_backend.name,
                "lineage": sp.lineage,
                "operators": [op.uid for op in self._operators],
                "created_ms": int(time.time() * 1000),
            },
        )
        fault_point("checkpoint.after_snapshot_complete")
        fault_point("checkpoint.before_commit")
        sp.commit_point.commit(CommittedCheckpoint(checkpoint_id, name, sp.position))
        storage.mark_committed(self.job.name, sp.id, name)
        sp.lineages[name] = sp.lineage
        fault_point("checkpoint.after_commit")
        sp.checkpoint_id = checkpoint_id
        self._log.debug(
            "checkpoint.split_committed",
            split=sp.id,
            checkpoint_id=checkpoint_id,
            snapshot=name,
            position=sp.position,
        )
        for info in storage.list_snapshots(self.job.name, sp.id):
            if info.checkpoint_id <= checkpoint_id - retained and self._lineage(sp, info.name) == sp.lineage:
                storage.delete(self.job.name, sp.id, info.name)
                sp.lineages.pop(info.name, None)
        fault_point("checkpoint.after_prune")

    def _lineage(self, sp: _Split, name: str) -> str | None:
        """The lineage of snapshot ``name`` (from its metadata, read once); ``None`` if unreadable,
        which keeps it from being pruned."""
        lineage = sp.lineages.get(name)
        if lineage is None:
            assert self._storage is not None
            try:
                _path, meta = self._storage.open(self.job.name, sp.id, name)
            except RestoreError:
                return None
            lineage = sp.lineages[name] = str(meta.get("lineage", LEGACY_LINEAGE))
        return lineage

    # --- the operator chain --------------------------------------------------------------------------
    def _compile_root(self) -> Emit:
        return self._fanout([self._compile(c) for c in self._source_node.children])

    @staticmethod
    def _fanout(emits: list[Emit]) -> Emit:
        if not emits:
            return lambda value, ts: None
        if len(emits) == 1:
            return emits[0]

        def fan(value: Any, ts: int | None) -> None:
            for emit in emits:
                emit(value, ts)

        return fan

    def _wrap_error(self, name: str, value: Any, exc: Exception) -> RecordProcessingError:
        ex = self._execution
        return RecordProcessingError(
            operator=name, key=None, record=value, split=ex.split, position=ex.position, cause=exc
        )

    def _compile(self, node: Node) -> Emit:
        # Operators are listed upstream first (timers fire in that order), so remember the slot
        # before compiling the children.
        slot = len(self._operators)
        emit = self._fanout([self._compile(c) for c in node.children])
        name = node.name
        if isinstance(node, MapNode):
            fn = node.fn
            assert fn is not None

            def map_push(value: Any, ts: int | None) -> None:
                try:
                    out = fn(value)
                except Exception as exc:
                    raise self._wrap_error(name, value, exc) from exc
                emit(out, ts)

            return map_push
        if isinstance(node, FilterNode):
            pred = node.fn
            assert pred is not None

            def filter_push(value: Any, ts: int | None) -> None:
                try:
                    keep = pred(value)
                except Exception as exc:
                    raise self._wrap_error(name, value, exc) from exc
                if keep:
                    emit(value, ts)

            return filter_push
        if isinstance(node, FlatMapNode):
            many = node.fn
            assert many is not None

            def flat_map_push(value: Any, ts: int | None) -> None:
                try:
                    outs = list(many(value))
                except Exception as exc:
                    raise self._wrap_error(name, value, exc) from exc
                for out in outs:
                    emit(out, ts)

            return flat_map_push
        if isinstance(node, ProcessNode):
            assert node.fn is not None and node.key_selector is not None
            side = {tag: self._compile(side_node) for tag, side_node in node.side_outputs.items()}
            op = KeyedProcessOperator(
                job_name=self.job.name,
                uid=node.uid,
                function=node.fn,
                key_selector=node.key_selector,
                execution=self._execution,
                emit=emit,
                side_outputs=side,
            )
            self._operators.insert(slot, op)
            return op.process
        if isinstance(node, SinkNode):
            index = node.index
            splits = self._splits
            ex = self._execution

            def sink_push(value: Any, ts: int | None) -> None:
                split = ex.split
                assert split is not None
                writer = splits[split].writers[index]
                if self._buffer is not None:
                    self._buffer.append((writer, value, ts))
                else:
                    writer.write(value, ts)

            return sink_push
        return emit
