"""Commit points of Kafka splits: where a split's checkpoint becomes final (what both share is in
:mod:`eventapp.connectors.kafka.commit_base`).

:class:`KafkaTransactionalCommitPoint` (exactly-once) owns the split's transactional producer
(``transactional.id = "<prefix>-<topic>-<partition>"``) as the split's
:class:`~eventapp.connectors.kafka.transaction.KafkaTransaction`. Every output produced from the
split's records and timers goes into that open transaction; a checkpoint commits one transaction
holding those outputs, the split's checkpoint marker, and the partition's next offset (plus the
marker pointer) via ``send_offsets_to_transaction``. Whoever owns the split next calls
``init_transactions()`` with the same id, which fences this owner and aborts its open transaction.

The at-least-once commit point is
:class:`~eventapp.connectors.kafka.commit_offsets.KafkaOffsetsCommitPoint`: it writes the marker
with an idempotent producer, then commits the pointer and the offset with plain synchronous offset
commits. It cannot fence a previous owner.

What is stored, and why in two places, is described in :mod:`eventapp.connectors.kafka.metadata`;
how it is read back in :mod:`eventapp.connectors.kafka.offsets`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.errors import CheckpointError, SupersededError
from eventapp.runtime.faults import fault_point

from .commit_base import KafkaCommitPointBase, cached_group_metadata, ms_since
from .config import KafkaCommitConfig
from .errors import (
    ProducerFencedError,
    describe_kafka_error,
    is_fencing_error,
    kafka_error_of,
    unwrap_kafka_error,
)
from .metadata import encode_metadata
from .offsets import _can_scan, ensure_checkpoint_topic
from .ownership import SplitOwnership, instance_id
from .transaction import KafkaTransaction

__all__ = ["KafkaTransactionalCommitPoint"]

log = structlog.get_logger(__name__)

T = TypeVar("T")


class KafkaTransactionalCommitPoint(KafkaCommitPointBase):
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
        claims = _can_scan(config) and config.ownership_claims
        self._ownership = SplitOwnership(config, split) if claims else None
        #: The transaction of the current producer (a new one per recovery).
        self._transaction: KafkaTransaction | None = None

    def _note_fencing(self, error: KafkaError) -> None:
        if self._transaction is not None:
            self._transaction.record_fencing(error)

    def _fencing(self) -> KafkaError | None:
        return None if self._transaction is None else self._transaction.fencing

    def _close_producer(self) -> None:
        super()._close_producer()
        self._transaction = None

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
    def transaction(self) -> KafkaTransaction | None:
        """The split's open transaction (its transactional producer), once :meth:`recover` succeeded.

        ``None`` before that, after a failed commit and after :meth:`close` (it does not raise: the
        ``CommitPoint`` protocol check reads it). Create sink writers after ``recover()``.
        """
        return self._transaction if self._state == "ready" else None

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
        self._group_md = cached_group_metadata(self._config, self._config.group_id)
        self._pointer_md = cached_group_metadata(self._config, self._config.pointer_group_id)
        if self._ownership is not None:
            step = time.perf_counter()
            # Recovering again in this process (after being fenced): has a newer instance claimed the
            # split since this process's previous claim? Then step back, else claim it afresh.
            self._step_back_if_superseded("recover the split again")
            self._ownership.claim()
            self._step_back_if_superseded("restore the split")
            self.timings["claim_ms"] = ms_since(step)
        producer = Producer(self._config.producer_settings(self.transactional_id))
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
        self.timings["init_transactions_ms"] = ms_since(step)
        self._producer = producer
        self._transaction = KafkaTransaction(self.split, self.transactional_id, producer)
        self._state = "failed"  # until the transaction is open
        if self._ownership is not None:
            # A process stopped inside init_transactions (its claim checked before it) may fence a
            # newer instance that claimed the split meanwhile: it must not keep the split.
            self._step_back_if_superseded("keep the split after fencing its newer owner")
        checkpoint = self._read_committed(has_committed_snapshots)
        try:
            producer.begin_transaction()
        except (KafkaException, SystemError) as exc:
            self._raise_failure("begin the first transaction", exc, None)
        self._state = "ready"
        self.timings["recover_ms"] = ms_since(began)
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
            self.timings["send_offsets_ms"] = ms_since(step)
            step = time.perf_counter()
            self._retrying(lambda: producer.commit_transaction(timeout))
            self.timings["commit_transaction_ms"] = ms_since(step)
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
            if self._fencing() is not None:
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
        recorded = self._fencing()
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
