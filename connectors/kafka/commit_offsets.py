"""The at-least-once commit point of a Kafka split (see :class:`KafkaOffsetsCommitPoint`)."""

from __future__ import annotations

import time

import structlog
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.errors import CheckpointError

from .commit_base import KafkaCommitPointBase, ms_since
from .config import KafkaCommitConfig
from .errors import describe_kafka_error, kafka_error_of
from .metadata import encode_metadata
from .offsets import ensure_checkpoint_topic

__all__ = ["KafkaOffsetsCommitPoint"]

log = structlog.get_logger("eventapp.connectors.kafka.commit")


class KafkaOffsetsCommitPoint(KafkaCommitPointBase):
    """At-least-once commit point of one Kafka split: no transaction (:attr:`transaction` is ``None``).

    ``commit`` writes the checkpoint marker (idempotent producer, waits for the acknowledgement), then
    commits the marker pointer and the partition offset (with eventapp metadata) synchronously. A crash
    between the two offset commits is harmless: recovery trusts the marker, whose position matches
    its snapshot. It cannot fence a previous owner: two owners of a split both write.
    """

    def __init__(self, config: KafkaCommitConfig, split: str) -> None:
        super().__init__(config, split)
        self._main_consumer: Consumer | None = None
        self._pointer_consumer: Consumer | None = None

    @property
    def transaction(self) -> None:
        return None

    def recover(self, *, has_committed_snapshots: bool = True) -> CommittedCheckpoint | None:
        if self._state == "closed":
            raise CheckpointError(f"commit point of split {self.split!r} is closed")
        self._release()
        self.timings = {}
        began = time.perf_counter()
        ensure_checkpoint_topic(self._config)
        checkpoint = self._read_committed(has_committed_snapshots)
        self._producer = Producer(self._config.producer_settings(None))
        self._main_consumer = Consumer(self._config.consumer_settings(self._config.group_id))
        self._pointer_consumer = Consumer(self._config.consumer_settings(self._config.pointer_group_id))
        self._state = "ready"
        self.timings["recover_ms"] = ms_since(began)
        self._log_recovered(checkpoint)
        return checkpoint

    def commit(self, checkpoint: CommittedCheckpoint) -> None:
        producer = self._require("ready", f"commit checkpoint {checkpoint.checkpoint_id}")
        assert self._main_consumer is not None and self._pointer_consumer is not None
        began = time.perf_counter()
        metadata = encode_metadata(checkpoint.checkpoint_id, checkpoint.snapshot)
        try:
            marker_offset = self._produce_marker(producer, self._marker(checkpoint, None))
            step = time.perf_counter()
            self._commit_offset(
                self._pointer_consumer, self._config.pointer_group_id, marker_offset, metadata
            )
            if checkpoint.position is not None:
                self._commit_offset(self._main_consumer, self._config.group_id, checkpoint.position, metadata)
            self.timings["commit_offsets_ms"] = ms_since(step)
        except KafkaException as exc:
            error = kafka_error_of(exc)
            log.error(
                "kafka.commit_point.commit_failed",
                **self._log_context(),
                checkpoint_id=checkpoint.checkpoint_id,
                error=describe_kafka_error(error, exc),
            )
            raise CheckpointError(
                f"split {self.split!r}: could not commit checkpoint {checkpoint.checkpoint_id}: "
                f"{describe_kafka_error(error, exc)}"
            ) from exc
        self.timings["commit_ms"] = ms_since(began)
        log.debug(
            "kafka.commit_point.committed",
            **self._log_context(),
            checkpoint_id=checkpoint.checkpoint_id,
            snapshot=checkpoint.snapshot,
            position=checkpoint.position,
            marker_offset=marker_offset,
            **self.timings,
        )

    def _commit_offset(self, consumer: Consumer, group: str, offset: int, metadata: str) -> None:
        result = consumer.commit(
            offsets=[TopicPartition(self._topic, self._partition, offset, metadata=metadata)],
            asynchronous=False,
        )
        for tp in result or ():
            if tp.error is not None:
                raise CheckpointError(
                    f"split {self.split!r}: committing offset {offset} in group {group!r} failed: "
                    f"{describe_kafka_error(tp.error)}"
                )

    def _release(self) -> None:
        producer = self._producer
        if producer is not None:
            remaining = producer.flush(min(self._config.operation_timeout_s, 10.0))
            if remaining:
                log.warning(
                    "kafka.commit_point.unflushed_markers", **self._log_context(), remaining=remaining
                )
        self._close_producer()
        for consumer in (self._main_consumer, self._pointer_consumer):
            if consumer is not None:
                consumer.close()
        self._main_consumer = self._pointer_consumer = None

    def close(self) -> None:
        if self._state == "closed":
            return
        self._release()
        self._state = "closed"
        log.debug("kafka.commit_point.closed", **self._log_context())
