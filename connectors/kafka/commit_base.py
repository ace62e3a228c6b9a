"""What both Kafka commit points share: the split and its producer, the checkpoint marker (produced
and flushed with everything the producer holds), and recovery of the committed checkpoint
(:mod:`eventapp.connectors.kafka.offsets`)."""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.errors import CheckpointError

from .config import KafkaCommitConfig, parse_split
from .errors import is_fencing_error
from .metadata import CheckpointMarker
from .offsets import (
    CHECKPOINT_TOPIC_PARTITION,
    CommittedSplitState,
    group_metadata,
    read_committed_checkpoints,
)

__all__ = ["KafkaCommitPointBase", "State", "cached_group_metadata", "ms_since"]

log = structlog.get_logger("eventapp.connectors.kafka.commit")

State = Literal["new", "ready", "failed", "closed"]

_group_metadata_cache: dict[tuple[str, str], Any] = {}
_group_metadata_lock = threading.Lock()


def cached_group_metadata(config: KafkaCommitConfig, group_id: str) -> Any:
    """Serialized group metadata per (bootstrap, group): it only names the group (static assignment)."""
    key = (config.bootstrap_servers, group_id)
    with _group_metadata_lock:
        cached = _group_metadata_cache.get(key)
    if cached is None:
        cached = group_metadata(config, group_id)
        with _group_metadata_lock:
            _group_metadata_cache[key] = cached
    return cached


def ms_since(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


class _MarkerDelivery:
    """Delivery report of the one marker record produced per commit."""

    __slots__ = ("error", "offset")

    def __init__(self) -> None:
        self.error: KafkaError | None = None
        self.offset: int | None = None

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        self.error = error
        self.offset = message.offset() if error is None else None


class KafkaCommitPointBase:
    """Shared parts: the split, its producer, the marker, recovery of the committed checkpoint."""

    #: Whether recover() fences the split's previous owner before reading the committed checkpoint.
    _fences_previous_owner = False

    def __init__(self, config: KafkaCommitConfig, split: str) -> None:
        self._config = config
        self.split = split
        self._topic, self._partition = parse_split(split)
        self._producer: Producer | None = None
        self._state: State = "new"
        #: The committed offset found by :meth:`recover` when it was not an eventapp checkpoint.
        self.foreign_offset: int | None = None
        #: What :meth:`recover` read (offsets, metadata, marker): for diagnostics and tests.
        self.recovered_state: CommittedSplitState | None = None
        #: Durations (ms) of the last recover/commit steps, for logs and benchmarks.
        self.timings: dict[str, float] = {}

    def __repr__(self) -> str:
        config = self._config
        return (
            f"{type(self).__name__}(split={self.split!r}, group={config.group_id!r}, "
            f"checkpoint_topic={config.checkpoint_topic!r}, bootstrap={config.bootstrap_servers!r})"
        )

    @property
    def config(self) -> KafkaCommitConfig:
        return self._config

    def _log_context(self) -> dict[str, Any]:
        return {"split": self.split, "group": self._config.group_id}

    def _require(self, state: State, action: str) -> Producer:
        if self._state != state or self._producer is None:
            hint = {
                "new": "call recover() first",
                "failed": "a previous commit failed; call recover() to continue from the last committed "
                "checkpoint",
                "closed": "the commit point is closed",
                "ready": "",
            }[self._state]
            raise CheckpointError(f"commit point of split {self.split!r} cannot {action}: {hint}")
        return self._producer

    def _read_committed(self, has_committed_snapshots: bool) -> CommittedCheckpoint | None:
        began = time.perf_counter()
        state = read_committed_checkpoints(
            self._config,
            [self.split],
            previous_owners_fenced=self._fences_previous_owner,
            splits_with_snapshots=None if has_committed_snapshots else (),
        )[self.split]
        self.timings["read_committed_ms"] = ms_since(began)
        self.recovered_state = state
        self.foreign_offset = state.offset if state.resolution == "foreign-offset" else None
        if state.resolution == "foreign-offset":
            log.info(
                "kafka.commit_point.foreign_offset",
                **self._log_context(),
                offset=state.offset,
                metadata=state.metadata,
                hint="committed offset without an eventapp checkpoint: the split starts there "
                "(StartPosition.committed) with empty state",
            )
        return state.checkpoint

    def _log_recovered(self, checkpoint: CommittedCheckpoint | None) -> None:
        log.info(
            "kafka.commit_point.recovered",
            **self._log_context(),
            checkpoint_id=None if checkpoint is None else checkpoint.checkpoint_id,
            snapshot=None if checkpoint is None else checkpoint.snapshot,
            position=None if checkpoint is None else checkpoint.position,
            resolution=None if self.recovered_state is None else self.recovered_state.resolution,
            **self.timings,
        )

    def _marker(self, checkpoint: CommittedCheckpoint, transactional_id: str | None) -> CheckpointMarker:
        return CheckpointMarker(
            group_id=self._config.group_id,
            split=self.split,
            checkpoint_id=checkpoint.checkpoint_id,
            snapshot=checkpoint.snapshot,
            position=checkpoint.position,
            job=self._config.job,
            transactional_id=transactional_id,
            written_at_ms=int(time.time() * 1000),
        )

    def _produce_marker(self, producer: Producer, marker: CheckpointMarker) -> int:
        """Produce ``marker``, flush everything the producer holds, return the marker's offset."""
        delivery = _MarkerDelivery()
        value = marker.to_bytes()
        timeout = self._config.operation_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            try:
                producer.produce(
                    self._config.checkpoint_topic,
                    value,
                    key=marker.key,
                    partition=CHECKPOINT_TOPIC_PARTITION,
                    on_delivery=delivery,
                )
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise CheckpointError(
                        f"checkpoint {marker.checkpoint_id} of split {self.split!r}: the producer queue "
                        f"stayed full for {timeout}s"
                    ) from None
                producer.poll(0.05)
        began = time.perf_counter()
        remaining = producer.flush(timeout)
        self.timings["flush_ms"] = ms_since(began)
        if remaining:
            raise CheckpointError(
                f"checkpoint {marker.checkpoint_id} of split {self.split!r}: {remaining} records (outputs "
                f"and marker) were not acknowledged within {timeout}s"
            )
        if delivery.error is not None:
            if is_fencing_error(delivery.error):
                self._note_fencing(delivery.error)
            raise KafkaException(delivery.error)
        if delivery.offset is None or delivery.offset < 0:
            raise CheckpointError(
                f"checkpoint {marker.checkpoint_id} of split {self.split!r}: the marker was delivered "
                f"without an offset"
            )
        return delivery.offset

    def _note_fencing(self, error: KafkaError) -> None:
        """A delivery showed that the split's producer was fenced (only a transaction can be)."""
        del error

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if self._state != "ready":
            # After a failure, Producer.close() aborts the open transaction without a timeout: on
            # Tansu 0.6.0 a fenced producer's EndTxn gets its connection dropped, and close() hangs
            # forever. Dropping the last reference destroys the client without that abort.
            return
        close = getattr(producer, "close", None)
        if close is not None:
            close()
