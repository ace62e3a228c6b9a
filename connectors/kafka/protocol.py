"""The Kafka wire protocol's classic encoding, as the transaction-aware log reader
(:mod:`eventapp.connectors.kafka.txnlog`) speaks it: error codes, a request-string encoder, a response
reader, and the reader's two errors.

Only non-"flexible" API versions are used, so there are no compact strings and no tagged fields.
Every request is ``int32 size | header | body``; the request header (v1) is
``api_key:int16 api_version:int16 correlation_id:int32 client_id:nullable_string``; the response is
``int32 size | correlation_id:int32 | body``. Strings are ``int16 length + UTF-8`` (-1 = null), arrays
are ``int32 count + items`` (-1 = null), ``bytes`` are ``int32 length + data`` (-1 = null). Inside
record batches, lengths are zig-zag encoded base-128 varints (protobuf style), -1 meaning null.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "NO_ENTRY",
    "NO_ERROR",
    "OFFSET_OUT_OF_RANGE",
    "RETRIABLE_ERRORS",
    "AuditError",
    "KafkaProtocolError",
    "Reader",
    "encode_string",
]

# -- error codes ----------------------------------------------------------------------------------

NO_ERROR: Final = 0
OFFSET_OUT_OF_RANGE: Final = 1
#: Not a Kafka error code: the Fetch response had no entry for the partition (see
#: :func:`eventapp.connectors.kafka.txnlog._fetch`).
NO_ENTRY: Final = -10_001
# Errors after which the partition leader may have moved: refresh metadata and retry.
RETRIABLE_ERRORS: Final = frozenset(
    {
        3,  # UNKNOWN_TOPIC_OR_PARTITION (metadata not propagated yet)
        5,  # LEADER_NOT_AVAILABLE
        6,  # NOT_LEADER_OR_FOLLOWER
        7,  # REQUEST_TIMED_OUT
        8,  # BROKER_NOT_AVAILABLE
        9,  # REPLICA_NOT_AVAILABLE
        13,  # NETWORK_EXCEPTION
        56,  # KAFKA_STORAGE_ERROR
        74,  # FENCED_LEADER_EPOCH
        75,  # UNKNOWN_LEADER_EPOCH
    }
)


class KafkaProtocolError(Exception):
    """The broker answered something this client cannot parse or does not support."""


class AuditError(Exception):
    """The topic could not be audited completely (missing data, broker errors, timeouts)."""


# -- primitive encoding ---------------------------------------------------------------------------


def encode_string(value: str | None) -> bytes:
    """A (nullable) string in the classic encoding: ``int16 length + UTF-8``, length -1 for ``None``."""
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


class Reader:
    """Sequential big-endian reader over a response body (classic, non-flexible encoding)."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes | memoryview, pos: int = 0) -> None:
        self.buf = memoryview(buf)
        self.pos = pos

    def _unpack(self, fmt: str, size: int) -> int:
        if self.pos + size > len(self.buf):
            raise KafkaProtocolError(f"response truncated at byte {self.pos} (needed {size} more)")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return int(value)

    def int8(self) -> int:
        return self._unpack(">b", 1)

    def int16(self) -> int:
        return self._unpack(">h", 2)

    def int32(self) -> int:
        return self._unpack(">i", 4)

    def int64(self) -> int:
        return self._unpack(">q", 8)

    def raw(self, size: int) -> memoryview:
        if size < 0 or self.pos + size > len(self.buf):
            raise KafkaProtocolError(f"bad length {size} at byte {self.pos}")
        view = self.buf[self.pos : self.pos + size]
        self.pos += size
        return view

    def nullable_string(self) -> str | None:
        size = self.int16()
        return None if size < 0 else bytes(self.raw(size)).decode()

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise KafkaProtocolError(f"unexpected null string at byte {self.pos}")
        return value

    def nullable_bytes(self) -> memoryview | None:
        size = self.int32()
        return None if size < 0 else self.raw(size)

    def array_length(self) -> int:
        return max(self.int32(), 0)  # -1 (null array) reads as empty

    def varint(self) -> int:
        """A zig-zag encoded base-128 varint (Kafka's record-level varint/varlong)."""
        shift = 0
        raw = 0
        while True:
            if self.pos >= len(self.buf):
                raise KafkaProtocolError("varint runs past the end of the data")
            byte = self.buf[self.pos]
            self.pos += 1
            raw |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise KafkaProtocolError("varint longer than 10 bytes")
        return (raw >> 1) ^ -(raw & 1)

    def varbytes(self) -> bytes | None:
        size = self.varint()
        return None if size < 0 else bytes(self.raw(size))
