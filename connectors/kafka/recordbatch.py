"""Kafka record batches (magic v2): parsing and CRC-32C.

Record batch v2 layout (all big-endian)
---------------------------------------
``baseOffset:int64 batchLength:int32 partitionLeaderEpoch:int32 magic:int8 crc:uint32 attributes:int16
lastOffsetDelta:int32 baseTimestamp:int64 maxTimestamp:int64 producerId:int64 producerEpoch:int16
baseSequence:int32 recordCount:int32 records...`` (61-byte header; ``batchLength`` counts the bytes
after itself). ``crc`` is CRC-32C (Castagnoli) of everything from ``attributes`` to the batch end.
Attributes: bits 0-2 compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), bit 3 timestamp type
(1 = LogAppendTime: every record's timestamp is ``maxTimestamp``), bit 4 transactional, bit 5 control.
If compressed, the bytes after ``recordCount`` are one compressed blob holding the records.

Each record: ``length:varint attributes:int8 timestampDelta:varlong offsetDelta:varint
keyLength:varint key valueLength:varint value headerCount:varint [headerKeyLength:varint headerKey
headerValueLength:varint headerValue]*``. Varints are zig-zag encoded base-128 (protobuf style);
a length of -1 means null. A control batch holds one record whose key is ``version:int16 type:int16``
(type 0 = ABORT, 1 = COMMIT).

A Fetch response may end with a truncated batch (the broker cuts at ``max_bytes``):
:func:`parse_record_batches` reports its bytes, and the reader re-fetches it from its base offset
(doubling the fetch size if not even one batch fits).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass, field
from typing import Final

from .protocol import KafkaProtocolError, Reader

__all__ = ["CONTROL_ABORT", "CONTROL_COMMIT", "RecordBatch", "crc32c", "parse_record_batches"]

_ATTR_COMPRESSION_MASK: Final = 0x07
_ATTR_LOG_APPEND_TIME: Final = 0x08
_ATTR_TRANSACTIONAL: Final = 0x10
_ATTR_CONTROL: Final = 0x20
_COMPRESSION_NAMES: Final = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

#: Control record types (the key of a control batch's record).
CONTROL_ABORT: Final = 0
CONTROL_COMMIT: Final = 1

_BATCH_HEADER: Final = struct.Struct(">qiibIhiqqqhii")  # 61 bytes, see module docstring
_LOG_OVERHEAD: Final = 12  # baseOffset + batchLength


# -- CRC-32C --------------------------------------------------------------------------------------


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # reflected Castagnoli polynomial
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE: Final = _crc32c_table()


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli), as used by Kafka record batches. Pure Python: ~5 MB/s (markers, tests)."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- record batches -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RawRecord:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class RecordBatch:
    """One parsed magic-v2 record batch."""

    base_offset: int
    last_offset_delta: int
    partition_leader_epoch: int
    attributes: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: tuple[_RawRecord, ...]
    #: The header's CRC-32C and the bytes it covers (for :meth:`crc_matches` after parsing unverified).
    crc: int = 0
    crc_data: memoryview | None = field(default=None, compare=False, repr=False)

    def crc_matches(self) -> bool:
        """Whether the batch's CRC-32C matches its bytes (False if they were not kept)."""
        return self.crc_data is not None and crc32c(self.crc_data) == self.crc

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _ATTR_CONTROL)

    @property
    def compression(self) -> str:
        code = self.attributes & _ATTR_COMPRESSION_MASK
        return _COMPRESSION_NAMES.get(code, f"unknown({code})")

    def control_types(self) -> list[int]:
        """The control record types of a control batch (0 = ABORT, 1 = COMMIT)."""
        types = []
        for record in self.records:
            if record.key is None or len(record.key) < 4:
                raise KafkaProtocolError(f"control record at offset {record.offset} has a malformed key")
            _version, control_type = struct.unpack_from(">hh", record.key)
            types.append(control_type)
        return types


def _decompress(codec: int, data: memoryview, base_offset: int) -> bytes | memoryview:
    if codec == 0:
        return data
    if codec == 1:
        try:
            return gzip.decompress(bytes(data))
        except (OSError, EOFError, zlib.error) as exc:
            raise KafkaProtocolError(f"batch at offset {base_offset}: bad gzip data: {exc}") from exc
    name = _COMPRESSION_NAMES.get(codec, f"unknown codec {codec}")
    raise KafkaProtocolError(
        f"batch at offset {base_offset} is compressed with {name}, which the audit reader does not "
        "support (only none and gzip). Produce test data with compression.type=none or gzip."
    )


def _parse_records(
    data: bytes | memoryview, count: int, batch: tuple[int, int, int, int]
) -> list[_RawRecord]:
    base_offset, base_timestamp, max_timestamp, attributes = batch
    reader = Reader(data)
    records = []
    for _ in range(count):
        length = reader.varint()
        start = reader.pos
        reader.int8()  # record attributes: unused
        timestamp_delta = reader.varint()
        offset_delta = reader.varint()
        key = reader.varbytes()
        value = reader.varbytes()
        headers = []
        for _ in range(reader.varint()):
            header_key = reader.varbytes()
            if header_key is None:
                raise KafkaProtocolError(f"null header key in batch at offset {base_offset}")
            headers.append((header_key.decode(), reader.varbytes()))
        if reader.pos - start != length:
            raise KafkaProtocolError(
                f"record at offset {base_offset + offset_delta}: length {length} but {reader.pos - start} "
                "bytes parsed"
            )
        timestamp = max_timestamp if attributes & _ATTR_LOG_APPEND_TIME else base_timestamp + timestamp_delta
        records.append(_RawRecord(base_offset + offset_delta, timestamp, key, value, tuple(headers)))
    if reader.pos != len(reader.buf):
        raise KafkaProtocolError(f"batch at offset {base_offset}: {len(reader.buf) - reader.pos} stray bytes")
    return records


def parse_record_batches(
    data: bytes | memoryview, *, verify_crc: bool = True
) -> tuple[list[RecordBatch], int]:
    """Parse the ``records`` field of a Fetch response partition.

    Returns ``(complete batches, number of trailing bytes that did not form a complete batch)``.
    A non-zero second value means the broker cut the last batch at the fetch size limit.

    :raises KafkaProtocolError: on a legacy (magic < 2) message set, a CRC mismatch, an unsupported
        compression codec or malformed records.
    """
    view = memoryview(data)
    batches: list[RecordBatch] = []
    pos = 0
    while pos < len(view):
        if len(view) - pos < _BATCH_HEADER.size:
            break  # truncated header
        base_offset, batch_length = struct.unpack_from(">qi", view, pos)
        end = pos + _LOG_OVERHEAD + batch_length
        if end > len(view):
            break  # truncated trailing batch
        (
            _,
            _,
            leader_epoch,
            magic,
            crc,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        ) = _BATCH_HEADER.unpack_from(view, pos)
        if magic != 2:
            raise KafkaProtocolError(
                f"message set at offset {base_offset} has magic {magic}; only record batches v2 (magic 2) "
                "are supported"
            )
        if batch_length < _BATCH_HEADER.size - _LOG_OVERHEAD:
            raise KafkaProtocolError(f"batch at offset {base_offset} has impossible length {batch_length}")
        if verify_crc:
            actual = crc32c(view[pos + 21 : end])  # 21 = offset of `attributes` in the batch
            if actual != crc:
                raise KafkaProtocolError(
                    f"CRC-32C mismatch in batch at offset {base_offset}: "
                    f"header {crc:#010x}, data {actual:#010x}"
                )
        payload = _decompress(
            attributes & _ATTR_COMPRESSION_MASK, view[pos + _BATCH_HEADER.size : end], base_offset
        )
        records = _parse_records(payload, count, (base_offset, base_timestamp, max_timestamp, attributes))
        batches.append(
            RecordBatch(
                base_offset=base_offset,
                last_offset_delta=last_offset_delta,
                partition_leader_epoch=leader_epoch,
                attributes=attributes,
                base_timestamp=base_timestamp,
                max_timestamp=max_timestamp,
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                base_sequence=base_sequence,
                records=tuple(records),
                crc=crc,
                crc_data=view[pos + 21 : end],
            )
        )
        pos = end
    return batches, len(view) - pos
