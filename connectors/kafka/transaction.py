"""A split's Kafka transaction (:class:`eventapp.transaction.Transaction`): the split's
transactional producer and what is known about its fencing.

The split's :class:`~eventapp.connectors.kafka.commit.KafkaTransactionalCommitPoint` creates one
per recovery (a new producer, ``init_transactions``) and commits it with each checkpoint; the
split's Kafka sink writers produce into it. A fenced producer often says so only once, to whoever
sees it first (a sink writer's delivery report), and later calls fail with a generic
``_STATE``/``_FATAL``: whoever sees the fencing records it here, so that the commit point still
raises :class:`~eventapp.errors.ProducerFencedError` (and skips aborting: Tansu 0.6.0 drops the
connection on an EndTxn from a fenced producer, so the abort would hang until its timeout).
"""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, Producer

__all__ = ["KafkaTransaction"]


class KafkaTransaction:
    """The transactional producer of one split, with its fencing state."""

    __slots__ = ("_fencing", "_lock", "producer", "split", "transactional_id")

    def __init__(self, split: str, transactional_id: str, producer: Producer) -> None:
        self.split = split
        self.transactional_id = transactional_id
        self.producer = producer
        self._fencing: KafkaError | None = None
        # Delivery reports of a split's writers and its commit run on the checkpoint threads too.
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"Kafka transaction {self.transactional_id!r}"

    def __repr__(self) -> str:
        return (
            f"KafkaTransaction({self.split!r}, {self.transactional_id!r}, fenced={self.fencing is not None})"
        )

    @property
    def fencing(self) -> KafkaError | None:
        """The error that showed this producer was fenced by a newer owner, if one did."""
        with self._lock:
            return self._fencing

    def record_fencing(self, error: KafkaError) -> None:
        """Remember that the producer was fenced (the first error that showed it is kept)."""
        with self._lock:
            if self._fencing is None:
                self._fencing = error
