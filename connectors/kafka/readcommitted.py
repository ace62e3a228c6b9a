"""The ``read_committed`` rules, applied to the record batches of a partition read with
``isolation_level=READ_UNCOMMITTED``: which records are committed, aborted, still pending or fenced.

read_committed rules applied (per partition, per producer id)
-------------------------------------------------------------
* records of non-transactional batches are committed immediately;
* records of transactional batches are held per ``producerId`` until that producer's next control
  marker: COMMIT makes them visible, ABORT drops them (counted as aborted);
* records with no marker yet belong to an OPEN transaction: reported as ``pending``, never as committed;
* a transaction belongs to one producer *epoch*: when a transactional data batch of a producer id
  arrives with a higher epoch than the records held for that id, the held records belonged to a
  transaction that was fenced (``InitProducerId`` bumped the epoch) and are reported as ``fenced``;
  a transactional data batch with a lower epoch than one already seen for its producer id is a write
  of a fenced producer and is reported as ``fenced`` at once. Apache Kafka never appends either
  (it aborts the open transaction on ``InitProducerId`` and rejects the old epoch with
  ``PRODUCER_FENCED``). Tansu 0.6.0 does, in a race: a produce request of the fenced producer that is
  in flight while the new owner's ``InitProducerId`` writes the abort markers is appended *after*
  the abort marker, with the old epoch, and the new owner's next COMMIT marker for the same producer
  id would otherwise "commit" it. Control markers are not epoch-checked (with transactions v2,
  KIP-890, the marker carries the bumped epoch);
* committed records are returned in offset order (a transaction's records keep their offsets).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from .protocol import KafkaProtocolError
from .recordbatch import CONTROL_ABORT, CONTROL_COMMIT, RecordBatch

__all__ = [
    "AuditRecord",
    "AuditResult",
    "OpenTransactions",
    "PartitionAudit",
    "apply_batch",
    "classify_batches",
    "finish_partition",
]


@dataclass(frozen=True)
class AuditRecord:
    """A data record as the audit reader saw it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...]
    producer_id: int
    transactional: bool
    producer_epoch: int = -1


@dataclass
class PartitionAudit:
    """What one partition holds under read_committed rules."""

    partition: int
    committed: list[AuditRecord] = field(default_factory=list)
    aborted: list[AuditRecord] = field(default_factory=list)
    pending: list[AuditRecord] = field(default_factory=list)
    #: Transactional records of a fenced producer epoch that the broker appended anyway (never
    #: committed; see the module docstring). Always empty on Apache Kafka.
    fenced: list[AuditRecord] = field(default_factory=list)
    commit_markers: int = 0
    abort_markers: int = 0
    batches: int = 0
    control_batches: int = 0
    end_offset: int = 0  # the offset after the last batch read
    high_watermark: int = -1  # as reported by the final (empty) fetch

    @property
    def aborted_count(self) -> int:
        return len(self.aborted)

    @property
    def pending_count(self) -> int:
        return len(self.pending)

    @property
    def fenced_count(self) -> int:
        return len(self.fenced)

    @property
    def last_stable_offset(self) -> int:
        """First offset of the earliest open transaction (or ``end_offset``): Kafka's LSO.

        A ``read_committed`` consumer on Apache Kafka stops here, so committed records at or above it
        (non-transactional ones written after an open transaction began) are not visible to it *yet*.
        """
        return min((r.offset for r in self.pending), default=self.end_offset)


@dataclass
class AuditResult:
    """The audit of a whole topic."""

    topic: str
    partitions: dict[int, PartitionAudit]
    elapsed_seconds: float = 0.0

    @property
    def committed(self) -> list[AuditRecord]:
        """All committed records, ordered by (partition, offset)."""
        return [r for p in sorted(self.partitions) for r in self.partitions[p].committed]

    @property
    def aborted_count(self) -> int:
        return sum(p.aborted_count for p in self.partitions.values())

    @property
    def pending_count(self) -> int:
        return sum(p.pending_count for p in self.partitions.values())

    @property
    def fenced_count(self) -> int:
        return sum(p.fenced_count for p in self.partitions.values())

    def committed_values(self, partition: int | None = None) -> list[bytes | None]:
        """Values of committed records of one partition (or all, by partition then offset)."""
        records = self.committed if partition is None else self.partitions[partition].committed
        return [r.value for r in records]

    def summary(self) -> str:
        parts = [
            f"p{p.partition}: {len(p.committed)} committed, {p.aborted_count} aborted, {p.pending_count} "
            f"pending, {p.fenced_count} fenced, {p.commit_markers} commits/{p.abort_markers} aborts, "
            f"end {p.end_offset}, hw {p.high_watermark}"
            for p in (self.partitions[i] for i in sorted(self.partitions))
        ]
        return f"audit of {self.topic!r} in {self.elapsed_seconds:.3f}s: " + "; ".join(parts)


@dataclass
class OpenTransactions:
    """Per producer id: the records of its open transaction, their epoch, the highest epoch seen."""

    held: dict[int, list[AuditRecord]] = field(default_factory=dict)
    held_epoch: dict[int, int] = field(default_factory=dict)
    latest_epoch: dict[int, int] = field(default_factory=dict)

    def pending(self) -> list[AuditRecord]:
        return [r for records in self.held.values() for r in records]


def apply_batch(
    state: PartitionAudit,
    open_transactions: OpenTransactions,
    batch: RecordBatch,
    topic: str,
    start: int,
    keys: Collection[bytes] | None = None,
    check_crc: bool = False,
) -> None:
    """Apply one batch to the partition state (read_committed rules, see module docstring).

    With ``keys``, only records with one of those keys are kept. With ``check_crc``, a batch that
    holds kept records is CRC-checked here (it was parsed without verification).
    """
    state.batches += 1
    pid = batch.producer_id
    if batch.is_control:
        state.control_batches += 1
        for control_type in batch.control_types():
            held = open_transactions.held.pop(pid, [])
            open_transactions.held_epoch.pop(pid, None)
            if control_type == CONTROL_COMMIT:
                state.commit_markers += 1
                state.committed.extend(held)
            elif control_type == CONTROL_ABORT:
                state.abort_markers += 1
                state.aborted.extend(held)
            else:
                # Unknown control type (KRaft uses others in its metadata log, never in data topics).
                raise KafkaProtocolError(
                    f"{topic}[{state.partition}] offset {batch.base_offset}: "
                    f"unknown control type {control_type}"
                )
        return
    records = [
        AuditRecord(
            topic=topic,
            partition=state.partition,
            offset=raw.offset,
            key=raw.key,
            value=raw.value,
            timestamp=raw.timestamp,
            headers=raw.headers,
            producer_id=pid,
            transactional=batch.is_transactional,
            producer_epoch=batch.producer_epoch,
        )
        for raw in batch.records
        if raw.offset >= start  # a broker may return a batch that starts before the fetch offset
        and (keys is None or raw.key in keys)
    ]
    if check_crc and records and not batch.crc_matches():
        raise KafkaProtocolError(f"CRC-32C mismatch in batch at offset {batch.base_offset} of {topic}")
    if not batch.is_transactional:
        state.committed.extend(records)
        return
    if pid < 0:
        raise KafkaProtocolError(f"transactional batch at offset {batch.base_offset} has no producer id")
    epoch = batch.producer_epoch
    latest = open_transactions.latest_epoch.get(pid)
    if latest is not None and epoch < latest:
        state.fenced.extend(records)  # a write of a fenced epoch, appended anyway
        return
    open_transactions.latest_epoch[pid] = epoch
    held_epoch = open_transactions.held_epoch.get(pid)
    if held_epoch is not None and held_epoch < epoch:
        # The held transaction's epoch was fenced without a marker after its records.
        state.fenced.extend(open_transactions.held.pop(pid))
    open_transactions.held.setdefault(pid, []).extend(records)
    open_transactions.held_epoch[pid] = epoch


def classify_batches(
    topic: str,
    partition: int,
    batches: Iterable[RecordBatch],
    *,
    keys: Collection[bytes] | None = None,
    check_crc: bool = False,
) -> PartitionAudit:
    """Apply the read_committed rules (module docstring) to parsed batches of one partition, in order.

    ``keys`` and ``check_crc`` as in :func:`~eventapp.connectors.kafka.txnlog.audit_topic` with a key
    filter: keep only records with these keys; CRC-check (only) the batches holding kept records.
    """
    state = PartitionAudit(partition)
    open_transactions = OpenTransactions()
    for batch in batches:
        apply_batch(state, open_transactions, batch, topic, 0, keys, check_crc)
    finish_partition(state, open_transactions)
    return state


def finish_partition(state: PartitionAudit, open_transactions: OpenTransactions) -> None:
    """What is still held is pending; every list in offset order."""
    state.pending.extend(open_transactions.pending())
    for records in (state.committed, state.aborted, state.pending, state.fenced):
        records.sort(key=lambda r: r.offset)
