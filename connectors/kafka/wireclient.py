"""A minimal, dependency-free, blocking Kafka client (``socket`` + ``struct``) for the
transaction-aware log reader (:mod:`eventapp.connectors.kafka.txnlog`): per-broker connections, topic
metadata and raw fetches. Plaintext only (no TLS, no SASL).

Protocol subset (all non-"flexible" versions, encoded as in :mod:`eventapp.connectors.kafka.protocol`):

* ApiVersions v0 (key 18): to check that the broker supports the versions used below.
* Metadata v1..v4 (key 3), highest supported: brokers (node id -> host:port) and, per partition, the
  leader's node id. Partitions are fetched from their leader, so a multi-broker cluster works; on
  ``NOT_LEADER_OR_FOLLOWER`` and similar errors the reader refreshes the metadata and retries.
  v4 is sent with ``allow_auto_topic_creation=false`` so an audit never creates a topic.
* Fetch v4 (key 1): the first version whose records are magic-v2 record batches *and* that has
  ``isolation_level``; Apache Kafka 4.x still accepts it (KIP-896 removed Fetch v0-v3 only). We send
  ``isolation_level=0`` (READ_UNCOMMITTED) to see every batch, control batches included.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Final

from .protocol import NO_ENTRY, NO_ERROR, AuditError, KafkaProtocolError, Reader, encode_string

__all__ = ["Client"]

# -- API keys and versions ------------------------------------------------------------------------

_FETCH: Final = 1
_METADATA: Final = 3
_API_VERSIONS: Final = 18
_FETCH_VERSION: Final = 4
_METADATA_VERSIONS: Final = (4, 3, 2, 1)  # preference order


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

    def request(self, api_key: int, version: int, body: bytes) -> Reader:
        self._correlation += 1
        header = struct.pack(">hhi", api_key, version, self._correlation) + encode_string(self._client_id)
        frame = header + body
        self._sock.sendall(struct.pack(">i", len(frame)) + frame)
        (size,) = struct.unpack(">i", self._recv_exact(4))
        reader = Reader(self._recv_exact(size))
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
        if error != NO_ERROR:
            raise KafkaProtocolError(f"ApiVersions failed with error code {error} at {self.address}")
        return versions

    def supports(self, api_key: int, version: int) -> bool:
        low, high = self.api_versions.get(api_key, (1, 0))
        return low <= version <= high


@dataclass(frozen=True)
class _Metadata:
    brokers: dict[int, tuple[str, int]]
    leaders: dict[int, int]  # partition -> leader node id (-1 = none)


class Client:
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
        body = struct.pack(">i", 1) + encode_string(topic)
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
                partitions[index] = leader if partition_error == NO_ERROR or leader >= 0 else -1
            if name != topic:
                continue
            if topic_error == 3:
                raise AuditError(f"topic {topic!r} does not exist (UNKNOWN_TOPIC_OR_PARTITION)")
            if topic_error != NO_ERROR and not partitions:
                raise AuditError(f"metadata for topic {topic!r} failed with error code {topic_error}")
            leaders = partitions
        self._brokers = brokers
        return _Metadata(brokers, leaders)

    def fetch(
        self, node_id: int, topic: str, partition: int, offset: int, max_bytes: int, max_wait_ms: int
    ) -> tuple[int, int, memoryview | None]:
        """Fetch v4, READ_UNCOMMITTED. Returns ``(error_code, high_watermark, records)``; the error code
        is ``NO_ENTRY`` if the response holds no entry for the partition."""
        connection = self.connection(node_id)
        if not connection.supports(_FETCH, _FETCH_VERSION):
            raise KafkaProtocolError(
                f"broker {connection.address} does not support Fetch v{_FETCH_VERSION}: "
                f"{connection.api_versions.get(_FETCH)}"
            )
        body = (
            struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, 0)  # replica, wait, min/max bytes, isolation
            + struct.pack(">i", 1)
            + encode_string(topic)
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
        return NO_ENTRY, -1, None


def _split_host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    for prefix in ("PLAINTEXT://", "plaintext://", "tcp://"):
        item = item.removeprefix(prefix)
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit():
        raise AuditError(f"bad bootstrap server {item!r}; expected host:port")
    return host.strip("[]"), int(port)
