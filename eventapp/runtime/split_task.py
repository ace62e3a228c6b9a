"""The split task: everything one split owns while a worker runs it (Flink's ``StreamTask`` per
split, Quix's per-partition transaction).

A split task holds the split's state store, its position, its watermark generator, its sink
writers and the transaction they write into (from the split's commit point). It walks each record
of the split through the operator chain, and it is the unit that is checkpointed, committed and
restored (see :mod:`eventapp.runtime.checkpointer`). Operators reach it through the records they
process (:class:`~eventapp.runtime.record.SplitContext`).

With the dead-letter error policy, a record (or timer) is processed as a unit: its state writes go
through a journal and its outputs are held, and both are applied only when the record succeeded.
A failed record's writes are simply not applied; a dead letter is written instead.

While an asynchronous checkpoint of the split completes in the background
(:mod:`eventapp.runtime.checkpoint_coordinator`), the split goes on processing, but its outputs
(dead letters too) are held by :meth:`SplitTask.hold_outputs` and written once that checkpoint
committed (:meth:`SplitTask.release_outputs`): they belong to the next checkpoint, and the writers
and their transaction are the checkpoint's until it committed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from eventapp.checkpoint.commit import CommitPoint
from eventapp.deadletter import DeadLetter
from eventapp.errors import RecordProcessingError, SerializationError
from eventapp.runtime.faults import FAULTS_PLANNED, fault_point
from eventapp.runtime.journal import JournaledStore
from eventapp.runtime.operators import Operator
from eventapp.runtime.record import StreamRecord
from eventapp.runtime.two_phase import TwoPhaseWriters
from eventapp.sink import SinkWriter
from eventapp.source import SourceRecord
from eventapp.state.keys import MIN_TIMESTAMP
from eventapp.state.store import KeyedStateStore
from eventapp.watermarks import SplitWatermark, TimestampAssigner

__all__ = ["SplitTask"]

log = structlog.get_logger("eventapp.runtime")


class SplitTask:
    """One split of a running job (implements :class:`~eventapp.runtime.record.SplitContext`)."""

    def __init__(
        self,
        split_id: str,
        raw_store: KeyedStateStore,
        *,
        dead_letters: bool,
        checkpoint_id: int = 0,
        position: int | None = None,
        max_timestamp: int = MIN_TIMESTAMP,
        lineage: str | None = None,
        savepoint: str | None = None,
        schemas: Mapping[str, Mapping[str, Any]] | None = None,
        now_ms: int = 0,
    ) -> None:
        self.id = split_id
        #: The backend's store (snapshotted); ``store`` is what operators write through.
        self.raw_store = raw_store
        self._journal = JournaledStore(raw_store) if dead_letters else None
        self.store: KeyedStateStore = self._journal if self._journal is not None else raw_store
        #: The next record to read (``None``: the split has not been read and has no start yet).
        self.position = position
        self.watermark = SplitWatermark(max_timestamp, now_ms)
        #: Id of the split's last committed checkpoint (0: none).
        self.checkpoint_id = checkpoint_id
        #: This split's snapshot lineage (see eventapp.checkpoint.restore); pruning stays inside it.
        self.lineage = lineage or secrets.token_hex(6)
        #: The savepoint this split's lineage started from (written into its snapshots).
        self.savepoint = savepoint
        #: Per operator uid, per state name: the schema of what the store holds (restored with it,
        #: updated when an operator registers the state, written into every snapshot).
        self.schemas: dict[str, dict[str, Any]] = {
            uid: dict(states) for uid, states in (schemas or {}).items()
        }
        #: Lineage of each snapshot name seen in storage (read once from its metadata).
        self.lineages: dict[str, str] = {}
        self.commit_point: CommitPoint | None = None
        self.writers: list[SinkWriter[Any]] = []
        self.dead_letter_writer: SinkWriter[Any] | None = None
        #: The writers that apply their writes after each checkpoint (eventapp.runtime.two_phase).
        self.two_phase: TwoPhaseWriters | None = None
        #: The snapshot directory the split was restored from (its prepared writes are committed again).
        self.restored_from: Path | None = None
        #: See SplitContext.direct_writers: never with the dead-letter policy (outputs are held).
        self.direct_writers: list[Callable[[Any, int | None], None]] | None = None
        self.head: Operator | None = None
        self.records = 0
        self.dead_letters = 0
        #: Bytes of the split's last checkpoint's state snapshot (0: none in this run yet).
        self.state_bytes = 0
        self._held: list[tuple[int, Any, int | None]] | None = None
        #: Outputs held while an asynchronous checkpoint completes: (writer, value, timestamp).
        self._checkpoint_held: list[tuple[SinkWriter[Any], Any, int | None]] | None = None
        self._record = StreamRecord(None, None, self)

    def __repr__(self) -> str:
        return f"SplitTask({self.id!r}, position={self.position}, checkpoint_id={self.checkpoint_id})"

    def attach(
        self, head: Operator, writers: list[SinkWriter[Any]], dead_letter_writer: SinkWriter[Any] | None
    ) -> None:
        """Give the split the chain head its records enter, and its sink writers."""
        self.head = head
        self.writers = writers
        self.dead_letter_writer = dead_letter_writer
        self.direct_writers = None if self._journal is not None else [w.write for w in writers]

    # --- what operators use (SplitContext) ---------------------------------------------------------
    def write(self, sink: int, value: Any, timestamp: int | None) -> None:
        held = self._held
        if held is not None:
            held.append((sink, value, timestamp))
        else:
            self._emit(self.writers[sink], value, timestamp)

    def _emit(self, writer: SinkWriter[Any], value: Any, timestamp: int | None) -> None:
        held = self._checkpoint_held
        if held is not None:
            held.append((writer, value, timestamp))
        else:
            writer.write(value, timestamp)

    def fire_timer(self, action: Callable[[], None], timestamp: int, timer_key: bytes) -> None:
        if self._journal is None:
            action()
        else:
            self._as_unit(action, timestamp, timer_key)

    # --- records -----------------------------------------------------------------------------------
    def process(
        self, record: SourceRecord[Any], assigner: TimestampAssigner[Any] | None, source: str
    ) -> None:
        """Walk one source record through the chain, then move the split's position past it."""
        self.process_many((record,), assigner, source)

    def process_many(
        self, records: Sequence[SourceRecord[Any]], assigner: TimestampAssigner[Any] | None, source: str
    ) -> None:
        """:meth:`process` each of ``records`` (all of this split) in order: the per-record loop,
        with what every record needs looked up once."""
        head = self.head
        assert head is not None
        element = self._record
        watermark = self.watermark
        journal = self._journal
        for record in records:
            self.records += 1
            if record.error is not None:
                self._source_failure(record, record.error, source)
                self._advance(record)
                continue
            ts = record.timestamp
            if assigner is not None:
                try:
                    ts = assigner(record.value, ts)
                    if not isinstance(ts, int) or isinstance(ts, bool):
                        raise SerializationError(
                            f"the timestamp assigner returned {ts!r} ({type(ts).__name__}); it must "
                            f"return epoch milliseconds as an int"
                        )
                except Exception as exc:  # noqa: BLE001 - raised or dead-lettered by the policy
                    self._source_failure(record, exc, f"timestamp assigner of source {source}")
                    self._advance(record)
                    continue
            if ts is not None and ts > watermark.max_timestamp:
                watermark.max_timestamp = ts
            element.value = record.value
            element.timestamp = ts
            position = element.position = record.position
            if journal is None:
                head.process(element)
            else:
                self._as_unit(lambda: head.process(element), ts, None)
            if position is not None:
                self.position = position + 1
            if FAULTS_PLANNED:
                fault_point("record.after_process")

    def _advance(self, record: SourceRecord[Any]) -> None:
        if record.position is not None:
            self.position = record.position + 1

    def _source_failure(self, record: SourceRecord[Any], cause: BaseException, operator: str) -> None:
        err = RecordProcessingError(
            operator=operator,
            key=None,
            record=record.raw if record.error is not None else record.value,
            split=record.split,
            position=record.position,
            cause=cause,
        )
        if self._journal is None:
            raise err from cause
        self._dead_letter(err, record.timestamp)

    def _as_unit(self, action: Callable[[], None], ts: int | None, consumed_timer: bytes | None) -> None:
        """Run ``action``; apply its state writes and outputs only if it succeeds, else write a
        dead letter (a failed timer stays consumed)."""
        journal = self._journal
        assert journal is not None
        held: list[tuple[int, Any, int | None]] = []
        self._held = held
        try:
            action()
        except RecordProcessingError as err:
            journal.rollback()
            if consumed_timer is not None:
                journal.inner.delete(consumed_timer)
            self._held = None
            self._dead_letter(err, ts)
            return
        finally:
            self._held = None
        journal.commit()
        writers = self.writers
        for sink, value, out_ts in held:
            self._emit(writers[sink], value, out_ts)

    def _dead_letter(self, err: RecordProcessingError, ts: int | None) -> None:
        writer = self.dead_letter_writer
        assert writer is not None
        self._emit(writer, DeadLetter.from_error(err, ts), ts)
        self.dead_letters += 1
        log.warning(
            "record.dead_lettered",
            operator=err.operator,
            split=err.split,
            position=err.position,
            error=f"{type(err.cause).__name__}: {err.cause}",
        )

    # --- output and lifecycle ----------------------------------------------------------------------
    def hold_outputs(self) -> None:
        """Hold every output from now on (an asynchronous checkpoint of the split began)."""
        assert self._checkpoint_held is None, "outputs are held already"
        self._checkpoint_held = []
        self.direct_writers = None

    @property
    def holding_outputs(self) -> int | None:
        """How many outputs are held (``None``: outputs are not held)."""
        held = self._checkpoint_held
        return None if held is None else len(held)

    def release_outputs(self, *, write: bool = True) -> int:
        """Stop holding outputs; write the held ones in order (unless ``write`` is false: the
        checkpoint failed and the split restarts from the committed one, which they are not part
        of). Returns how many were held."""
        held, self._checkpoint_held = self._checkpoint_held, None
        if self._journal is None:
            self.direct_writers = [w.write for w in self.writers]
        if not held:
            return 0
        if write:
            for writer, value, timestamp in held:
                writer.write(value, timestamp)
        return len(held)

    def flush_writers(self) -> None:
        """Flush the writers. A checkpoint flushes them in its own thread; the split's thread
        meanwhile waits, or holds its outputs (an asynchronous checkpoint)."""
        for writer in self.writers:
            writer.flush()
        if self.dead_letter_writer is not None:
            self.dead_letter_writer.flush()

    def close(self) -> None:
        """Close writers, the commit point (aborting its open transaction) and the store."""
        for writer in self.writers:
            writer.close()
        if self.dead_letter_writer is not None:
            self.dead_letter_writer.close()
        if self.commit_point is not None:
            self.commit_point.close()
        self.raw_store.close()
