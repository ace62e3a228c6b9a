"""How librdkafka errors map onto eventapp's errors (:class:`eventapp.errors.ProducerFencedError`
is re-exported here and from ``eventapp.connectors.kafka``)."""

from __future__ import annotations

from typing import Final

from confluent_kafka import KafkaError, KafkaException

from eventapp.errors import ProducerFencedError

__all__ = [
    "FENCING_ERROR_CODES",
    "ProducerFencedError",
    "describe_kafka_error",
    "is_fencing_error",
    "kafka_error_of",
    "unwrap_kafka_error",
]

#: librdkafka / broker error codes that mean "another producer with the same transactional.id took
#: over": PRODUCER_FENCED (broker, KIP-588), _FENCED (librdkafka's local fatal code),
#: INVALID_PRODUCER_EPOCH (older brokers report fencing this way) and INVALID_PRODUCER_ID_MAPPING.
FENCING_ERROR_CODES: Final[frozenset[int]] = frozenset(
    {
        KafkaError.PRODUCER_FENCED,
        KafkaError._FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
    }
)


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    """The :class:`KafkaError` carried by a ``KafkaException`` (``None`` for anything else)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def unwrap_kafka_error(exc: BaseException) -> KafkaError | None:
    """The KafkaError behind ``exc``: a ``KafkaException``, or a ``SystemError`` caused by one.

    confluent-kafka raises ``SystemError("... returned a result with an exception set")`` from
    ``flush()``/``poll()`` when a fatal producer error (e.g. ``_FENCED``) surfaces while a delivery
    callback runs; the real ``KafkaException`` is its ``__cause__``.
    """
    error = kafka_error_of(exc)
    if error is None and isinstance(exc, SystemError) and exc.__cause__ is not None:
        error = kafka_error_of(exc.__cause__)
    return error


def is_fencing_error(error: KafkaError | None) -> bool:
    """True if ``error`` means the producer was fenced by a newer instance."""
    return error is not None and error.code() in FENCING_ERROR_CODES


def describe_kafka_error(error: KafkaError | None, fallback: BaseException | None = None) -> str:
    """``NAME (code N, fatal, ...): reason`` for logs and error messages."""
    if error is None:
        return f"{type(fallback).__name__}: {fallback}" if fallback is not None else "unknown error"
    flags = [
        flag
        for flag, on in (
            ("fatal", error.fatal()),
            ("retriable", error.retriable()),
            ("transaction must be aborted", error.txn_requires_abort()),
        )
        if on
    ]
    extra = f", {', '.join(flags)}" if flags else ""
    return f"{error.name()} (code {error.code()}{extra}): {error.str()}"
