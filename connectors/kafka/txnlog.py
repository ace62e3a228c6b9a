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
reader is a minimal, dependency-free Kafka client (``socket`` + ``struct``) that fetches raw record
batches with ``isolation_level=READ_UNCOMMITTED`` and applies the ``read_committed`` rules itself.
It works against Apache Kafka too (where it must agree with a ``read_committed`` consumer).

The reader is split by layer:

* :mod:`eventapp.connectors.kafka.protocol`: the classic wire encoding, error codes and the errors;
* :mod:`eventapp.connectors.kafka.wireclient`: connections, metadata and raw fetches (ApiVersions,
  Metadata, Fetch v4);
* :mod:`eventapp.connectors.kafka.recordbatch`: record batch v2 parsing and CRC-32C;
* :mod:`eventapp.connectors.kafka.readcommitted`: the ``read_committed`` rules that classify records;
* this module: reading partitions to their confirmed end (:func:`audit_topic`, :func:`high_watermark`).
  It re-exports the names of the modules above that its users import from here.

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
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from typing import Final

from .protocol import (
    NO_ENTRY,
    NO_ERROR,
    OFFSET_OUT_OF_RANGE,
    RETRIABLE_ERRORS,
    AuditError,
    KafkaProtocolError,
)
from .readcommitted import (
    AuditRecord,
    AuditResult,
    OpenTransactions,
    PartitionAudit,
    apply_batch,
    classify_batches,
    finish_partition,
)
from .recordbatch import RecordBatch, crc32c, parse_record_batches
from .wireclient import Client

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

#: The client class, under the name ``tests/infra/test_audit_reader.py`` patches it by.
_Client = Client

#: Longest max-wait a retried empty fetch asks the broker to hold (see "Where the end of a partition is").
MAX_RETRY_WAIT_MS: Final = 1_000


def _audit_partition(
    client: Client,
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
    open_transactions = OpenTransactions()
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
        if error == OFFSET_OUT_OF_RANGE:
            raise AuditError(
                f"{topic}[{partition}]: offset {offset} is out of range (retention deleted data, or the "
                "broker lost it); the topic cannot be audited completely"
            )
        if error != NO_ERROR:
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
            apply_batch(state, open_transactions, batch, topic, offset, keys, lazy_crc)
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

    finish_partition(state, open_transactions)
    return state


def _fetch(
    client: Client,
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
        if error in RETRIABLE_ERRORS:
            client.drop(leader)
            leader = _wait_for_leader(client, topic, partition, deadline, f"fetch error code {error}")
            continue
        if error == NO_ENTRY:
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


def _wait_for_leader(client: Client, topic: str, partition: int, deadline: float, why: str) -> int:
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
    client = Client(bootstrap_servers, timeout=min(timeout, 30.0), client_id=client_id)
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
    client = Client(bootstrap_servers, timeout=min(timeout, 30.0), client_id=client_id)
    try:
        leader = client.metadata(topic).leaders.get(partition)
        if leader is None:
            raise AuditError(f"{topic}[{partition}] does not exist")
        if leader < 0:
            leader = _wait_for_leader(client, topic, partition, deadline, "no leader in metadata")
        _leader, error, watermark, _records = _fetch(client, leader, topic, partition, 0, 1, 1, deadline)
        if error not in (NO_ERROR, OFFSET_OUT_OF_RANGE):
            raise AuditError(f"fetch of {topic}[{partition}] failed with error code {error}")
        return max(watermark, 0)
    finally:
        client.close()
