"""A reader that applies ``read_committed`` itself: the workaround of the ``aborted-records-visible``
broker quirk (:mod:`eventapp.connectors.kafka.quirks`; Tansu 0.6.0).

It fetches each assigned partition ``read_uncommitted`` over the Kafka protocol
(:mod:`eventapp.connectors.kafka.wireclient`) and applies the control markers and producer epochs
with the audit reader's rules (:mod:`eventapp.connectors.kafka.readcommitted`): records of aborted
transactions and late writes of fenced producers are dropped; committed records are handed out in
offset order, and only below the partition's last stable offset (the first record of a transaction
still open), as Apache Kafka's ``read_committed`` does, so a checkpointed position never passes a
transaction that may still commit. Batch CRCs are not checked (librdkafka's ``check.crcs``
default; the pure-Python CRC-32C took a fifth of the shuffle's time), unlike the audit reader's.
A fetch answered from a later offset than asked is not applied but fetched again: Tansu 0.6.0
under load sometimes answers a fetch with a batch past the requested offset (measured: asked 85,
answered from 128), which would skip the records between.

Only Kafka sources that read eventapp's own transactional output use it (the repartition topics of
``key_by`` shuffles), and only with the quirk: on Apache Kafka librdkafka's ``read_committed``
consumer reads them (:mod:`eventapp.connectors.kafka.reader`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import structlog

from eventapp.errors import SourceError
from eventapp.source import SourceRecord

from .config import KafkaSourceConfig, parse_split
from .protocol import (
    NO_ENTRY,
    NO_ERROR,
    OFFSET_OUT_OF_RANGE,
    RETRIABLE_ERRORS,
    AuditError,
    KafkaProtocolError,
)
from .readcommitted import AuditRecord, OpenTransactions, PartitionAudit, apply_batch
from .recordbatch import parse_record_batches
from .wireclient import Client

__all__ = ["MarkerHonouringReader"]

log = structlog.get_logger(__name__)

_FETCH_BYTES = 1 << 20
_FETCH_WAIT_MS = 20
#: Fetches in a row answered from later offsets before the reader gives up.
_MAX_GAPS = 200


class _Partition:
    def __init__(self, split: str, partition: int, offset: int) -> None:
        self.split = split
        self.partition = partition
        #: The next offset to fetch.
        self.offset = offset
        self.audit = PartitionAudit(partition)
        self.open = OpenTransactions()
        #: Committed records below the last stable offset, in offset order, not handed out yet.
        self.ready: list[AuditRecord] = []
        #: Fetches in a row answered from a later offset than asked (see MarkerHonouringReader._gap).
        self.gaps = 0

    def release(self) -> None:
        """Move committed records below the last stable offset to :attr:`ready`; forget the
        aborted and fenced ones."""
        audit = self.audit
        audit.aborted.clear()
        audit.fenced.clear()
        if not audit.committed:
            return
        pending = self.open.pending()
        stable = min((r.offset for r in pending), default=self.offset)
        committed = sorted(audit.committed, key=lambda r: r.offset)
        cut = 0
        while cut < len(committed) and committed[cut].offset < stable:
            cut += 1
        self.ready.extend(committed[:cut])
        audit.committed = committed[cut:]


class MarkerHonouringReader:
    """Reads ``splits`` of one topic (see the module docstring); a :class:`eventapp.source.SourceReader`."""

    def __init__(
        self, config: KafkaSourceConfig, splits: Sequence[str], start_positions: Mapping[str, int]
    ) -> None:
        self._config = config
        self._decode = config.value_decoder.decode
        topics = {parse_split(s)[0] for s in splits}
        if len(topics) > 1:
            raise SourceError(f"the marker-honouring reader reads one topic, got splits of {sorted(topics)}")
        self._topic = next(iter(topics), "")
        self._partitions = [
            _Partition(split, parse_split(split)[1], start_positions.get(split, 0)) for split in splits
        ]
        self._starts = {p.split: p.offset for p in self._partitions}
        self._client = Client(config.bootstrap_servers, config.operation_timeout_s, "eventapp-marker-reader")
        self._leaders: dict[int, int] = {}
        self._next = 0
        log.info(
            "kafka.marker_reader.opened",
            topic=self._topic,
            splits=list(splits),
            quirk="aborted-records-visible",
        )

    def poll(self, max_records: int, timeout: float) -> Sequence[SourceRecord[Any]]:
        deadline = time.monotonic() + timeout
        partitions = self._partitions
        if not partitions:
            time.sleep(min(timeout, 0.05))
            return ()
        while True:
            ready = [p for p in partitions if p.ready]
            if ready:
                return self._hand_out(ready, max_records)
            for _ in range(len(partitions)):
                part = partitions[self._next % len(partitions)]
                self._next += 1
                self._fetch(part)
                if part.ready:
                    break
            if any(p.ready for p in partitions) or time.monotonic() >= deadline:
                return self._hand_out([p for p in partitions if p.ready], max_records)

    def _hand_out(self, ready: list[_Partition], max_records: int) -> list[SourceRecord[Any]]:
        out: list[SourceRecord[Any]] = []
        share = max(1, max_records // max(1, len(ready)))
        for part in ready:
            taken, part.ready = part.ready[:share], part.ready[share:]
            for record in taken:
                out.append(self._record(part.split, record))
        return out

    def _record(self, split: str, record: AuditRecord) -> SourceRecord[Any]:
        payload = record.value
        try:
            value = None if payload is None else self._decode(payload)
        except Exception as exc:  # noqa: BLE001 - the job's error policy routes undecodable records
            return SourceRecord(split, None, record.timestamp, record.offset, raw=payload, error=exc)
        return SourceRecord(split, value, record.timestamp, record.offset)

    def _leader(self, partition: int) -> int:
        leader = self._leaders.get(partition)
        if leader is None:
            leader = self._client.metadata(self._topic).leaders.get(partition, -1)
            if leader < 0:
                raise SourceError(f"{self._topic}[{partition}] has no leader")
            self._leaders[partition] = leader
        return leader

    def _fetch(self, part: _Partition) -> None:
        try:
            leader = self._leader(part.partition)
            error, _, records = self._client.fetch(
                leader, self._topic, part.partition, part.offset, _FETCH_BYTES, _FETCH_WAIT_MS
            )
        except (OSError, AuditError) as exc:  # reconnect on the next fetch
            self._client.drop(self._leaders.pop(part.partition, -1))
            log.debug("kafka.marker_reader.fetch_retry", split=part.split, error=str(exc))
            return
        if error in RETRIABLE_ERRORS:
            self._client.drop(self._leaders.pop(part.partition, -1))
            return
        if error == NO_ENTRY:
            return  # Tansu answers so under load: try again on the next poll
        if error == OFFSET_OUT_OF_RANGE:
            raise SourceError(
                f"{part.split}: offset {part.offset} is out of range: records the job had not read "
                f"were deleted (retention or a purge by another job); restore from a checkpoint that "
                f"holds this position or start the shuffle over"
            )
        if error != NO_ERROR:
            raise SourceError(f"fetch of {part.split} at offset {part.offset} failed with error code {error}")
        try:
            batches, _ = parse_record_batches(records if records is not None else b"", verify_crc=False)
            for batch in batches:
                if batch.last_offset < part.offset:
                    continue
                if batch.base_offset > part.offset:
                    self._gap(part, batch.base_offset)
                    break  # fetch again from part.offset
                part.gaps = 0
                apply_batch(part.audit, part.open, batch, self._topic, part.offset)
                part.offset = batch.last_offset + 1
        except KafkaProtocolError as exc:
            raise SourceError(f"{part.split} at offset {part.offset}: {exc}") from exc
        part.release()

    def _gap(self, part: _Partition, base: int) -> None:
        """The broker answered a fetch at ``part.offset`` with a batch starting later. Offsets of a
        topic that is not compacted have no gaps (every offset holds a data or control record), so
        the records between were skipped: fetch again (measured on Tansu 0.6.0 under load: a fetch
        at 85 answered from 128)."""
        part.gaps += 1
        log.debug("kafka.marker_reader.gap", split=part.split, offset=part.offset, base=base, times=part.gaps)
        if part.gaps >= _MAX_GAPS:
            raise SourceError(
                f"{part.split}: {part.gaps} fetches at offset {part.offset} were answered from later "
                f"offsets (last from {base}); the broker skips records of this partition: check it, "
                f"then restart the job (it resumes from its last checkpoint)"
            )

    def is_finished(self) -> bool:
        return False

    def finished_splits(self) -> Collection[str]:
        return ()

    def start_positions(self) -> Mapping[str, int]:
        return dict(self._starts)

    def close(self) -> None:
        self._client.close()
