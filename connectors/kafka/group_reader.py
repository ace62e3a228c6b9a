"""The Kafka source reader of a consumer group (``KafkaSourceConfig(group_assignment=True)``,
``eventapp run JOB --group``): the group assigns the partitions to the workers, with
``cooperative-sticky`` incremental rebalancing, so a rebalance moves only the splits that change
owner (Kafka Streams' model; the issue's and Quix's pitfalls are in
``../shared/reference/operations-anchors.md`` section 3).

Inside librdkafka's rebalance callbacks (run by ``consume()``, in the worker's thread):

* **assigned**: the partitions are ``incremental_assign``-ed and paused at once, and the listener
  (the runner) is told; it restores each split *outside* the callback (fencing the previous owner's
  transactional producer, reading the committed checkpoint), then calls :meth:`start_splits`,
  which seeks each partition to its restored position and resumes it;
* **revoked**: the listener checkpoints and releases the splits *inside* the callback, before the
  partitions go (a new owner is assigned only after this member gave them up), then the reader
  drops their buffered records and ``incremental_unassign``-s them;
* **lost** (this member was out of the group past its session timeout): the listener drops the
  splits without committing (their new owner may already be writing), then as revoked.

Ownership is the group's: the split-ownership claims of static assignment are off
(:class:`~eventapp.connectors.kafka.commit_config.KafkaCommitConfig.ownership_claims`); a zombie is
still fenced by the per-split transactional id its successor initialises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from eventapp.errors import SourceError
from eventapp.source import SplitListener

from .config import KafkaSourceConfig
from .errors import describe_kafka_error, kafka_error_of
from .reader import KafkaSourceReader
from .splits import split_id
from .startoffsets import resolve_start_offsets

__all__ = ["KafkaGroupReader"]

log = structlog.get_logger(__name__)


class KafkaGroupReader(KafkaSourceReader):
    """Reads the partitions the consumer group gives this worker (see the module docstring)."""

    _static_assignment = False

    def __init__(self, config: KafkaSourceConfig, listener: SplitListener) -> None:
        super().__init__(config, [], {})
        self._listener = listener
        #: Assigned splits waiting for start_splits (their partitions are paused).
        self._starting: set[str] = set()
        try:
            self._consumer.subscribe(
                list(config.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except KafkaException as exc:
            self._consumer.close()
            self._closed = True
            raise SourceError(
                f"Kafka source {self._name!r}: cannot subscribe to {list(config.topics)}: "
                f"{describe_kafka_error(kafka_error_of(exc), exc)}"
            ) from exc
        static = config.group_instance_id if not config.broker_quirks.no_static_membership else None
        if config.group_instance_id and static is None:
            log.warning(
                "kafka.source.static_membership_off",
                source=self._name,
                instance=config.group_instance_id,
                quirk="no-static-membership",
                hint="the broker's quirk: joining as a dynamic member (a restart rebalances)",
            )
        log.info(
            "kafka.source.subscribed",
            source=self._name,
            group=config.group_id,
            topics=list(config.topics),
            instance=static,
        )

    # -- rebalance callbacks (inside consume()) -----------------------------------------------------
    def _ours(self, partitions: Sequence[TopicPartition]) -> list[TopicPartition]:
        return [tp for tp in partitions if tp.topic in self._config.topics]

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        partitions = self._ours(partitions)
        consumer.incremental_assign(partitions)
        if not partitions:
            return
        consumer.pause(partitions)
        splits = [split_id(tp.topic, tp.partition) for tp in partitions]
        for split in splits:
            self._add_split(split)
            self._starting.add(split)
            self._not_fetching.add(split)
        log.info("kafka.source.splits_assigned", source=self._name, splits=splits)
        self._listener.splits_assigned(splits)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(consumer, partitions, lost=True)

    def _release(self, consumer: Consumer, partitions: list[TopicPartition], *, lost: bool) -> None:
        ids = (split_id(tp.topic, tp.partition) for tp in self._ours(partitions))
        splits = [s for s in ids if s in self._partition]
        event = "kafka.source.splits_lost" if lost else "kafka.source.splits_revoked"
        log.info(event, source=self._name, splits=splits)
        try:
            if splits:
                (self._listener.splits_lost if lost else self._listener.splits_revoked)(splits)
        finally:
            for split in splits:
                self._starting.discard(split)
                self._remove_split(split)
            consumer.incremental_unassign(partitions)

    # -- the runtime's side ---------------------------------------------------------------------------
    def start_splits(self, positions: Mapping[str, int | None]) -> dict[str, int]:
        """Seek each restored split to its position (or resolve the configured start) and resume."""
        starting = {s: p for s, p in positions.items() if s in self._starting}
        if not starting:
            return {}
        split_of = {(self._partition[s].topic, self._partition[s].partition): s for s in starting}
        restored = {s: p for s, p in starting.items() if p is not None}
        start = resolve_start_offsets(self._consumer, self._config, split_of, restored)
        partitions = [self._partition[s] for s in starting]
        try:
            # Outside a callback assignment changes are local: unassign, then assign at the offset.
            self._consumer.incremental_unassign(partitions)
            self._consumer.incremental_assign(start.assignment)
        except KafkaException as exc:
            raise SourceError(
                f"Kafka source {self._name!r}: cannot start splits {sorted(starting)}: "
                f"{describe_kafka_error(kafka_error_of(exc), exc)}"
            ) from exc
        for split in starting:
            self._starting.discard(split)
            self._not_fetching.discard(split)
            self._sync_fetching(split)  # paused again if watermark alignment holds it
        for key, ts in start.skip_before.items():
            self._skip_before[split_of[key]] = ts
        self._started_at.update(start.started_at)
        log.info("kafka.source.splits_started", source=self._name, positions=dict(start.started_at))
        return dict(start.started_at)
