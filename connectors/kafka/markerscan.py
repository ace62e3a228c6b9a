"""The checkpoint-marker scan: a split's latest checkpoint marker *whose transaction committed*,
decided from the transaction control markers in the tail of the checkpoint topic, read with the
transaction-aware reader (:mod:`eventapp.connectors.kafka.txnlog`).

Recovery uses it with the broker quirk ``stale-transactional-offsets``
(:mod:`eventapp.connectors.kafka.quirks`), where the committed marker pointer is only a lower bound
(see :func:`eventapp.connectors.kafka.offsets.read_committed_checkpoints`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Final

import structlog

from eventapp.errors import CheckpointError

from .checkpoint_topic import CHECKPOINT_TOPIC_PARTITION
from .commit_config import KafkaCommitConfig
from .metadata import CheckpointMarker
from .txnlog import AuditError, KafkaProtocolError, audit_topic, high_watermark

__all__ = [
    "SCAN_FIRST_WINDOW",
    "SCAN_SECONDS_PER_OFFSET",
    "SCAN_WINDOW_GROWTH",
    "CoalescedScans",
    "can_scan",
    "coalesced_scans",
    "scan_committed_markers",
]

log = structlog.get_logger(__name__)

_warned_no_scan: set[str] = set()


def can_scan(config: KafkaCommitConfig) -> bool:
    """The marker scan uses eventapp's own plaintext wire client (no TLS/SASL)."""
    settings = config.consumer_settings(config.pointer_group_id, read_committed=False)
    protocol = str(settings.get("security.protocol", "plaintext")).lower()
    if protocol == "plaintext":
        return True
    if config.bootstrap_servers not in _warned_no_scan:
        _warned_no_scan.add(config.bootstrap_servers)
        log.warning(
            "kafka.checkpoint_marker.scan_unavailable",
            bootstrap=config.bootstrap_servers,
            security_protocol=protocol,
            hint="the broker quirk stale-transactional-offsets is set, but the checkpoint-marker scan "
            "speaks plaintext only: recovery trusts the committed marker pointer",
        )
    return False


#: Offsets at the tail of the checkpoint topic read first by :func:`scan_committed_markers`; each
#: split commits one marker and one control record per checkpoint, so this covers the last ~2,000
#: commits of the topic (a few hundred KB).
SCAN_FIRST_WINDOW: Final = 4_096
#: Factor by which the scan window grows while a split's committed marker is not in it.
SCAN_WINDOW_GROWTH: Final = 8
#: Time a scan may take per offset it reads, on top of ``operation_timeout_s`` (a floor of 1,000
#: offsets/s; a single scan reads ~8,000/s here with 8 running at once on 2 loaded cores).
SCAN_SECONDS_PER_OFFSET: Final = 0.001


def scan_committed_markers(
    config: KafkaCommitConfig,
    pointers: Mapping[str, int | None],
    *,
    wait_for_pending: bool = True,
    previous_owners_fenced: bool = False,
) -> dict[str, tuple[int, CheckpointMarker]]:
    """For each split, the offset and content of its latest checkpoint marker *whose transaction
    committed*, decided by the transaction control markers in the checkpoint topic.

    The cost is bounded by recent history, not by the topic's length: the scan reads a window at the
    tail of the topic (:data:`SCAN_FIRST_WINDOW` offsets below the high watermark, to the end). A
    marker found committed there is the split's latest, since every later marker lies in the window
    too. Only while some split's committed marker is not in the window does the window grow
    (x :data:`SCAN_WINDOW_GROWTH`, down to offset 0 at most). A running job commits every split at
    every checkpoint, so the window holds every split's marker unless the job was stopped while
    other writers (other jobs sharing the topic) wrote thousands of markers.

    ``pointers`` holds each split's committed pointer (or ``None``); the latest committed marker is
    never older than a committed pointer. A split with a pointer but no committed marker at all
    raises :class:`CheckpointError` (the topic lost it); a split without a pointer and without a
    marker is absent from the result. Markers of a split that are still in an open transaction (its
    previous owner was not fenced yet, or the abort is on its way) are waited for up to
    ``operation_timeout_s`` when ``wait_for_pending``. If they are still open then, the scan fails,
    unless ``previous_owners_fenced``: the caller has fenced the splits' transactional ids
    (``init_transactions``), so Kafka guarantees their previous transactions are complete, and a marker
    still open is a write of the fenced epoch that the broker appended after the abort marker (seen on
    Tansu 0.6.0, see ``docs/exactly-once.md``). It can never commit: it is ignored, with a warning.
    """
    if not pointers:
        return {}
    wanted = {split: f"{config.group_id}/{split}".encode() for split in pointers}
    by_key = {key: split for split, key in wanted.items()}
    pending_deadline: float | None = None
    topic = config.checkpoint_topic
    window = SCAN_FIRST_WINDOW
    began = time.perf_counter()
    try:
        end = high_watermark(
            config.bootstrap_servers,
            topic,
            CHECKPOINT_TOPIC_PARTITION,
            timeout=config.operation_timeout_s,
            client_id="eventapp-checkpoint-scan",
        )
    except (AuditError, KafkaProtocolError, OSError) as exc:
        raise _scan_failed(config, exc) from exc
    while True:
        start = max(0, end - window)
        # A long read is not a stuck one: the deadline grows with the offsets to read.
        read_timeout = config.operation_timeout_s + (end - start) * SCAN_SECONDS_PER_OFFSET
        try:
            audit = audit_topic(
                config.bootstrap_servers,
                topic,
                partitions=[CHECKPOINT_TOPIC_PARTITION],
                verify_crc=True,
                timeout=read_timeout,
                start_offsets={CHECKPOINT_TOPIC_PARTITION: start},
                client_id="eventapp-checkpoint-scan",
                keys=frozenset(wanted.values()),
            )
        except (AuditError, KafkaProtocolError, OSError) as exc:
            raise _scan_failed(config, exc) from exc
        log_state = audit.partitions[CHECKPOINT_TOPIC_PARTITION]
        latest: dict[str, tuple[int, CheckpointMarker]] = {}
        for record in log_state.committed:
            split = by_key.get(record.key or b"")
            if split is None:
                continue
            where = f"{topic}-{CHECKPOINT_TOPIC_PARTITION} offset {record.offset}"
            latest[split] = (record.offset, CheckpointMarker.from_bytes(record.value, where))
        if start > 0 and any(split not in latest for split in wanted):
            window *= SCAN_WINDOW_GROWTH
            end = max(end, log_state.end_offset)
            log.info(
                "kafka.checkpoint_marker.scan_widened",
                topic=topic,
                splits=sorted(s for s in wanted if s not in latest),
                from_offset=max(0, end - window),
                end_offset=end,
            )
            continue
        pending = sorted({by_key[r.key] for r in log_state.pending if r.key in by_key})
        missing = [s for s, p in pointers.items() if p is not None and s not in latest]
        if missing:
            # A committed pointer says a checkpoint was committed, but its marker is gone: never
            # continue with empty state from the group's offset (that would silently lose state).
            raise CheckpointError(
                f"splits {missing} have committed checkpoint pointers in group "
                f"{config.pointer_group_id!r}, but no committed checkpoint marker of theirs is left in "
                f"topic {topic!r} (deleted, recreated or truncated?). Refusing to start rather than "
                f"continue without their state. Restore the checkpoint topic, or restore the job from "
                f"a savepoint; to start these splits from scratch, delete the committed offsets of "
                f"groups {config.group_id!r} and {config.pointer_group_id!r} for them"
            )
        if pending and wait_for_pending:
            if pending_deadline is None:
                pending_deadline = time.monotonic() + config.operation_timeout_s
            if time.monotonic() > pending_deadline and previous_owners_fenced:
                log.warning(
                    "kafka.checkpoint_marker.fenced_write_ignored",
                    splits=pending,
                    topic=topic,
                    offsets=[r.offset for r in log_state.pending if r.key in by_key],
                    hint="a marker of the fenced previous owner was appended after its transaction was "
                    "aborted (a broker that does not reject fenced producer epochs); it never commits",
                )
            elif time.monotonic() > pending_deadline:
                raise CheckpointError(
                    f"checkpoint markers of splits {pending} stay in open transactions in {topic!r}; "
                    f"their previous owners must be fenced first (is another instance of the job "
                    f"still running with the same transactional ids?)"
                )
            else:
                time.sleep(0.05)
                continue
        for split, (offset, marker) in latest.items():
            if marker.group_id != config.group_id or marker.split != split:
                raise CheckpointError(
                    f"the checkpoint marker at {topic} offset {offset} is keyed for split {split!r} but "
                    f"belongs to split {marker.split!r} of group {marker.group_id!r}"
                )
        log.debug(
            "kafka.checkpoint_marker.scanned",
            topic=topic,
            splits=len(wanted),
            from_offset=start,
            end_offset=log_state.end_offset,
            batches=log_state.batches,
            duration_ms=round((time.perf_counter() - began) * 1000, 3),
        )
        return latest


_ScanKey = tuple[str, str, str, bool, bool]
_ScanResult = dict[str, tuple[int, CheckpointMarker]]


class _ScanRequest:
    __slots__ = ("done", "error", "pointers", "result")

    def __init__(self, pointers: Mapping[str, int | None]) -> None:
        self.pointers = pointers
        self.done = False
        self.result: _ScanResult = {}
        self.error: BaseException | None = None


class CoalescedScans:
    """One scan of the checkpoint topic for the splits whose commit points ask at the same time.

    A worker's splits recover in parallel threads and each asks for its committed marker: without
    this, each thread would read the same tail of the same topic. A request waits while a scan of
    the same topic and group runs, then the next scan serves every request that waited. A request
    never joins a scan that already started: the scan must begin after the request's split was
    fenced, or it could miss a marker the previous owner committed just before the fence.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queued: dict[_ScanKey, list[_ScanRequest]] = {}
        self._running: set[_ScanKey] = set()

    def scan(
        self,
        config: KafkaCommitConfig,
        pointers: Mapping[str, int | None],
        *,
        wait_for_pending: bool,
        previous_owners_fenced: bool,
    ) -> _ScanResult:
        key = (
            config.bootstrap_servers,
            config.checkpoint_topic,
            config.group_id,
            wait_for_pending,
            previous_owners_fenced,
        )
        request = _ScanRequest(pointers)
        with self._cond:
            self._queued.setdefault(key, []).append(request)
            while key in self._running and not request.done:
                self._cond.wait()
            if not request.done:  # lead the next scan, for every request queued so far
                self._running.add(key)
                batch = self._queued.pop(key)
        if not request.done:
            merged = {split: p for r in batch for split, p in r.pointers.items()}
            try:
                result = scan_committed_markers(
                    config,
                    merged,
                    wait_for_pending=wait_for_pending,
                    previous_owners_fenced=previous_owners_fenced,
                )
            except BaseException as exc:  # noqa: BLE001 - handed to every request of the batch
                for r in batch:
                    r.error = exc
            else:
                for r in batch:
                    r.result = {s: found for s, found in result.items() if s in r.pointers}
            finally:
                with self._cond:
                    self._running.discard(key)
                    for r in batch:
                        r.done = True
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        return request.result


#: The process's scans of checkpoint topics (commit point recovery scans through it).
coalesced_scans = CoalescedScans()


def _scan_failed(config: KafkaCommitConfig, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"cannot read checkpoint markers from {config.checkpoint_topic!r} on {config.bootstrap_servers} "
        f"(deadline: operation_timeout_s={config.operation_timeout_s} plus 1 ms per offset read): {exc}"
    )
