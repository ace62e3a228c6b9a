"""Finding a port for a local broker and recognising the broker that answers on it, over the raw
Kafka protocol: :class:`eventapp.embedded_broker.EmbeddedBroker` starts each broker with a unique
cluster id and waits until :func:`probe_cluster_id` reads that id back, so a port race with another
broker on the same machine can never make it talk to the wrong process."""

from __future__ import annotations

import socket
import struct
from typing import Final

__all__ = ["EmbeddedBrokerError", "find_free_port", "probe_cluster_id"]

_API_VERSIONS_KEY: Final = 18


# Defined here, where it is first raised (a probe answered with a wrong correlation id);
# eventapp.embedded_broker re-exports it as the error of EmbeddedBroker.
class EmbeddedBrokerError(RuntimeError):
    """The embedded broker process could not be started or did not become ready."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (another process may still take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _kafka_string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def probe_cluster_id(host: str, port: int, timeout: float) -> str | None:
    """Ask the broker at ``host:port`` for its cluster id, over the raw Kafka protocol.

    Sends ApiVersions v0 (proves the process speaks Kafka) and then Metadata v2 with an empty topic list
    (its response is ``brokers[], cluster_id, controller_id, topics[]``; no throttle field before v3).
    Returns the cluster id, or ``None`` if the broker is not reachable yet.
    """

    def request(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> bytes:
        header = struct.pack(">hhi", api_key, version, correlation) + _kafka_string("eventapp-probe")
        frame = header + body
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        payload = _recv_exact(sock, size)
        if struct.unpack_from(">i", payload)[0] != correlation:
            raise EmbeddedBrokerError("the broker answered with a wrong correlation id")
        return payload[4:]

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            api_versions = request(sock, _API_VERSIONS_KEY, 0, 1, b"")
            if struct.unpack_from(">h", api_versions)[0] != 0:
                return None
            # Metadata v2 request: topics = empty array (0 topics, not null = all topics).
            metadata = request(sock, 3, 2, 2, struct.pack(">i", 0))
    except (OSError, struct.error, EOFError):
        return None
    return _parse_metadata_v2_cluster_id(metadata)


def _parse_metadata_v2_cluster_id(payload: bytes) -> str | None:
    """Skip the brokers array of a Metadata v2 response and read the nullable cluster_id string."""
    pos = 0
    (broker_count,) = struct.unpack_from(">i", payload, pos)
    pos += 4
    for _ in range(broker_count):
        pos += 4  # node_id
        (host_len,) = struct.unpack_from(">h", payload, pos)
        pos += 2 + host_len + 4  # host, port
        (rack_len,) = struct.unpack_from(">h", payload, pos)
        pos += 2 + max(rack_len, 0)
    (cluster_len,) = struct.unpack_from(">h", payload, pos)
    pos += 2
    if cluster_len < 0:
        return None
    return payload[pos : pos + cluster_len].decode()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError("connection closed by the broker")
        chunks += chunk
    return bytes(chunks)
