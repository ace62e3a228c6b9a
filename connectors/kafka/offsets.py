"""Reading committed checkpoints back from Kafka (commit point recovery and the savepoint CLI).

See :mod:`eventapp.connectors.kafka.metadata` for what is stored where. :func:`read_committed_checkpoints`
reads, for a set of splits, the consumer group's committed offsets (with ``read_committed``, so
librdkafka asks for *stable* offsets), the marker pointers, and the markers they point at, and decides
which checkpoint is committed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.errors import CheckpointError, EventAppError

from .config import KafkaCommitConfig, admin_settings, parse_split
from .errors import describe_kafka_error, kafka_error_of
from .metadata import CheckpointMarker, decode_metadata

__all__ = [
    "CHECKPOINT_TOPIC_CONFIGS",
    "CHECKPOINT_TOPIC_PARTITION",
    "CommittedSplitState",
    "ensure_checkpoint_topic",
    "read_committed_checkpoints",
]

log = structlog.get_logger(__name__)

#: Markers always go to this partition of the checkpoint topic.
CHECKPOINT_TOPIC_PARTITION = 0

#: Configs of an auto-created checkpoint topic. Markers are tiny (~250 bytes per checkpoint per split)
#: and the committed one must never be deleted, hence no time-based retention.
CHECKPOINT_TOPIC_CONFIGS: Mapping[str, str] = {"retention.ms": "-1", "cleanup.policy": "delete"}

Resolution = Literal["marker", "offset-metadata", "foreign-offset", "none"]


@dataclass(frozen=True, slots=True)
class CommittedSplitState:
    """Everything Kafka holds about one split's committed checkpoint.

    ``checkpoint`` is the committed eventapp checkpoint (``None`` if there is none). ``resolution``
    says where it came from: ``"marker"`` (the checkpoint topic, via the pointer group),
    ``"offset-metadata"`` (the committed offset's metadata), ``"foreign-offset"`` (the group has a
    committed offset without eventapp metadata, e.g. from another tool: no checkpoint, but the source's
    ``StartPosition.committed()`` starts there) or ``"none"``.
    """

    split: str
    offset: int | None
    metadata: str | None
    marker_offset: int | None
    marker: CheckpointMarker | None
    checkpoint: CommittedCheckpoint | None
    resolution: Resolution


_known_topics: set[tuple[str, str]] = set()
_known_topics_lock = threading.Lock()


def ensure_checkpoint_topic(config: KafkaCommitConfig) -> None:
    """Make sure the checkpoint topic exists (creating it if allowed); cached per process."""
    cache_key = (config.bootstrap_servers, config.checkpoint_topic)
    with _known_topics_lock:
        if cache_key in _known_topics:
            return
    topic = config.checkpoint_topic
    timeout = config.operation_timeout_s
    admin = AdminClient(admin_settings(config.bootstrap_servers, config.consumer_config))
    if not _topic_ready(admin, topic, timeout):
        if not config.create_checkpoint_topic:
            raise CheckpointError(
                f"checkpoint topic {topic!r} does not exist on {config.bootstrap_servers}; create it "
                f"(1 partition, cleanup.policy=delete, retention.ms=-1) or set create_checkpoint_topic=True"
            )
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=-1, config=dict(CHECKPOINT_TOPIC_CONFIGS))],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        try:
            futures[topic].result(timeout=timeout)
            log.info("kafka.checkpoint_topic.created", topic=topic, bootstrap=config.bootstrap_servers)
        except KafkaException as exc:
            error = kafka_error_of(exc)
            if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise CheckpointError(
                    f"cannot create checkpoint topic {topic!r}: {describe_kafka_error(error, exc)}; create "
                    f"it yourself (1 partition, cleanup.policy=delete, retention.ms=-1)"
                ) from exc
        deadline = time.monotonic() + timeout
        while not _topic_ready(admin, topic, timeout):
            if time.monotonic() > deadline:
                raise CheckpointError(f"checkpoint topic {topic!r} did not appear in metadata in {timeout}s")
            time.sleep(0.05)
    with _known_topics_lock:
        _known_topics.add(cache_key)


def _topic_ready(admin: AdminClient, topic: str, timeout: float) -> bool:
    try:
        # All topics, not list_topics(topic): a metadata request naming a topic makes some brokers
        # (Tansu, Kafka with auto.create.topics.enable) create it, with default configs.
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise CheckpointError(
            f"cannot read metadata of checkpoint topic {topic!r}: "
            f"{describe_kafka_error(kafka_error_of(exc), exc)}"
        ) from exc
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        return False
    partition = described.partitions.get(CHECKPOINT_TOPIC_PARTITION)
    return partition is not None and partition.leader >= 0


@contextlib.contextmanager
def _consumer(settings: dict[str, Any]) -> Iterator[Consumer]:
    consumer = Consumer(settings)
    try:
        yield consumer
    finally:
        consumer.close()


def committed_offsets(
    consumer: Consumer,
    tps: list[TopicPartition],
    timeout: float,
    what: str,
    *,
    error: type[EventAppError] = CheckpointError,
) -> list[TopicPartition]:
    """The committed offsets of ``tps`` in ``consumer``'s group; failures raise ``error`` naming ``what``."""
    try:
        result = consumer.committed(tps, timeout=timeout)
    except KafkaException as exc:
        raise error(
            f"cannot read the committed offsets of {what}: {describe_kafka_error(kafka_error_of(exc), exc)}"
        ) from exc
    for tp in result:
        if tp.error is not None:
            raise error(
                f"cannot read the committed offset of {what} for {tp.topic}-{tp.partition}: "
                f"{describe_kafka_error(tp.error)}"
            )
    return result


def group_metadata(config: KafkaCommitConfig, group_id: str) -> Any:
    """The (serialized) consumer-group metadata ``send_offsets_to_transaction`` needs for ``group_id``.

    With static assignment it only names the group (generation -1, no member id), so it stays valid
    after the consumer that produced it is closed.
    """
    with _consumer(config.consumer_settings(group_id)) as consumer:
        return consumer.consumer_group_metadata()


def read_markers(
    config: KafkaCommitConfig, offsets: Sequence[int], consumer: Consumer | None = None
) -> dict[int, CheckpointMarker]:
    """The checkpoint markers at ``offsets`` of the checkpoint topic.

    Read with ``read_uncommitted``: every offset given is a committed marker (its pointer was committed
    in the same transaction), and a ``read_committed`` read could wait behind another split's open
    transaction on the same partition.
    """
    if not offsets:
        return {}
    if consumer is None:
        with _consumer(config.consumer_settings(config.pointer_group_id, read_committed=False)) as own:
            return read_markers(config, offsets, own)
    topic = config.checkpoint_topic
    markers: dict[int, CheckpointMarker] = {}
    timeout = config.operation_timeout_s
    for offset in sorted(set(offsets)):
        where = f"{topic}-{CHECKPOINT_TOPIC_PARTITION} offset {offset}"
        consumer.assign([TopicPartition(topic, CHECKPOINT_TOPIC_PARTITION, offset)])
        deadline = time.monotonic() + timeout
        found = None
        while found is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CheckpointError(f"timed out after {timeout}s reading the checkpoint marker at {where}")
            message = consumer.poll(min(remaining, 1.0))
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    raise CheckpointError(
                        f"the committed checkpoint marker at {where} does not exist (the partition ends "
                        f"before it): the checkpoint topic was deleted or truncated"
                    )
                if error.fatal() or error.code() in (
                    KafkaError._AUTO_OFFSET_RESET,
                    KafkaError.OFFSET_OUT_OF_RANGE,
                ):
                    raise CheckpointError(
                        f"cannot read the checkpoint marker at {where}: {describe_kafka_error(error)} "
                        f"(was it deleted by retention? the checkpoint topic needs retention.ms=-1)"
                    )
                log.warning(
                    "kafka.checkpoint_marker.read_error", where=where, error=describe_kafka_error(error)
                )
                continue
            got = message.offset()
            if got is None or got < offset:
                continue
            if got > offset:
                raise CheckpointError(
                    f"the committed checkpoint marker at {where} is gone (next record is at {got}): it was "
                    f"deleted by retention or compaction; the checkpoint topic needs retention.ms=-1 and "
                    f"cleanup.policy=delete"
                )
            found = CheckpointMarker.from_bytes(message.value(), where)
        markers[offset] = found
    consumer.unassign()
    return markers


def read_committed_checkpoints(
    config: KafkaCommitConfig,
    splits: Sequence[str],
    *,
    wait_for_pending: bool = True,
    previous_owners_fenced: bool = False,
    splits_with_snapshots: Collection[str] | None = None,
) -> dict[str, CommittedSplitState]:
    """The committed checkpoint (and raw committed offset, metadata and marker) of each split.

    Offsets are read with ``isolation.level=read_committed``, i.e. librdkafka's *require_stable*
    offset fetch. The marker of a split is the one its committed pointer names (Apache Kafka commits
    the pointer atomically with the marker's transaction). With the broker quirk
    ``stale-transactional-offsets`` (:mod:`eventapp.connectors.kafka.quirks`) the pointer is only a
    lower bound, and the marker is the split's last marker whose transaction committed, found by
    :func:`scan_committed_markers` in the tail of the checkpoint topic. Call it after fencing the
    splits' previous owners (commit point recovery does) for a stable answer; on a running job pass
    ``wait_for_pending=False``. The commit point passes ``previous_owners_fenced=True``.

    ``splits_with_snapshots`` names the splits whose checkpoint storage holds committed snapshots
    (``None``: unknown, assume all): the scan does not search for a split that has neither a pointer
    nor a snapshot, so a split that was never checkpointed costs no read of the checkpoint topic.

    :raises CheckpointError: on broker errors and on inconsistent or unreadable checkpoint data.
    """
    if not splits:
        return {}
    parsed = {split: parse_split(split) for split in splits}
    tps = [TopicPartition(topic, partition) for topic, partition in parsed.values()]
    timeout = config.operation_timeout_s
    with _consumer(config.consumer_settings(config.group_id)) as consumer:
        main = committed_offsets(consumer, tps, timeout, f"group {config.group_id!r}")
    with _consumer(config.consumer_settings(config.pointer_group_id, read_committed=False)) as consumer:
        pointers = committed_offsets(
            consumer,
            [TopicPartition(tp.topic, tp.partition) for tp in tps],
            timeout,
            f"group {config.pointer_group_id!r}",
        )
        main_by_tp = {(tp.topic, tp.partition): tp for tp in main}
        pointer_by_tp = {(tp.topic, tp.partition): tp.offset for tp in pointers if tp.offset >= 0}
        pointer_of = {split: pointer_by_tp.get(key) for split, key in parsed.items()}
        searched = [
            split
            for split, pointer in pointer_of.items()
            if pointer is not None or splits_with_snapshots is None or split in splits_with_snapshots
        ]
        if searched:
            ensure_checkpoint_topic(config)
        if config.broker_quirks.stale_transactional_offsets and _can_scan(config):
            latest = _SCANS.scan(
                config,
                {split: pointer_of[split] for split in searched},
                wait_for_pending=wait_for_pending,
                previous_owners_fenced=previous_owners_fenced,
            )
            pointer_by_tp = {parsed[s]: off for s, (off, _) in latest.items()}
            markers = {off: marker for off, marker in latest.values()}
        else:
            markers = read_markers(config, list(pointer_by_tp.values()), consumer)
    result: dict[str, CommittedSplitState] = {}
    for split, key in parsed.items():
        committed = main_by_tp.get(key)
        offset = committed.offset if committed is not None and committed.offset >= 0 else None
        metadata = committed.metadata if committed is not None else None
        marker_offset = pointer_by_tp.get(key)
        marker = markers.get(marker_offset) if marker_offset is not None else None
        checkpoint, resolution = _resolve(config, split, offset, metadata, marker)
        result[split] = CommittedSplitState(
            split, offset, metadata, marker_offset, marker, checkpoint, resolution
        )
    return result


def _resolve(
    config: KafkaCommitConfig,
    split: str,
    offset: int | None,
    metadata: str | None,
    marker: CheckpointMarker | None,
) -> tuple[CommittedCheckpoint | None, Resolution]:
    from_metadata = decode_metadata(metadata)
    from_marker: CommittedCheckpoint | None = None
    if marker is not None:
        if marker.group_id != config.group_id or marker.split != split:
            raise CheckpointError(
                f"the checkpoint marker committed for split {split!r} of group {config.group_id!r} belongs "
                f"to split {marker.split!r} of group {marker.group_id!r}: the pointer group "
                f"{config.pointer_group_id!r} or the checkpoint topic {config.checkpoint_topic!r} was "
                f"modified outside eventapp"
            )
        from_marker = CommittedCheckpoint(marker.checkpoint_id, marker.snapshot, marker.position)
    if from_metadata is not None:
        checkpoint_id, snapshot = from_metadata
        if from_marker is None or checkpoint_id > from_marker.checkpoint_id:
            return CommittedCheckpoint(checkpoint_id, snapshot, offset), "offset-metadata"
        if checkpoint_id == from_marker.checkpoint_id and snapshot != from_marker.snapshot:
            raise CheckpointError(
                f"split {split!r}: the committed offset names snapshot {snapshot!r} but the committed "
                f"checkpoint marker names {from_marker.snapshot!r} for the same checkpoint {checkpoint_id}; "
                f"the group's offsets were modified outside eventapp"
            )
    if from_marker is not None:
        if from_marker.position != offset:
            # At-least-once commits the marker pointer before the group offset, so a crash in between
            # leaves the offset behind; in exactly-once mode both commit together, so a difference
            # means the group's offset was changed outside eventapp (e.g. kafka-consumer-groups
            # --reset-offsets). The checkpoint's own position matches its state, so it wins.
            log.warning(
                "kafka.checkpoint.position_mismatch",
                split=split,
                group=config.group_id,
                checkpoint_id=from_marker.checkpoint_id,
                checkpoint_position=from_marker.position,
                committed_offset=offset,
                hint="resuming at the checkpoint's position; to start elsewhere, restore a savepoint or "
                "delete the group's offsets in both groups",
            )
        return from_marker, "marker"
    if offset is not None:
        return None, "foreign-offset"
    return None, "none"


_warned_no_scan: set[str] = set()


def _can_scan(config: KafkaCommitConfig) -> bool:
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
    from .txnlog import AuditError, KafkaProtocolError, audit_topic, high_watermark

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


class _CoalescedScans:
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


_SCANS = _CoalescedScans()


def _scan_failed(config: KafkaCommitConfig, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"cannot read checkpoint markers from {config.checkpoint_topic!r} on {config.bootstrap_servers} "
        f"(deadline: operation_timeout_s={config.operation_timeout_s} plus 1 ms per offset read): {exc}"
    )
