"""The Kafka sink: one writer per input split.

* ``EXACTLY_ONCE``: the writer produces into ``SinkContext.transaction``, the input split's
  :class:`~eventapp.connectors.kafka.transaction.KafkaTransaction` (owned by the split's
  :class:`~eventapp.connectors.kafka.commit.KafkaTransactionalCommitPoint`); the records become
  visible to ``read_committed`` readers when the split's checkpoint commits.
* ``AT_LEAST_ONCE``: the writer owns an idempotent producer (``acks=all``); ``flush()`` (called before
  every checkpoint commits) waits for every acknowledgement and raises :class:`~eventapp.errors.SinkError`
  if any delivery failed.
* ``NONE``: fire and forget; failures are logged.

In every mode a full local queue (``BufferError``) is handled by serving delivery reports and
retrying: records are never dropped. Delivery failures reported by callbacks surface on the next
``write`` or ``flush`` as a SinkError naming topic and partition (:class:`ProducerFencedError` when
the split's transactional producer was fenced).

When the job runs exactly-once (the context carries a transaction), the writer always writes into
the transaction, whatever its configured guarantee: writing outside it would let output escape a
rolled-back checkpoint. The transaction belongs to the source's cluster: a sink writing to another
cluster must run at-least-once in an at-least-once job.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, NoReturn, TypeVar

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from eventapp.errors import ConfigurationError, SinkError, describe_record
from eventapp.sink import SinkContext

from .config import DeliveryGuarantee, KafkaSinkConfig
from .errors import (
    ProducerFencedError,
    describe_kafka_error,
    is_fencing_error,
    unwrap_kafka_error,
)
from .transaction import KafkaTransaction

__all__ = ["KafkaSink", "KafkaSinkWriter"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Serve delivery reports every this many writes (keeps callbacks and memory bounded).
_POLL_EVERY: Final = 1_000
#: ``produce`` errors of a transactional producer in fatal state (the cause is not in the message).
_FATAL_STATE_CODES: Final[frozenset[int]] = frozenset({KafkaError._FATAL})
#: At most this many failures are kept in full for the error message.
_MAX_KEPT_FAILURES: Final = 10


class KafkaSink(Generic[T]):
    """A Kafka sink (implements :class:`eventapp.sink.Sink`)."""

    def __init__(self, config: KafkaSinkConfig) -> None:
        if not isinstance(config, KafkaSinkConfig):
            raise ConfigurationError(f"KafkaSink needs a KafkaSinkConfig, got {config!r}")
        self._config = config

    @property
    def config(self) -> KafkaSinkConfig:
        return self._config

    @property
    def name(self) -> str:
        return self._config.display_name

    def __repr__(self) -> str:
        return f"KafkaSink({self.name!r}, {self._config.delivery_guarantee.name})"

    def create_writer(self, context: SinkContext) -> KafkaSinkWriter[T]:
        return KafkaSinkWriter(self._config, context)


class KafkaSinkWriter(Generic[T]):
    """Writes one input split's output (see the module docstring)."""

    def __init__(self, config: KafkaSinkConfig, context: SinkContext) -> None:
        self._config = config
        self._context = context
        self._name = config.display_name
        transaction = context.transaction
        if transaction is not None and not isinstance(transaction, KafkaTransaction):
            raise ConfigurationError(
                f"Kafka sink {self._name!r}: the split's transaction is {transaction.describe()}, not "
                f"a Kafka transaction; exactly-once Kafka output needs a KafkaSource (its commit point "
                f"owns the split's Kafka transaction). Use DeliveryGuarantee.AT_LEAST_ONCE for this sink."
            )
        if transaction is None and config.delivery_guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            raise ConfigurationError(
                f"Kafka sink {self._name!r} is EXACTLY_ONCE but split {context.split!r} has no Kafka "
                f"transaction: run the job with CheckpointConfig(mode=CheckpointingMode.EXACTLY_ONCE) and a "
                f"KafkaSource, or use DeliveryGuarantee.AT_LEAST_ONCE"
            )
        self._transaction = transaction
        self._transactional = transaction is not None
        self._owns_producer = transaction is None
        if transaction is not None:
            self._producer: Producer = transaction.producer
            self._guarantee = DeliveryGuarantee.EXACTLY_ONCE
        else:
            self._producer = Producer(config.producer_settings())
            self._guarantee = config.delivery_guarantee
        self._strict = self._guarantee is not DeliveryGuarantee.NONE
        self._encode = config.value_encoder.encode
        self._encoder_description = config.value_encoder.description
        self._topic = config.topic
        self._topic_selector = config.topic_selector
        self._key_selector = config.key_selector
        self._partition_selector = config.partition_selector
        self._headers_selector = config.headers_selector
        self._use_event_time = config.use_event_time
        self._writes = 0
        self._written = 0
        self._failed = 0
        self._failures: list[tuple[str | None, int | None, KafkaError]] = []
        self._fenced: KafkaError | None = None
        self._closed = False

    # -- delivery reports ---------------------------------------------------------------------------

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        if is_fencing_error(error):
            self._record_fencing(error)
        self._failed += 1
        if len(self._failures) < _MAX_KEPT_FAILURES:
            self._failures.append((message.topic(), message.partition(), error))
        if not self._strict:
            log.warning(
                "kafka.sink.delivery_failed",
                sink=self._name,
                split=self._context.split,
                topic=message.topic(),
                partition=message.partition(),
                error=describe_kafka_error(error),
            )

    def _raise_failures(self) -> None:
        if self._fenced is not None:
            raise ProducerFencedError(
                f"Kafka sink {self._name!r} (split {self._context.split!r}): the split's transactional "
                f"producer was fenced by a newer owner of the split ({describe_kafka_error(self._fenced)}); "
                f"this instance must stop processing the split",
                split=self._context.split,
            )
        if not self._failed or not self._strict:
            self._failures.clear()
            self._failed = 0
            return
        failed, failures = self._failed, list(self._failures)
        self._failures.clear()
        self._failed = 0
        listed = "; ".join(
            f"{topic}-{partition}: {describe_kafka_error(error)}" for topic, partition, error in failures
        )
        more = f" (and {failed - len(failures)} more)" if failed > len(failures) else ""
        raise SinkError(
            f"Kafka sink {self._name!r} (split {self._context.split!r}): {failed} record(s) could not be "
            f"delivered: {listed}{more}"
        )

    # -- SinkWriter ---------------------------------------------------------------------------------

    def write(self, value: T, timestamp: int | None) -> None:
        """Produce ``value`` (asynchronously; :meth:`flush` waits for it)."""
        if self._closed:
            self._raise_closed()
        if self._failed or self._fenced is not None:
            self._raise_failures()
        topic: str | None = self._topic
        if self._topic_selector is not None:
            topic = self._call("topic_selector", self._topic_selector, value) or self._topic
        if topic is None:
            raise SinkError(
                f"Kafka sink {self._name!r}: topic_selector returned no topic for "
                f"{describe_record(value)} and the sink has no default topic"
            )
        key = None
        key_selector = self._key_selector
        if key_selector is not None:
            try:
                key = key_selector(value)
            except Exception as exc:
                raise self._selector_failed("key_selector", value, exc) from exc
            if key is not None and type(key) is not str and not isinstance(key, bytes | str):
                raise SinkError(
                    f"Kafka sink {self._name!r}: key_selector returned {type(key).__name__} for "
                    f"{describe_record(value)}; it must return bytes, str or None"
                )
        partition = None
        if self._partition_selector is not None:
            partition = self._select_partition(self._partition_selector, value)
        try:
            payload = None if value is None else self._encode(value)
        except Exception as exc:
            raise SinkError(
                f"Kafka sink {self._name!r}: cannot serialize {describe_record(value)} for topic {topic!r} "
                f"with {self._encoder_description}: {type(exc).__name__}: {exc}"
            ) from exc
        report = self._on_delivery
        if timestamp is None or not self._use_event_time:
            timestamp = 0  # librdkafka's "now"
        headers = None
        if self._headers_selector is not None:
            selected = self._call("headers_selector", self._headers_selector, value)
            if selected:
                headers = list(selected.items()) if isinstance(selected, Mapping) else list(selected)
        producer = self._producer
        try:
            if partition is not None:
                producer.produce(
                    topic, payload, key, partition, on_delivery=report, timestamp=timestamp, headers=headers
                )
            elif headers is None:
                producer.produce(topic, payload, key, on_delivery=report, timestamp=timestamp)
            else:
                producer.produce(
                    topic, payload, key, on_delivery=report, timestamp=timestamp, headers=headers
                )
        except BufferError:
            self._produce_when_room(topic, payload, key, timestamp, headers, partition)
        except KafkaException as exc:
            self._raise_client_error(_produce_target(topic, partition), exc)
        self._written += 1
        self._writes += 1
        if self._writes >= _POLL_EVERY:
            self._writes = 0
            self._serve(producer.poll, 0)

    @property
    def records_written(self) -> int:
        """Values produced since the writer was created (see eventapp.sink.WriteCounter)."""
        return self._written

    def _select_partition(self, selector: Callable[[Any], int | None], value: Any) -> int | None:
        """``partition_selector(value)``: an int >= 0 or None, else a SinkError naming what it was."""
        try:
            partition = selector(value)
        except Exception as exc:
            raise self._selector_failed("partition_selector", value, exc) from exc
        if partition is None or (type(partition) is int and partition >= 0):
            return partition
        got = f"{partition!r}" if type(partition) is int else f"{type(partition).__name__} {partition!r:.50}"
        raise SinkError(
            f"Kafka sink {self._name!r}: partition_selector returned {got} for {describe_record(value)}; "
            f"it must return a partition number (int >= 0) or None (the producer's partitioner)"
        )

    def _produce_when_room(
        self, topic: str, payload: bytes | None, key: Any, timestamp: int, headers: Any, partition: int | None
    ) -> None:
        """The local queue is full: serve delivery reports (frees room) and retry. Never drop."""
        producer, report = self._producer, self._on_delivery
        selected: dict[str, Any] = {} if partition is None else {"partition": partition}
        while True:
            self._serve(producer.poll, 0.05)
            try:
                producer.produce(
                    topic, payload, key, on_delivery=report, timestamp=timestamp, headers=headers, **selected
                )
                return
            except BufferError:
                continue
            except KafkaException as exc:
                self._raise_client_error(_produce_target(topic, partition), exc)

    def _selector_failed(self, what: str, value: Any, exc: Exception) -> SinkError:
        return SinkError(
            f"Kafka sink {self._name!r}: {what} failed on {describe_record(value)}: "
            f"{type(exc).__name__}: {exc}"
        )

    def _serve(self, operation: Callable[[float], int], timeout: float) -> int:
        """``poll``/``flush`` with client errors (fatal errors surface here) turned into ours."""
        try:
            return operation(timeout)
        except (KafkaException, SystemError) as exc:
            self._raise_client_error("serving delivery reports failed", exc)

    def _raise_client_error(self, what: str, exc: BaseException) -> NoReturn:
        error = unwrap_kafka_error(exc)
        if error is None:
            raise exc
        if not is_fencing_error(error) and self._transactional and error.code() == KafkaError._STATE:
            # The transaction is in an abortable error state: the cause (e.g. PRODUCER_FENCED) is in
            # a delivery report that may still be on its way (librdkafka fails the in-flight batches
            # with it): serve reports for up to 2 s until it shows.
            until = time.monotonic() + 2.0
            while self._fencing() is None and time.monotonic() < until:
                with contextlib.suppress(KafkaException, SystemError):
                    self._producer.poll(0.05)
            error = self._fencing() or error
        if not is_fencing_error(error) and self._transactional and error.code() in _FATAL_STATE_CODES:
            error = self._fatal_cause() or error
        if is_fencing_error(error):
            self._record_fencing(error)
            self._raise_failures()
        where = f"Kafka sink {self._name!r} (split {self._context.split!r})"
        raise SinkError(f"{where}: {what}: {describe_kafka_error(error)}") from exc

    def _record_fencing(self, error: KafkaError) -> None:
        self._fenced = error
        if self._transaction is not None:
            self._transaction.record_fencing(error)

    def _fencing(self) -> KafkaError | None:
        """The fencing this writer, or another user of the split's transaction, saw."""
        if self._fenced is None and self._transaction is not None:
            return self._transaction.fencing
        return self._fenced

    def _fatal_cause(self) -> KafkaError | None:
        """The fatal error of the split's (dead) transactional producer: ``produce`` only says ``_FATAL``;
        ``abort_transaction`` on a producer in fatal state raises the real cause (e.g. ``_FENCED``)
        without touching the broker."""
        try:
            self._producer.abort_transaction(0.1)
        except (KafkaException, SystemError) as exc:
            return unwrap_kafka_error(exc)
        return None

    def _call(self, what: str, selector: Any, value: Any) -> Any:
        try:
            return selector(value)
        except Exception as exc:
            raise self._selector_failed(what, value, exc) from exc

    def flush(self) -> None:
        """Wait until every record written so far is acknowledged (or part of the open transaction).

        :raises SinkError: if any delivery failed or the timeout passed (NONE: never).
        """
        if self._closed:
            self._raise_closed()
        producer = self._producer
        if not self._strict:
            self._serve(producer.poll, 0)
            self._raise_failures()
            return
        timeout = self._config.flush_timeout_s
        deadline = time.monotonic() + timeout
        remaining = self._serve(producer.flush, timeout)
        while remaining and time.monotonic() < deadline:
            remaining = self._serve(producer.flush, max(0.0, deadline - time.monotonic()))
        self._raise_failures()
        if remaining:
            raise SinkError(
                f"Kafka sink {self._name!r} (split {self._context.split!r}): {remaining} record(s) not "
                f"acknowledged within {timeout}s (flush_timeout_s); are the brokers reachable?"
            )

    def _raise_closed(self) -> NoReturn:
        raise SinkError(f"Kafka sink {self._name!r} (split {self._context.split!r}): the writer is closed")

    def close(self) -> None:
        """Release the writer's own producer (waiting up to ``flush_timeout_s`` for pending records).
        The transactional producer of the split is not closed here (its commit point owns it)."""
        if self._closed:
            return
        self._closed = True
        if not self._owns_producer:
            return
        try:
            remaining = self._producer.flush(self._config.flush_timeout_s)
        except (KafkaException, SystemError) as exc:
            error = unwrap_kafka_error(exc)
            if error is None:
                raise
            log.warning(
                "kafka.sink.close_failed",
                sink=self._name,
                split=self._context.split,
                error=describe_kafka_error(error),
            )
            remaining = len(self._producer)
        if remaining:
            log.warning(
                "kafka.sink.closed_with_undelivered",
                sink=self._name,
                split=self._context.split,
                remaining=remaining,
                guarantee=self._guarantee.name,
            )
        close = getattr(self._producer, "close", None)
        if close is not None:
            close()


def _produce_target(topic: str, partition: int | None) -> str:
    where = f"topic {topic!r}" if partition is None else f"partition {partition} of topic {topic!r}"
    return f"cannot produce to {where}"
