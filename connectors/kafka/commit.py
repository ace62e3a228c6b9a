"""Commit points of Kafka splits: where a split's checkpoint becomes final.

:class:`KafkaTransactionalCommitPoint` (exactly-once) owns the split's transactional producer
(``transactional.id = "<prefix>-<topic>-<partition>"``). Every output produced from the split's
records and timers goes into that producer's open transaction; a checkpoint commits one transaction
holding those outputs, the split's checkpoint marker, and the partition's next offset (plus the
marker pointer) via ``send_offsets_to_transaction``. Whoever owns the split next calls
``init_transactions()`` with the same id, which fences this owner and aborts its open transaction.

:class:`KafkaOffsetsCommitPoint` (at-least-once) writes the marker with an idempotent producer and
then commits the pointer and the offset with plain synchronous offset commits. It cannot fence a
previous owner.

What is stored, and why in two places, is described in :mod:`eventapp.connectors.kafka.metadata`;
how it is read back in :mod:`eventapp.connectors.kafka.offsets`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal, NoReturn, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.errors import CheckpointError, SupersededError
from eventapp.runtime.faults import fault_point

from .config import KafkaCommitConfig, parse_split
from .errors import (
    ProducerFencedError,
    describe_kafka_error,
    fencing_recorded,
    forget_producer,
    is_fencing_error,
    kafka_error_of,
    record_fencing,
    unwrap_kafka_error,
)
from .metadata import CheckpointMarker, encode_metadata
from .offsets import (
    CHECKPOINT_TOPIC_PARTITION,
    CommittedSplitState,
    _can_scan,
    ensure_checkpoint_topic,
    group_metadata,
    read_committed_checkpoints,
)
from .ownership import SplitOwnership, instance_id

__all__ = [
    "KafkaOffsetsCommitPoint",
    "KafkaTransactionalCommitPoint",
    "ProducerFencedError",
    "read_committed_checkpoints",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")
_State = Literal["new", "ready", "failed", "closed"]

_group_metadata_cache: dict[tuple[str, str], Any] = {}
_group_metadata_lock = threading.Lock()


def _cached_group_metadata(config: KafkaCommitConfig, group_id: str) -> Any:
    """Serialized group metadata per (bootstrap, group): it only names the group (static assignment)."""
    key = (config.bootstrap_servers, group_id)
    with _group_metadata_lock:
        cached = _group_metadata_cache.get(key)
    if cached is None:
        cached = group_metadata(config, group_id)
        with _group_metadata_lock:
            _group_metadata_cache[key] = cached
    return cached


def _ms(since: float) -> float:
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


class _KafkaCommitPointBase:
    """Shared parts: the split, its producer, the marker, recovery of the committed checkpoint."""

    #: Whether recover() fences the split's previous owner before reading the committed checkpoint.
    _fences_previous_owner = False

    def __init__(self, config: KafkaCommitConfig, split: str) -> None:
        self._config = config
        self.split = split
        self._topic, self._partition = parse_split(split)
        self._producer: Producer | None = None
        self._state: _State = "new"
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

    def _require(self, state: _State, action: str) -> Producer:
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
        self.timings["read_committed_ms"] = _ms(began)
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
        self.timings["flush_ms"] = _ms(began)
        if remaining:
            raise CheckpointError(
                f"checkpoint {marker.checkpoint_id} of split {self.split!r}: {remaining} records (outputs "
                f"and marker) were not acknowledged within {timeout}s"
            )
        if delivery.error is not None:
            if is_fencing_error(delivery.error):
                record_fencing(producer, delivery.error)
            raise KafkaException(delivery.error)
        if delivery.offset is None or delivery.offset < 0:
            raise CheckpointError(
                f"checkpoint {marker.checkpoint_id} of split {self.split!r}: the marker was delivered "
                f"without an offset"
            )
        return delivery.offset

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        forget_producer(producer)
        if self._state != "ready":
            # After a failure, Producer.close() aborts the open transaction without a timeout: on
            # Tansu 0.6.0 a fenced producer's EndTxn gets its connection dropped, and close() hangs
            # forever. Dropping the last reference destroys the client without that abort.
            return
        close = getattr(producer, "close", None)
        if close is not None:
            close()


class KafkaTransactionalCommitPoint(_KafkaCommitPointBase):
    """Exactly-once commit point of one Kafka split (see the module docstring).

    Lifecycle: ``recover()`` (fences the previous owner, returns the committed checkpoint, opens a
    transaction) -> sinks write into :attr:`transaction` -> ``commit(checkpoint)`` (commits the
    transaction with the checkpoint, opens the next one) ... -> ``close()`` (aborts the open
    transaction: outputs since the last checkpoint are discarded, like the state they came from).

    After a failed commit the transaction is aborted and the commit point refuses further work until
    :meth:`recover` is called again (the runtime must roll the split back to the committed checkpoint).
    A fenced producer raises :class:`ProducerFencedError`.
    """

    _fences_previous_owner = True

    def __init__(self, config: KafkaCommitConfig, split: str) -> None:
        super().__init__(config, split)
        self.transactional_id = config.transactional_id(split)
        self._group_md: Any = None
        self._pointer_md: Any = None
        self._ownership = SplitOwnership(config, split) if _can_scan(config) else None

    def _step_back_if_superseded(self, action: str, cause: BaseException | None = None) -> None:
        """Raise SupersededError if a newer instance claimed the split (ownership module)."""
        try:
            newer = None if self._ownership is None else self._ownership.newer_claim()
        except CheckpointError as exc:
            if cause is None:
                raise
            # Already handling a failure: report that one, not the failed look at the claims.
            log.warning("kafka.split.claims_unreadable", **self._log_context(), error=str(exc))
            return
        if newer is None:
            return
        self._state = "failed"
        log.warning(
            "kafka.split.superseded",
            **self._log_context(),
            action=action,
            newer_owner=newer.instance,
            newer_claim_offset=newer.offset,
        )
        raise SupersededError(
            f"split {self.split!r}: this instance ({instance_id()}) was superseded by a newer one, "
            f"{newer.describe()}; it stops without fencing it (could not {action}). The newer instance "
            f"owns the split now; this one must not be restarted in its place.",
            split=self.split,
            transactional_id=self.transactional_id,
        ) from cause

    def _log_context(self) -> dict[str, Any]:
        return {**super()._log_context(), "transactional_id": self.transactional_id}

    @property
    def transaction(self) -> Producer | None:
        """The split's transactional producer, with an open transaction, once :meth:`recover` succeeded.

        ``None`` before that, after a failed commit and after :meth:`close` (it does not raise: the
        ``CommitPoint`` protocol check reads it). Create sink writers after ``recover()``.
        """
        return self._producer if self._state == "ready" else None

    def recover(self, *, has_committed_snapshots: bool = True) -> CommittedCheckpoint | None:
        """Fence the previous owner (``init_transactions`` aborts its open transaction), read the
        committed checkpoint, open a transaction."""
        if self._state == "closed":
            raise CheckpointError(f"commit point of split {self.split!r} is closed")
        self._close_producer()
        self._state = "new"
        self.timings = {}
        began = time.perf_counter()
        ensure_checkpoint_topic(self._config)
        self._group_md = _cached_group_metadata(self._config, self._config.group_id)
        self._pointer_md = _cached_group_metadata(self._config, self._config.pointer_group_id)
        if self._ownership is not None:
            step = time.perf_counter()
            # Recovering again in this process (after being fenced): has a newer instance claimed the
            # split since this process's previous claim? Then step back, else claim it afresh.
            self._step_back_if_superseded("recover the split again")
            self._ownership.claim()
            self._step_back_if_superseded("restore the split")
            self.timings["claim_ms"] = _ms(step)
        producer = Producer(self._config.producer_settings(self.transactional_id))
        forget_producer(producer)  # a new object may reuse the id of a dead, fenced one
        fault_point("recover.before_init_transactions")
        step = time.perf_counter()
        try:
            producer.init_transactions(self._config.operation_timeout_s)
        except KafkaException as exc:
            error = kafka_error_of(exc)
            raise CheckpointError(
                f"init_transactions for transactional.id {self.transactional_id!r} (split {self.split!r}) "
                f"failed: {describe_kafka_error(error, exc)}. Check that the brokers are reachable and "
                f"support transactions, and that transaction_timeout_ms "
                f"({self._config.transaction_timeout_ms}) is within the brokers' transaction.max.timeout.ms"
            ) from exc
        self.timings["init_transactions_ms"] = _ms(step)
        self._producer = producer
        self._state = "failed"  # until the transaction is open
        checkpoint = self._read_committed(has_committed_snapshots)
        try:
            producer.begin_transaction()
        except (KafkaException, SystemError) as exc:
            self._raise_failure("begin the first transaction", exc, None)
        self._state = "ready"
        self.timings["recover_ms"] = _ms(began)
        self._log_recovered(checkpoint)
        return checkpoint

    def commit(self, checkpoint: CommittedCheckpoint) -> None:
        """Commit the open transaction with ``checkpoint`` (marker, offset, pointer), open the next one."""
        producer = self._require("ready", f"commit checkpoint {checkpoint.checkpoint_id}")
        began = time.perf_counter()
        metadata = encode_metadata(checkpoint.checkpoint_id, checkpoint.snapshot)
        timeout = self._config.operation_timeout_s
        action = f"commit checkpoint {checkpoint.checkpoint_id}"
        try:
            marker_offset = self._produce_marker(producer, self._marker(checkpoint, self.transactional_id))
            step = time.perf_counter()
            if checkpoint.position is not None:
                offsets = [
                    TopicPartition(self._topic, self._partition, checkpoint.position, metadata=metadata)
                ]
                self._retrying(lambda: producer.send_offsets_to_transaction(offsets, self._group_md, timeout))
            pointer = [TopicPartition(self._topic, self._partition, marker_offset, metadata=metadata)]
            self._retrying(lambda: producer.send_offsets_to_transaction(pointer, self._pointer_md, timeout))
            self.timings["send_offsets_ms"] = _ms(step)
            step = time.perf_counter()
            self._retrying(lambda: producer.commit_transaction(timeout))
            self.timings["commit_transaction_ms"] = _ms(step)
        except (KafkaException, SystemError) as exc:
            self._raise_failure(action, exc, checkpoint)
        except CheckpointError as exc:
            self._raise_failure(action, exc, checkpoint)
        try:
            producer.begin_transaction()
        except (KafkaException, SystemError) as exc:
            self._raise_failure(
                f"begin the transaction after checkpoint {checkpoint.checkpoint_id}", exc, None
            )
        self.timings["commit_ms"] = _ms(began)
        log.debug(
            "kafka.commit_point.committed",
            **self._log_context(),
            checkpoint_id=checkpoint.checkpoint_id,
            snapshot=checkpoint.snapshot,
            position=checkpoint.position,
            marker_offset=marker_offset,
            **self.timings,
        )

    def abort(self) -> None:
        """Discard everything written since the last commit and open a new transaction."""
        producer = self._require("ready", "abort")
        try:
            producer.abort_transaction(self._config.operation_timeout_s)
            producer.begin_transaction()
        except (KafkaException, SystemError) as exc:
            self._raise_failure("abort the open transaction", exc, None, abort=False)
        log.info("kafka.commit_point.aborted", **self._log_context())

    def close(self) -> None:
        """Abort the open transaction (uncheckpointed outputs are discarded) and release the producer."""
        if self._state == "closed":
            return
        producer = self._producer
        if producer is not None and self._state == "ready":
            if fencing_recorded(producer) is not None:
                self._state = "failed"  # fenced: nothing to abort (see _close_producer)
            else:
                try:
                    producer.abort_transaction(min(self._config.operation_timeout_s, 10.0))
                except (KafkaException, SystemError) as exc:
                    self._state = "failed"
                    log.warning(
                        "kafka.commit_point.abort_on_close_failed",
                        **self._log_context(),
                        error=describe_kafka_error(unwrap_kafka_error(exc), exc),
                        hint="the next owner's init_transactions aborts it (or the broker after "
                        "transaction.timeout.ms)",
                    )
        self._close_producer()
        self._state = "closed"
        log.debug("kafka.commit_point.closed", **self._log_context())

    # -- failures -------------------------------------------------------------------------------

    def _retrying(self, operation: Callable[[], T]) -> T:
        """Run a transactional operation, retrying errors librdkafka marks retriable (timeouts)."""
        deadline = time.monotonic() + self._config.operation_timeout_s
        while True:
            try:
                return operation()
            except KafkaException as exc:
                error = kafka_error_of(exc)
                if error is None or not error.retriable() or time.monotonic() > deadline:
                    raise
                log.warning(
                    "kafka.commit_point.retrying", **self._log_context(), error=describe_kafka_error(error)
                )
                time.sleep(0.05)

    def _abort_after_failure(self) -> KafkaError | None:
        """Abort the open transaction after a failure; the abort's own error, if any.

        On a producer in fatal state the abort fails at once with the fatal error (e.g. ``_FENCED``),
        which is how a failure such as ``_STATE``/``_FATAL`` is traced back to fencing.
        """
        producer = self._producer
        if producer is None:
            return None
        try:
            producer.abort_transaction(min(self._config.operation_timeout_s, 10.0))
        except (KafkaException, SystemError) as exc:
            error = unwrap_kafka_error(exc)
            if error is None:
                raise
            return error
        return None

    def _raise_failure(
        self,
        action: str,
        exc: BaseException,
        checkpoint: CommittedCheckpoint | None,
        *,
        abort: bool = True,
    ) -> NoReturn:
        """Abort the open transaction, then raise ProducerFencedError or CheckpointError."""
        self._state = "failed"
        error = unwrap_kafka_error(exc)
        if error is None and not isinstance(exc, CheckpointError):
            raise exc  # not a Kafka failure (a bug): let it through unchanged
        recorded = None if self._producer is None else fencing_recorded(self._producer)
        fencing = error if is_fencing_error(error) else recorded
        abort_error = None if not abort or fencing is not None else self._abort_after_failure()
        if fencing is None and is_fencing_error(abort_error):
            fencing = abort_error
        context = self._log_context()
        checkpoint_id = None if checkpoint is None else checkpoint.checkpoint_id
        if fencing is not None:
            self._step_back_if_superseded(action, exc)
            log.error(
                "kafka.commit_point.fenced",
                **context,
                checkpoint_id=checkpoint_id,
                action=action,
                error=describe_kafka_error(fencing),
            )
            raise ProducerFencedError(
                f"split {self.split!r}: could not {action}: the transactional producer "
                f"{self.transactional_id!r} was fenced by a newer owner of the split "
                f"({describe_kafka_error(fencing)}), which claimed it before this instance did. Its open "
                f"transaction is aborted; this instance must recover the split again (restart it: its "
                f"newer claim makes the other one step back).",
                split=self.split,
                transactional_id=self.transactional_id,
            ) from exc
        # Not recognisably fenced (on Tansu a fenced producer's commit can just time out): if a
        # newer instance claimed the split meanwhile, that is the real reason.
        self._step_back_if_superseded(action, exc)
        reason = describe_kafka_error(error, exc)
        log.error(
            "kafka.commit_point.commit_failed",
            **context,
            checkpoint_id=checkpoint_id,
            action=action,
            error=reason,
            abort_error=None if abort_error is None else describe_kafka_error(abort_error),
        )
        aborted = (
            "The open transaction was aborted"
            if abort_error is None
            else f"Aborting the open transaction failed too ({describe_kafka_error(abort_error)}); the "
            f"next owner's init_transactions aborts it"
        )
        raise CheckpointError(
            f"split {self.split!r}: could not {action}: {reason}. {aborted} (outputs since the last "
            f"committed checkpoint are discarded); the split must restart from its last committed "
            f"checkpoint (recover())."
        ) from exc


class KafkaOffsetsCommitPoint(_KafkaCommitPointBase):
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
        self.timings["recover_ms"] = _ms(began)
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
            self.timings["commit_offsets_ms"] = _ms(step)
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
        self.timings["commit_ms"] = _ms(began)
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
