"""A transaction-aware log reader: reads partitions over the raw Kafka wire protocol and decides from
the transaction control markers which records are committed, aborted or still pending.

Two users: the exactly-once commit point finds a split's latest *committed* checkpoint marker with it
(offset commits alone cannot be trusted on every Kafka-protocol broker, see
``docs/exactly-once.md``), and the test suite's exactly-once audit (``tests/support/kafka_audit.py``)
reads whole output topics with it.

Why this exists
---------------
Tansu 0.6.0 (the embedded test broker) writes transaction control markers, hides OPEN transactions
from ``read_committed`` consumers, but does NOT hide records of ABORTED transactions. So a
``read_committed`` confluent-kafka consumer cannot prove exactly-once on Tansu, and librdkafka does not
expose raw record batches (with producer ids and control batches) for us to filter ourselves. This
module is a minimal, dependency-free Kafka client (``socket`` + ``struct``) that fetches raw record
batches with ``isolation_level=READ_UNCOMMITTED`` and applies the ``read_committed`` rules itself.
It works against Apache Kafka too (where it must agree with a ``read_committed`` consumer).

Protocol subset (all non-"flexible" versions, so no compact strings / tagged fields)
-------------------------------------------------------------------------------------
Every request is ``int32 size | header | body``; the request header (v1) is
``api_key:int16 api_version:int16 correlation_id:int32 client_id:nullable_string``; the response is
``int32 size | correlation_id:int32 | body``. Strings are ``int16 length + UTF-8`` (-1 = null), arrays
are ``int32 count + items`` (-1 = null), ``bytes`` are ``int32 length + data`` (-1 = null).

* ApiVersions v0 (key 18): to check that the broker supports the versions used below.
* Metadata v1..v4 (key 3), highest supported: brokers (node id -> host:port) and, per partition, the
  leader's node id. Partitions are fetched from their leader, so a multi-broker cluster works; on
  ``NOT_LEADER_OR_FOLLOWER`` and similar errors the metadata is refreshed and the fetch retried.
  v4 is sent with ``allow_auto_topic_creation=false`` so an audit never creates a topic.
* Fetch v4 (key 1): the first version whose records are magic-v2 record batches *and* that has
  ``isolation_level``; Apache Kafka 4.x still accepts it (KIP-896 removed Fetch v0-v3 only). We send
  ``isolation_level=0`` (READ_UNCOMMITTED) to see every batch, control batches included.

Where the end of a partition is
-------------------------------
ListOffsets is not used (Tansu's offsets/watermarks are not trusted). A partition is read batch by
batch, the next fetch offset always being ``baseOffset + lastOffsetDelta + 1`` of the last batch (so
control batches and compaction gaps are stepped over). It is finished when a Fetch returns **no
complete batch** *and* the fetch offset is ``>=`` the high watermark reported **in that same Fetch
response** -- i.e. the watermark is only used as a confirmation of an empty fetch, never to count. An
empty fetch below the reported watermark is retried with backoff, each retry letting the broker hold
the fetch longer (up to :data:`MAX_RETRY_WAIT_MS`), until the caller's deadline; then it raises
:class:`AuditError` naming the offsets and what to do, instead of silently returning a short read.
(Apache Kafka answers a fetch below the high watermark with data; Tansu 0.6.0 under load answers
empty fetches for large partitions, more often the shorter the fetch's max-wait.)

:func:`high_watermark` asks one partition's leader for its high watermark with a Fetch (not
ListOffsets), so a reader can start near the end of a partition (the checkpoint-marker scan reads a
window at the tail).

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

A Fetch response may end with a truncated batch (the broker cuts at ``max_bytes``): it is skipped and
re-fetched from its base offset; if not even one batch fits, the fetch size is doubled.

read_committed rules applied (per partition, per producer id)
-------------------------------------------------------------
* records of non-transactional batches are committed immediately;
* records of transactional batches are held per ``producerId`` until that producer's next control
  marker: COMMIT makes them visible, ABORT drops them (counted as aborted);
* records with no marker yet belong to an OPEN transaction: reported as ``pending``, never as committed;
* a transaction belongs to one producer *epoch*: when a transactional data batch of a producer id
  arrives with a higher epoch than the records held for that id, the held records belonged to a
  transaction that was fenced (``InitProducerId`` bumped the epoch) and are reported as ``fenced``;
  a transactional data batch with a lower epoch than one already seen for its producer id is a write
  of a fenced producer and is reported as ``fenced`` at once. Apache Kafka never appends either
  (it aborts the open transaction on ``InitProducerId`` and rejects the old epoch with
  ``PRODUCER_FENCED``). Tansu 0.6.0 does, in a race: a produce request of the fenced producer that is
  in flight while the new owner's ``InitProducerId`` writes the abort markers is appended *after*
  the abort marker, with the old epoch, and the new owner's next COMMIT marker for the same producer
  id would otherwise "commit" it. Control markers are not epoch-checked (with transactions v2,
  KIP-890, the marker carries the bumped epoch);
* committed records are returned in offset order (a transaction's records keep their offsets).
"""

from __future__ import annotations

import gzip
import socket
import struct
import time
import zlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "AuditError",
    "AuditRecord",
    "AuditResult",
    "KafkaProtocolError",
    "PartitionAudit",
    "RecordBatch",
    "audit_topic",
    "classify_batches",
    "crc32c",
    "high_watermark",
    "parse_record_batches",
]

# -- API keys, versions, error codes --------------------------------------------------------------

_FETCH: Final = 1
_METADATA: Final = 3
_API_VERSIONS: Final = 18
_FETCH_VERSION: Final = 4
_METADATA_VERSIONS: Final = (4, 3, 2, 1)  # preference order

_NONE: Final = 0
_OFFSET_OUT_OF_RANGE: Final = 1
#: Not a Kafka error code: the Fetch response had no entry for the partition (see ``_fetch``).
_NO_ENTRY: Final = -10_001
# Errors after which the partition leader may have moved: refresh metadata and retry.
_RETRIABLE: Final = frozenset(
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

_ATTR_COMPRESSION_MASK: Final = 0x07
_ATTR_LOG_APPEND_TIME: Final = 0x08
_ATTR_TRANSACTIONAL: Final = 0x10
_ATTR_CONTROL: Final = 0x20
_COMPRESSION_NAMES: Final = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

_CONTROL_ABORT: Final = 0
_CONTROL_COMMIT: Final = 1

#: Longest max-wait a retried empty fetch asks the broker to hold (see "Where the end of a partition is").
MAX_RETRY_WAIT_MS: Final = 1_000

_BATCH_HEADER: Final = struct.Struct(">qiibIhiqqqhii")  # 61 bytes, see module docstring
_LOG_OVERHEAD: Final = 12  # baseOffset + batchLength


class KafkaProtocolError(Exception):
    """The broker answered something this client cannot parse or does not support."""


class AuditError(Exception):
    """The topic could not be audited completely (missing data, broker errors, timeouts)."""


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


# -- primitive encoding ---------------------------------------------------------------------------


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


class _Reader:
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
    reader = _Reader(data)
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


# -- connections ----------------------------------------------------------------------------------


class _Connection:
    """One blocking TCP connection to one broker; requests are strictly sequential."""

    def __init__(self, host: str, port: int, timeout: float, client_id: str) -> None:
        self.address = (host, port)
        self._client_id = client_id
        self._correlation = 0
        self._sock = socket.create_connection(self.address, timeout=timeout)
        self._sock.settimeout(timeout)
        self.api_versions = self._api_versions()

    def close(self) -> None:
        self._sock.close()

    def request(self, api_key: int, version: int, body: bytes) -> _Reader:
        self._correlation += 1
        header = struct.pack(">hhi", api_key, version, self._correlation) + _string(self._client_id)
        frame = header + body
        self._sock.sendall(struct.pack(">i", len(frame)) + frame)
        (size,) = struct.unpack(">i", self._recv_exact(4))
        reader = _Reader(self._recv_exact(size))
        correlation = reader.int32()
        if correlation != self._correlation:
            raise KafkaProtocolError(
                f"correlation id {correlation} != {self._correlation} from {self.address}"
            )
        return reader

    def _recv_exact(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self._sock.recv(min(size - len(chunks), 1 << 20))
            if not chunk:
                raise ConnectionError(f"connection to {self.address} closed mid-response")
            chunks += chunk
        return bytes(chunks)

    def _api_versions(self) -> dict[int, tuple[int, int]]:
        reader = self.request(_API_VERSIONS, 0, b"")
        error = reader.int16()
        versions = {}
        for _ in range(reader.array_length()):
            key, low, high = reader.int16(), reader.int16(), reader.int16()
            versions[key] = (low, high)
        if error != _NONE:
            raise KafkaProtocolError(f"ApiVersions failed with error code {error} at {self.address}")
        return versions

    def supports(self, api_key: int, version: int) -> bool:
        low, high = self.api_versions.get(api_key, (1, 0))
        return low <= version <= high


@dataclass(frozen=True)
class _Metadata:
    brokers: dict[int, tuple[str, int]]
    leaders: dict[int, int]  # partition -> leader node id (-1 = none)


class _Client:
    """Bootstrap + per-broker connections + metadata for one topic."""

    def __init__(self, bootstrap: str, timeout: float, client_id: str) -> None:
        self._bootstrap = [_split_host_port(item) for item in bootstrap.split(",") if item.strip()]
        if not self._bootstrap:
            raise AuditError(f"empty bootstrap servers {bootstrap!r}")
        self._timeout = timeout
        self._client_id = client_id
        self._by_node: dict[int, _Connection] = {}
        self._brokers: dict[int, tuple[str, int]] = {}
        self._bootstrap_ids = 0

    def close(self) -> None:
        for connection in self._by_node.values():
            connection.close()
        self._by_node.clear()

    def _any_connection(self) -> _Connection:
        if self._by_node:
            return next(iter(self._by_node.values()))
        errors = []
        for host, port in [*self._bootstrap, *self._brokers.values()]:
            try:
                connection = _Connection(host, port, self._timeout, self._client_id)
            except OSError as exc:
                errors.append(f"{host}:{port}: {exc}")
                continue
            self._bootstrap_ids -= 1
            self._by_node[self._bootstrap_ids] = connection  # bootstrap: negative pseudo node id
            return connection
        raise AuditError(f"cannot connect to any broker: {'; '.join(errors)}")

    def connection(self, node_id: int) -> _Connection:
        connection = self._by_node.get(node_id)
        if connection is None:
            if node_id not in self._brokers:
                raise AuditError(f"leader node {node_id} is not in the cluster metadata {self._brokers}")
            host, port = self._brokers[node_id]
            connection = _Connection(host, port, self._timeout, self._client_id)
            self._by_node[node_id] = connection
        return connection

    def drop(self, node_id: int) -> None:
        connection = self._by_node.pop(node_id, None)
        if connection is not None:
            connection.close()

    def metadata(self, topic: str) -> _Metadata:
        """Metadata for ``topic`` from any broker; a dead connection is dropped and another one tried."""
        for _attempt in range(3):
            connection = self._any_connection()
            try:
                return self._metadata(connection, topic)
            except OSError:
                for node_id, candidate in list(self._by_node.items()):
                    if candidate is connection:
                        self.drop(node_id)
        return self._metadata(self._any_connection(), topic)

    def _metadata(self, connection: _Connection, topic: str) -> _Metadata:
        version = next((v for v in _METADATA_VERSIONS if connection.supports(_METADATA, v)), None)
        if version is None:
            raise KafkaProtocolError(
                f"broker {connection.address} supports none of Metadata v{_METADATA_VERSIONS}: "
                f"{connection.api_versions.get(_METADATA)}"
            )
        body = struct.pack(">i", 1) + _string(topic)
        if version >= 4:
            body += struct.pack(">?", False)  # allow_auto_topic_creation
        reader = connection.request(_METADATA, version, body)
        if version >= 3:
            reader.int32()  # throttle_time_ms
        brokers = {}
        for _ in range(reader.array_length()):
            node_id = reader.int32()
            host = reader.string()
            port = reader.int32()
            reader.nullable_string()  # rack
            brokers[node_id] = (host, port)
        if version >= 2:
            reader.nullable_string()  # cluster_id
        reader.int32()  # controller_id
        leaders: dict[int, int] = {}
        for _ in range(reader.array_length()):
            topic_error = reader.int16()
            name = reader.string()
            reader.int8()  # is_internal
            partitions: dict[int, int] = {}
            for _ in range(reader.array_length()):
                partition_error = reader.int16()
                index = reader.int32()
                leader = reader.int32()
                for _ in range(reader.array_length()):  # replica nodes
                    reader.int32()
                for _ in range(reader.array_length()):  # isr nodes
                    reader.int32()
                partitions[index] = leader if partition_error == _NONE or leader >= 0 else -1
            if name != topic:
                continue
            if topic_error == 3:
                raise AuditError(f"topic {topic!r} does not exist (UNKNOWN_TOPIC_OR_PARTITION)")
            if topic_error != _NONE and not partitions:
                raise AuditError(f"metadata for topic {topic!r} failed with error code {topic_error}")
            leaders = partitions
        self._brokers = brokers
        return _Metadata(brokers, leaders)

    def fetch(
        self, node_id: int, topic: str, partition: int, offset: int, max_bytes: int, max_wait_ms: int
    ) -> tuple[int, int, memoryview | None]:
        """Fetch v4, READ_UNCOMMITTED. Returns ``(error_code, high_watermark, records)``; the error code
        is ``_NO_ENTRY`` if the response holds no entry for the partition."""
        connection = self.connection(node_id)
        if not connection.supports(_FETCH, _FETCH_VERSION):
            raise KafkaProtocolError(
                f"broker {connection.address} does not support Fetch v{_FETCH_VERSION}: "
                f"{connection.api_versions.get(_FETCH)}"
            )
        body = (
            struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, 0)  # replica, wait, min/max bytes, isolation
            + struct.pack(">i", 1)
            + _string(topic)
            + struct.pack(">i", 1)
            + struct.pack(">iqi", partition, offset, max_bytes)
        )
        reader = connection.request(_FETCH, _FETCH_VERSION, body)
        reader.int32()  # throttle_time_ms
        for _ in range(reader.array_length()):
            name = reader.string()
            for _ in range(reader.array_length()):
                index = reader.int32()
                error = reader.int16()
                high_watermark = reader.int64()
                reader.int64()  # last_stable_offset: not needed, we apply the markers ourselves
                for _ in range(reader.array_length()):  # aborted_transactions: empty for READ_UNCOMMITTED
                    reader.int64()
                    reader.int64()
                records = reader.nullable_bytes()
                if name == topic and index == partition:
                    return error, high_watermark, records
        return _NO_ENTRY, -1, None


def _split_host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    for prefix in ("PLAINTEXT://", "plaintext://", "tcp://"):
        item = item.removeprefix(prefix)
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit():
        raise AuditError(f"bad bootstrap server {item!r}; expected host:port")
    return host.strip("[]"), int(port)


# -- audit ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRecord:
    """A data record as the audit reader saw it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...]
    producer_id: int
    transactional: bool
    producer_epoch: int = -1


@dataclass
class PartitionAudit:
    """What one partition holds under read_committed rules."""

    partition: int
    committed: list[AuditRecord] = field(default_factory=list)
    aborted: list[AuditRecord] = field(default_factory=list)
    pending: list[AuditRecord] = field(default_factory=list)
    #: Transactional records of a fenced producer epoch that the broker appended anyway (never
    #: committed; see the module docstring). Always empty on Apache Kafka.
    fenced: list[AuditRecord] = field(default_factory=list)
    commit_markers: int = 0
    abort_markers: int = 0
    batches: int = 0
    control_batches: int = 0
    end_offset: int = 0  # the offset after the last batch read
    high_watermark: int = -1  # as reported by the final (empty) fetch

    @property
    def aborted_count(self) -> int:
        return len(self.aborted)

    @property
    def pending_count(self) -> int:
        return len(self.pending)

    @property
    def fenced_count(self) -> int:
        return len(self.fenced)

    @property
    def last_stable_offset(self) -> int:
        """First offset of the earliest open transaction (or ``end_offset``): Kafka's LSO.

        A ``read_committed`` consumer on Apache Kafka stops here, so committed records at or above it
        (non-transactional ones written after an open transaction began) are not visible to it *yet*.
        """
        return min((r.offset for r in self.pending), default=self.end_offset)


@dataclass
class AuditResult:
    """The audit of a whole topic."""

    topic: str
    partitions: dict[int, PartitionAudit]
    elapsed_seconds: float = 0.0

    @property
    def committed(self) -> list[AuditRecord]:
        """All committed records, ordered by (partition, offset)."""
        return [r for p in sorted(self.partitions) for r in self.partitions[p].committed]

    @property
    def aborted_count(self) -> int:
        return sum(p.aborted_count for p in self.partitions.values())

    @property
    def pending_count(self) -> int:
        return sum(p.pending_count for p in self.partitions.values())

    @property
    def fenced_count(self) -> int:
        return sum(p.fenced_count for p in self.partitions.values())

    def committed_values(self, partition: int | None = None) -> list[bytes | None]:
        """Values of committed records of one partition (or all, by partition then offset)."""
        records = self.committed if partition is None else self.partitions[partition].committed
        return [r.value for r in records]

    def summary(self) -> str:
        parts = [
            f"p{p.partition}: {len(p.committed)} committed, {p.aborted_count} aborted, {p.pending_count} "
            f"pending, {p.fenced_count} fenced, {p.commit_markers} commits/{p.abort_markers} aborts, "
            f"end {p.end_offset}, hw {p.high_watermark}"
            for p in (self.partitions[i] for i in sorted(self.partitions))
        ]
        return f"audit of {self.topic!r} in {self.elapsed_seconds:.3f}s: " + "; ".join(parts)


@dataclass
class _OpenTransactions:
    """Per producer id: the records of its open transaction, their epoch, the highest epoch seen."""

    held: dict[int, list[AuditRecord]] = field(default_factory=dict)
    held_epoch: dict[int, int] = field(default_factory=dict)
    latest_epoch: dict[int, int] = field(default_factory=dict)

    def pending(self) -> list[AuditRecord]:
        return [r for records in self.held.values() for r in records]


def _apply_batch(
    state: PartitionAudit,
    open_transactions: _OpenTransactions,
    batch: RecordBatch,
    topic: str,
    start: int,
    keys: Collection[bytes] | None = None,
    check_crc: bool = False,
) -> None:
    """Apply one batch to the partition state (read_committed rules, see module docstring).

    With ``keys``, only records with one of those keys are kept. With ``check_crc``, a batch that
    holds kept records is CRC-checked here (it was parsed without verification).
    """
    state.batches += 1
    pid = batch.producer_id
    if batch.is_control:
        state.control_batches += 1
        for control_type in batch.control_types():
            held = open_transactions.held.pop(pid, [])
            open_transactions.held_epoch.pop(pid, None)
            if control_type == _CONTROL_COMMIT:
                state.commit_markers += 1
                state.committed.extend(held)
            elif control_type == _CONTROL_ABORT:
                state.abort_markers += 1
                state.aborted.extend(held)
            else:
                # Unknown control type (KRaft uses others in its metadata log, never in data topics).
                raise KafkaProtocolError(
                    f"{topic}[{state.partition}] offset {batch.base_offset}: "
                    f"unknown control type {control_type}"
                )
        return
    records = [
        AuditRecord(
            topic=topic,
            partition=state.partition,
            offset=raw.offset,
            key=raw.key,
            value=raw.value,
            timestamp=raw.timestamp,
            headers=raw.headers,
            producer_id=pid,
            transactional=batch.is_transactional,
            producer_epoch=batch.producer_epoch,
        )
        for raw in batch.records
        if raw.offset >= start  # a broker may return a batch that starts before the fetch offset
        and (keys is None or raw.key in keys)
    ]
    if check_crc and records and not batch.crc_matches():
        raise KafkaProtocolError(f"CRC-32C mismatch in batch at offset {batch.base_offset} of {topic}")
    if not batch.is_transactional:
        state.committed.extend(records)
        return
    if pid < 0:
        raise KafkaProtocolError(f"transactional batch at offset {batch.base_offset} has no producer id")
    epoch = batch.producer_epoch
    latest = open_transactions.latest_epoch.get(pid)
    if latest is not None and epoch < latest:
        state.fenced.extend(records)  # a write of a fenced epoch, appended anyway
        return
    open_transactions.latest_epoch[pid] = epoch
    held_epoch = open_transactions.held_epoch.get(pid)
    if held_epoch is not None and held_epoch < epoch:
        # The held transaction's epoch was fenced without a marker after its records.
        state.fenced.extend(open_transactions.held.pop(pid))
    open_transactions.held.setdefault(pid, []).extend(records)
    open_transactions.held_epoch[pid] = epoch


def classify_batches(
    topic: str,
    partition: int,
    batches: Iterable[RecordBatch],
    *,
    keys: Collection[bytes] | None = None,
    check_crc: bool = False,
) -> PartitionAudit:
    """Apply the read_committed rules (module docstring) to parsed batches of one partition, in order.

    ``keys`` and ``check_crc`` as in :func:`audit_topic` with a key filter: keep only records with
    these keys; CRC-check (only) the batches holding kept records.
    """
    state = PartitionAudit(partition)
    open_transactions = _OpenTransactions()
    for batch in batches:
        _apply_batch(state, open_transactions, batch, topic, 0, keys, check_crc)
    _finish(state, open_transactions)
    return state


def _finish(state: PartitionAudit, open_transactions: _OpenTransactions) -> None:
    """What is still held is pending; every list in offset order."""
    state.pending.extend(open_transactions.pending())
    for records in (state.committed, state.aborted, state.pending, state.fenced):
        records.sort(key=lambda r: r.offset)


def _audit_partition(
    client: _Client,
    topic: str,
    partition: int,
    leader: int,
    *,
    deadline: float,
    verify_crc: bool,
    max_bytes: int,
    max_wait_ms: int,
    start_offset: int = 0,
    keys: Collection[bytes] | None = None,
) -> PartitionAudit:
    state = PartitionAudit(partition)
    open_transactions = _OpenTransactions()
    # With a key filter, only the batches holding wanted records are CRC-checked (after parsing).
    lazy_crc = verify_crc and keys is not None
    offset = start_offset
    fetch_bytes = max_bytes
    wait_ms = max_wait_ms
    empty_below_watermark = 0
    first_empty = 0.0
    while True:
        if time.monotonic() > deadline and empty_below_watermark == 0:
            raise AuditError(
                f"audit of {topic}[{partition}] timed out at offset {offset} (read from {start_offset}); "
                f"raise the timeout"
            )
        leader, error, watermark, records = _fetch(
            client, leader, topic, partition, offset, fetch_bytes, wait_ms, deadline
        )
        if error == _OFFSET_OUT_OF_RANGE:
            raise AuditError(
                f"{topic}[{partition}]: offset {offset} is out of range (retention deleted data, or the "
                "broker lost it); the topic cannot be audited completely"
            )
        if error != _NONE:
            raise AuditError(
                f"fetch of {topic}[{partition}] at offset {offset} failed with error code {error}"
            )

        batches, trailing = parse_record_batches(
            records if records is not None else b"", verify_crc=verify_crc and not lazy_crc
        )
        progressed = False
        for batch in batches:
            if batch.last_offset < offset:
                continue  # already applied (can only happen if the broker re-sends an older batch)
            _apply_batch(state, open_transactions, batch, topic, offset, keys, lazy_crc)
            offset = batch.last_offset + 1
            progressed = True
        if progressed:
            fetch_bytes = max_bytes
            wait_ms = max_wait_ms
            empty_below_watermark = 0
            continue
        if trailing:
            # Not even one complete batch fitted: the batch is larger than the fetch size.
            if fetch_bytes >= 1 << 30:
                raise AuditError(f"{topic}[{partition}] batch at offset {offset} larger than 1 GiB")
            fetch_bytes *= 2
            continue
        # An empty fetch. Done only if the same response's high watermark confirms we are at the end.
        if offset >= watermark:
            state.end_offset = offset
            state.high_watermark = watermark
            break
        now = time.monotonic()
        if empty_below_watermark == 0:
            first_empty = now
        empty_below_watermark += 1
        if now > deadline:
            raise AuditError(
                f"{topic}[{partition}]: the fetch at offset {offset} returned no records "
                f"{empty_below_watermark} times over {now - first_empty:.1f}s although the broker reports "
                f"high watermark {watermark}; refusing to report a possibly short read. The broker is "
                f"overloaded or lost data: retry when it is healthy, or raise the deadline "
                f"(operation_timeout_s of the Kafka source)"
            )
        # Back off, and let the broker hold the next fetch longer (Tansu answers empty fetches of
        # large partitions under load, more often with a short max-wait).
        wait_ms = min(max(wait_ms * 2, 50), MAX_RETRY_WAIT_MS)
        time.sleep(min(0.01 * empty_below_watermark, 0.2, max(0.0, deadline - now)))

    _finish(state, open_transactions)
    return state


def _fetch(
    client: _Client,
    leader: int,
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int,
    max_wait_ms: int,
    deadline: float,
) -> tuple[int, int, int, memoryview | None]:
    """One fetch from the partition's leader; connection errors and leader moves are retried (with
    the new leader) until ``deadline``. Returns ``(leader, error_code, high_watermark, records)``.

    A response without an entry for the partition is retried with backoff and a longer max-wait
    until ``deadline``: Tansu 0.6.0 answers so with ``max_wait_ms=0`` always, and under load with
    short ones too (Apache Kafka always answers for every partition asked).
    """
    empty_responses = 0
    while True:
        try:
            error, watermark, records = client.fetch(leader, topic, partition, offset, max_bytes, max_wait_ms)
        except OSError as exc:  # includes ConnectionError and socket timeouts
            client.drop(leader)
            leader = _wait_for_leader(client, topic, partition, deadline, f"connection error {exc}")
            continue
        if error in _RETRIABLE:
            client.drop(leader)
            leader = _wait_for_leader(client, topic, partition, deadline, f"fetch error code {error}")
            continue
        if error == _NO_ENTRY:
            empty_responses += 1
            if time.monotonic() > deadline:
                raise AuditError(
                    f"fetch of {topic}[{partition}] at offset {offset}: {empty_responses} responses had no "
                    f"entry for the partition (last with max_wait_ms={max_wait_ms}); the broker is "
                    f"overloaded: retry when it is healthy, or raise the deadline"
                )
            max_wait_ms = min(max(max_wait_ms * 2, 50), MAX_RETRY_WAIT_MS)
            time.sleep(min(0.01 * empty_responses, 0.2))
            continue
        return leader, error, watermark, records


def _wait_for_leader(client: _Client, topic: str, partition: int, deadline: float, why: str) -> int:
    while True:
        leader = client.metadata(topic).leaders.get(partition, -1)
        if leader >= 0:
            return leader
        if time.monotonic() > deadline:
            raise AuditError(f"{topic}[{partition}] has no leader ({why})")
        time.sleep(0.1)


def audit_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    partitions: Iterable[int] | None = None,
    verify_crc: bool = True,
    timeout: float = 60.0,
    max_bytes: int = 4 << 20,
    max_wait_ms: int = 10,
    client_id: str = "eventapp-audit",
    start_offsets: Mapping[int, int] | None = None,
    keys: Collection[bytes] | None = None,
) -> AuditResult:
    """Read every partition of ``topic`` to its end and apply read_committed rules from the markers.

    :param partitions: partitions to read (default: all, from metadata).
    :param start_offsets: per partition, the offset to start at (default 0). Records of transactions
        whose control marker lies at or after the start are classified correctly; records before the
        start are not returned.
    :param keys: keep only records with one of these keys (the transaction rules still see every
        batch). With ``verify_crc``, only batches holding such records are CRC-checked: reading a big
        topic for a few keys (the checkpoint-marker scan) is then about 4x faster and holds only what
        it keeps.
    :param verify_crc: check each batch's CRC-32C (pure Python, ~5 MB/s; pass False for big topics).
    :param timeout: overall deadline in seconds.
    :param max_bytes: per-fetch size (doubled automatically if a single batch is larger).
    :param max_wait_ms: how long the broker may hold an empty fetch (the final, confirming fetch of each
        partition costs this much). Must be >= 1: Tansu answers ``max_wait_ms=0`` with an empty response
        even when records are available.
        Empty fetches below the reported high watermark are retried with backoff and a growing
        max-wait until ``timeout`` (see the module docstring).
    :raises AuditError: if the topic is missing or a partition cannot be read completely.
    :raises KafkaProtocolError: on data this reader cannot decode (legacy format, snappy/lz4/zstd, bad CRC).
    """
    if max_wait_ms < 1:
        raise ValueError(f"max_wait_ms must be >= 1 (Tansu returns nothing for 0), got {max_wait_ms}")
    began = time.monotonic()
    deadline = began + timeout
    client = _Client(bootstrap_servers, timeout=min(timeout, 30.0), client_id=client_id)
    try:
        metadata = client.metadata(topic)
        wanted = sorted(partitions) if partitions is not None else sorted(metadata.leaders)
        if not wanted:
            raise AuditError(f"topic {topic!r} has no partitions in metadata")
        result: dict[int, PartitionAudit] = {}
        for partition in wanted:
            if partition not in metadata.leaders:
                raise AuditError(
                    f"{topic}[{partition}] does not exist (partitions: {sorted(metadata.leaders)})"
                )
            leader = metadata.leaders[partition]
            if leader < 0:
                leader = _wait_for_leader(client, topic, partition, deadline, "no leader in metadata")
            result[partition] = _audit_partition(
                client,
                topic,
                partition,
                leader,
                deadline=deadline,
                verify_crc=verify_crc,
                max_bytes=max_bytes,
                max_wait_ms=max_wait_ms,
                start_offset=(start_offsets or {}).get(partition, 0),
                keys=keys,
            )
        return AuditResult(topic, result, elapsed_seconds=time.monotonic() - began)
    finally:
        client.close()


def high_watermark(
    bootstrap_servers: str,
    topic: str,
    partition: int,
    *,
    timeout: float = 30.0,
    client_id: str = "eventapp-hw",
) -> int:
    """The high watermark of ``topic[partition]`` as its leader reports it in a Fetch response.

    One small fetch at offset 0 (ListOffsets is not used: Tansu 0.6.0 answers it wrong, see the module
    docstring). A reader that starts from it still reads to the confirmed end, so a watermark that is
    too low only makes it read a little more.
    """
    deadline = time.monotonic() + timeout
    client = _Client(bootstrap_servers, timeout=min(timeout, 30.0), client_id=client_id)
    try:
        leader = client.metadata(topic).leaders.get(partition)
        if leader is None:
            raise AuditError(f"{topic}[{partition}] does not exist")
        if leader < 0:
            leader = _wait_for_leader(client, topic, partition, deadline, "no leader in metadata")
        _leader, error, watermark, _records = _fetch(client, leader, topic, partition, 0, 1, 1, deadline)
        if error not in (_NONE, _OFFSET_OUT_OF_RANGE):
            raise AuditError(f"fetch of {topic}[{partition}] failed with error code {error}")
        return max(watermark, 0)
    finally:
        client.close()
