"""Kafka messages as source records: the envelope (:class:`KafkaRecord`), the slow decoding path
(key, headers, a timestamp extractor) and the error record of a message that cannot be decoded.

A record whose value (or key) cannot be decoded is not dropped and does not stop the reader: it is
returned as a ``SourceRecord`` with ``value=None``, ``raw`` = the payload and ``error`` = a
:class:`~eventapp.errors.SerializationError` naming topic, partition and offset, so the job's error
policy decides. The fast path (value only) is inlined in the reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from confluent_kafka import Message

from eventapp.errors import SerializationError, SourceError
from eventapp.source import SourceRecord

from .config import KafkaSourceConfig

__all__ = ["KafkaRecord", "decode_failure", "full_record"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KafkaRecord(Generic[T]):
    """A record with its Kafka envelope (``KafkaSourceConfig(as_kafka_record=True)``)."""

    key: Any
    value: T
    headers: tuple[tuple[str, bytes | None], ...]
    topic: str
    partition: int
    offset: int
    timestamp: int | None


def full_record(
    config: KafkaSourceConfig, split: str, message: Message, timestamp: int | None
) -> SourceRecord[Any]:
    """Slow path: envelope (``as_kafka_record``) and/or a timestamp extractor."""
    offset = message.offset()
    payload = message.value()
    value: Any
    try:
        value = None if payload is None else config.value_decoder.decode(payload)
    except Exception as exc:  # noqa: BLE001 - any decoder failure becomes an error record
        return decode_failure(config, split, message, payload, timestamp, "value", exc)
    key_decoder = config.key_decoder
    if key_decoder is not None:
        raw_key = message.key()
        try:
            key = None if raw_key is None else key_decoder.decode(raw_key)
        except Exception as exc:  # noqa: BLE001 - any decoder failure becomes an error record
            return decode_failure(config, split, message, raw_key, timestamp, "key", exc)
        headers = message.headers() or ()
        value = KafkaRecord(
            key=key,
            value=value,
            headers=tuple((str(h[0]), _header_bytes(h[1])) for h in headers)
            if isinstance(headers, list | tuple)
            else tuple((str(k), _header_bytes(v)) for k, v in headers.items()),
            topic=str(message.topic()),
            partition=int(message.partition() or 0),
            offset=int(offset or 0),
            timestamp=timestamp,
        )
    extractor = config.timestamp_extractor
    if extractor is not None:
        try:
            extracted = extractor(value)
            if not isinstance(extracted, int) or isinstance(extracted, bool):
                raise TypeError(f"returned {extracted!r}, not an int of epoch milliseconds")
        except Exception as exc:  # noqa: BLE001 - a failing extractor becomes an error record
            error = SourceError(
                f"timestamp extractor {getattr(extractor, '__qualname__', extractor)!r} failed on the "
                f"record at {message.topic()}-{message.partition()} offset {offset}: "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            return SourceRecord(split, None, timestamp, offset, raw=payload, error=error)
        timestamp = extracted
    return SourceRecord(split, value, timestamp, offset)


def decode_failure(
    config: KafkaSourceConfig,
    split: str,
    message: Message,
    raw: bytes | None,
    timestamp: int | None,
    what: str,
    exc: Exception,
) -> SourceRecord[Any]:
    """The error record of a message whose ``what`` (``"value"`` or ``"key"``) failed to decode."""
    decoder = config.value_decoder if what == "value" else config.key_decoder
    how = decoder.description if decoder is not None else "?"
    error = SerializationError(
        f"cannot decode the {what} of the record at {message.topic()}-{message.partition()} offset "
        f"{message.offset()} (topic {message.topic()!r}, partition {message.partition()}) with "
        f"{how}: {type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return SourceRecord(split, None, timestamp, message.offset(), raw=raw, error=error)


def _header_bytes(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value).encode()
