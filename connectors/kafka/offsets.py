"""Reading committed checkpoints back from Kafka (commit point recovery and the savepoint CLI).

See :mod:`eventapp.connectors.kafka.metadata` for what is stored where. :func:`read_committed_checkpoints`
reads, for a set of splits, the consumer group's committed offsets (with ``read_committed``, so
librdkafka asks for *stable* offsets), the marker pointers, and the markers they point at, and decides
which checkpoint is committed. The checkpoint topic itself is managed by
:mod:`eventapp.connectors.kafka.checkpoint_topic`, and the scan for committed markers that recovery
needs on brokers with the ``stale-transactional-offsets`` quirk is :mod:`eventapp.connectors.kafka.markerscan`
(both re-exported here).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.errors import CheckpointError, EventAppError

from .checkpoint_topic import (
    CHECKPOINT_TOPIC_CONFIGS,
    CHECKPOINT_TOPIC_PARTITION,
    ensure_checkpoint_topic,
)
from .commit_config import KafkaCommitConfig
from .errors import describe_kafka_error, kafka_error_of
from .markerscan import SCAN_FIRST_WINDOW as SCAN_FIRST_WINDOW
from .markerscan import SCAN_SECONDS_PER_OFFSET as SCAN_SECONDS_PER_OFFSET
from .markerscan import SCAN_WINDOW_GROWTH as SCAN_WINDOW_GROWTH
from .markerscan import can_scan, coalesced_scans
from .markerscan import scan_committed_markers as scan_committed_markers
from .metadata import CheckpointMarker, decode_metadata
from .splits import parse_split

__all__ = [
    "CHECKPOINT_TOPIC_CONFIGS",
    "CHECKPOINT_TOPIC_PARTITION",
    "CommittedSplitState",
    "ensure_checkpoint_topic",
    "read_committed_checkpoints",
]

log = structlog.get_logger(__name__)


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


#: The name ``commit.py`` imports :func:`~eventapp.connectors.kafka.markerscan.can_scan` by.
_can_scan = can_scan


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
        if config.broker_quirks.stale_transactional_offsets and can_scan(config):
            latest = coalesced_scans.scan(
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
