"""The exactly-once audit reader (tests/support/kafka_audit.py).

Two layers:

* pure parsing tests on hand-built record batches (CRC-32C, varints, headers, control records, gzip,
  truncated trailing batches, unsupported codecs) -- no broker needed;
* end-to-end tests against the real broker (``kafka_broker`` fixture): non-transactional records,
  committed / aborted / interleaved / open transactions, multiple partitions, gzip, and a fetch that
  ends with a truncated batch.

Tansu quirk documented here: a ``read_committed`` librdkafka consumer on Tansu 0.6.0 DOES return
records of aborted transactions (open transactions are hidden correctly). That is why exactly-once
assertions must use :func:`tests.support.kafka_audit.audit_topic`, which applies the markers itself.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from confluent_kafka import Producer

from eventapp.connectors.kafka.txnlog import _Client
from tests.support.broker import (
    KafkaBroker,
    OutRecord,
    consume_all,
    produce,
    transactional_producer_config,
)
from tests.support.kafka_audit import (
    AuditError,
    AuditResult,
    KafkaProtocolError,
    audit_topic,
    classify_batches,
    crc32c,
    parse_record_batches,
)

TopicFactory = Callable[..., str]

# -- a tiny record-batch encoder (the inverse of the parser, for synthetic input) -----------------


def _varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if zigzag:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varbytes(data: bytes | None) -> bytes:
    return _varint(-1) if data is None else _varint(len(data)) + data


def _record(
    offset_delta: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_delta: int = 0,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> bytes:
    body = (
        b"\x00"
        + _varint(timestamp_delta)
        + _varint(offset_delta)
        + _varbytes(key)
        + _varbytes(value)
        + _varint(len(headers))
        + b"".join(_varbytes(k.encode()) + _varbytes(v) for k, v in headers)
    )
    return _varint(len(body)) + body


def _batch(
    base_offset: int,
    records: Sequence[bytes],
    *,
    attributes: int = 0,
    producer_id: int = -1,
    producer_epoch: int | None = None,
    base_timestamp: int = 1_700_000_000_000,
    last_offset_delta: int | None = None,
    corrupt_crc: bool = False,
) -> bytes:
    payload = b"".join(records)
    if attributes & 0x07 == 1:
        payload = gzip.compress(payload)
    delta = len(records) - 1 if last_offset_delta is None else last_offset_delta
    after_crc = (
        struct.pack(
            ">hiqqqhii",
            attributes,
            delta,
            base_timestamp,
            base_timestamp + 100,
            producer_id,
            (0 if producer_id >= 0 else -1) if producer_epoch is None else producer_epoch,
            0 if producer_id >= 0 else -1,
            len(records),
        )
        + payload
    )
    crc = crc32c(after_crc) ^ (1 if corrupt_crc else 0)
    after_length = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", base_offset, len(after_length)) + after_length


def _control(base_offset: int, producer_id: int, commit: bool, producer_epoch: int = 0) -> bytes:
    key = struct.pack(">hh", 0, 1 if commit else 0)
    return _batch(
        base_offset,
        [_record(0, key, struct.pack(">hi", 0, 0))],
        attributes=0x30,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
    )


# -- parsing ----------------------------------------------------------------------------------------


def test_crc32c_standard_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the published CRC-32C check value
    assert crc32c(b"") == 0


def test_parse_records_headers_nulls_and_timestamps() -> None:
    data = _batch(
        10,
        [
            _record(0, b"k", b"v", headers=[("h1", b"x"), ("h2", None)]),
            _record(1, None, None, timestamp_delta=7),
            _record(2, b"", b"\x00" * 300),  # multi-byte varint length
        ],
    )
    batches, trailing = parse_record_batches(data)
    assert trailing == 0
    (batch,) = batches
    assert (batch.base_offset, batch.last_offset, batch.compression) == (10, 12, "none")
    assert not batch.is_transactional and not batch.is_control
    first, second, third = batch.records
    assert (first.offset, first.key, first.value, first.headers) == (
        10,
        b"k",
        b"v",
        (("h1", b"x"), ("h2", None)),
    )
    assert (second.offset, second.key, second.value) == (11, None, None)
    assert second.timestamp == 1_700_000_000_000 + 7
    assert (third.offset, third.key, len(third.value or b"")) == (12, b"", 300)


def test_parse_log_append_time_uses_max_timestamp() -> None:
    data = _batch(0, [_record(0, b"k", b"v", timestamp_delta=3)], attributes=0x08)
    (batch,), _ = parse_record_batches(data)
    assert batch.records[0].timestamp == batch.max_timestamp == 1_700_000_000_100


def test_parse_gzip_and_control_batches() -> None:
    data = _batch(0, [_record(i, b"k", b"v%d" % i) for i in range(3)], attributes=0x11, producer_id=7)
    data += _control(3, 7, commit=True) + _control(4, 7, commit=False)
    batches, trailing = parse_record_batches(data)
    assert trailing == 0
    assert [b.compression for b in batches] == ["gzip", "none", "none"]
    assert [r.value for r in batches[0].records] == [b"v0", b"v1", b"v2"]
    assert batches[0].is_transactional and not batches[0].is_control
    assert batches[1].is_control and batches[1].control_types() == [1]
    assert batches[2].control_types() == [0]


def _txn(base_offset: int, producer_id: int, epoch: int, *values: bytes) -> bytes:
    records = [_record(i, b"k", v) for i, v in enumerate(values)]
    return _batch(base_offset, records, attributes=0x10, producer_id=producer_id, producer_epoch=epoch)


def _classified(data: bytes) -> dict[str, list[bytes | None]]:
    batches, trailing = parse_record_batches(data)
    assert trailing == 0
    state = classify_batches("t", 0, batches)
    return {
        kind: [r.value for r in getattr(state, kind)]
        for kind in ("committed", "aborted", "pending", "fenced")
    }


def test_classify_commit_abort_and_open_transactions_per_producer() -> None:
    data = (
        _txn(0, 7, 0, b"a1")
        + _txn(1, 8, 0, b"b1")
        + _batch(2, [_record(0, b"k", b"plain")])
        + _control(3, 7, commit=True)
        + _control(4, 8, commit=False)
        + _txn(5, 7, 0, b"a2")
    )
    assert _classified(data) == {
        "committed": [b"a1", b"plain"],
        "aborted": [b"b1"],
        "pending": [b"a2"],
        "fenced": [],
    }


def test_classify_fenced_write_after_the_abort_marker_is_never_committed() -> None:
    # The sequence measured on Tansu 0.6.0 (docs/exactly-once.md): the new owner's InitProducerId
    # writes an ABORT marker (old epoch 0); an in-flight produce of the fenced producer is appended
    # after it with epoch 0; the new owner (same producer id, epoch 1) then commits its own records.
    data = (
        _txn(0, 42, 0, b"zombie-aborted")
        + _control(1, 42, commit=False, producer_epoch=0)
        + _txn(2, 42, 0, b"zombie-late")
        + _txn(3, 42, 1, b"successor")
        + _control(4, 42, commit=True, producer_epoch=1)
    )
    assert _classified(data) == {
        "committed": [b"successor"],
        "aborted": [b"zombie-aborted"],
        "pending": [],
        "fenced": [b"zombie-late"],
    }


def test_classify_write_of_an_older_epoch_after_a_newer_one_is_fenced() -> None:
    data = (
        _txn(0, 42, 1, b"successor-1")
        + _txn(1, 42, 0, b"zombie")
        + _txn(2, 42, 1, b"successor-2")
        + _control(3, 42, commit=True, producer_epoch=1)
    )
    assert _classified(data) == {
        "committed": [b"successor-1", b"successor-2"],
        "aborted": [],
        "pending": [],
        "fenced": [b"zombie"],
    }


def test_classify_markers_with_a_bumped_epoch_close_the_transaction_kip_890() -> None:
    # Transactions v2 bumps the epoch at every commit/abort: the marker carries epoch + 1 and the
    # next transaction uses it. Nothing here is fenced.
    data = (
        _txn(0, 5, 0, b"t1")
        + _control(1, 5, commit=True, producer_epoch=1)
        + _txn(2, 5, 1, b"t2")
        + _control(3, 5, commit=False, producer_epoch=2)
        + _txn(4, 5, 2, b"t3")
        + _control(5, 5, commit=True, producer_epoch=3)
    )
    assert _classified(data) == {"committed": [b"t1", b"t3"], "aborted": [b"t2"], "pending": [], "fenced": []}


def test_classify_with_a_key_filter_checks_only_the_crc_of_batches_it_keeps() -> None:
    def txn(base_offset: int, key: bytes, value: bytes, corrupt: bool = False) -> bytes:
        record = _record(0, key, value)
        return _batch(base_offset, [record], attributes=0x10, producer_id=7, corrupt_crc=corrupt)

    data = txn(0, b"other", b"x", corrupt=True) + txn(1, b"mine", b"m1") + _control(2, 7, commit=True)
    batches, _ = parse_record_batches(data, verify_crc=False)
    assert [b.crc_matches() for b in batches] == [False, True, True]
    state = classify_batches("t", 0, batches, keys={b"mine"}, check_crc=True)
    assert [r.value for r in state.committed] == [b"m1"]  # the corrupt batch was not needed
    corrupt_mine = txn(0, b"mine", b"m0", corrupt=True) + _control(1, 7, commit=True)
    batches, _ = parse_record_batches(corrupt_mine, verify_crc=False)
    with pytest.raises(KafkaProtocolError, match="CRC-32C mismatch in batch at offset 0"):
        classify_batches("t", 0, batches, keys={b"mine"}, check_crc=True)


def test_parse_truncated_trailing_batch_is_reported_not_parsed() -> None:
    first = _batch(0, [_record(0, b"k", b"a")])
    second = _batch(1, [_record(0, b"k", b"b" * 50)])
    for cut in (1, 11, 12, 61, len(second) - 1):
        batches, trailing = parse_record_batches(first + second[:cut])
        assert [b.base_offset for b in batches] == [0]
        assert trailing == cut


def test_parse_rejects_bad_crc_and_unsupported_codecs() -> None:
    with pytest.raises(KafkaProtocolError, match="CRC-32C mismatch"):
        parse_record_batches(_batch(0, [_record(0, b"k", b"v")], corrupt_crc=True))
    # Without verification the (otherwise valid) batch parses.
    assert parse_record_batches(_batch(0, [_record(0, b"k", b"v")], corrupt_crc=True), verify_crc=False)[0]
    for codec, name in ((2, "snappy"), (3, "lz4"), (4, "zstd")):
        with pytest.raises(KafkaProtocolError, match=f"compressed with {name}"):
            parse_record_batches(_batch(0, [_record(0, b"k", b"v")], attributes=codec))


def test_parse_rejects_legacy_message_format() -> None:
    legacy = bytearray(_batch(0, [_record(0, b"k", b"v")]))
    legacy[16] = 1  # magic byte
    with pytest.raises(KafkaProtocolError, match="magic 1"):
        parse_record_batches(bytes(legacy), verify_crc=False)


# -- against the real broker -------------------------------------------------------------------------


@pytest.fixture
def tx_producer(
    kafka_broker: KafkaBroker, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Producer]]:
    """``tx_producer(name)``: an initialised transactional producer with a unique transactional.id."""
    producers: list[Producer] = []
    prefix = f"{request.node.name}-{id(producers)}"

    def make(name: str, **overrides: Any) -> Producer:
        producer = Producer(
            transactional_producer_config(kafka_broker.bootstrap_servers, f"{prefix}-{name}", **overrides)
        )
        producer.init_transactions(30)
        producers.append(producer)
        return producer

    yield make
    for producer in producers:
        producer.flush(5)


def _send(producer: Producer, topic: str, value: bytes, partition: int = 0, key: bytes = b"k") -> None:
    """Produce one record and flush, so it is in the log (and interleaves) before the next step."""
    producer.produce(topic, value, key, partition=partition)
    remaining = producer.flush(10)
    assert remaining == 0


def _offsets_by_value(bootstrap: str, topic: str) -> dict[bytes | None, tuple[int, int]]:
    """value -> (partition, offset) for every data record, as a read_uncommitted consumer sees it."""
    return {
        r.value: (r.partition, r.offset)
        for r in consume_all(bootstrap, topic, isolation_level="read_uncommitted")
    }


@pytest.mark.kafka
def test_audit_with_a_key_filter_keeps_only_those_keys_under_the_same_rules(
    kafka_broker: KafkaBroker, topic_factory: TopicFactory, tx_producer: Callable[..., Producer]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=1)
    p = tx_producer("keys")
    p.begin_transaction()
    for n in range(3):
        _send(p, topic, b"mine-%d" % n, key=b"mine")
        _send(p, topic, b"other-%d" % n, key=b"other")
    p.commit_transaction(30)
    p.begin_transaction()
    _send(p, topic, b"mine-aborted", key=b"mine")
    _send(p, topic, b"other-aborted", key=b"other")
    p.abort_transaction(30)
    full = audit_topic(bootstrap, topic)
    mine = audit_topic(bootstrap, topic, keys={b"mine"})  # CRC-checked lazily, only where kept
    assert mine.committed_values() == [b"mine-0", b"mine-1", b"mine-2"]
    assert [r.value for r in mine.partitions[0].aborted] == [b"mine-aborted"]
    assert mine.committed == [r for r in full.committed if r.key == b"mine"]
    assert mine.partitions[0].end_offset == full.partitions[0].end_offset


def test_audit_single_partition_all_transaction_outcomes(
    kafka_broker: KafkaBroker, topic_factory: TopicFactory, tx_producer: Callable[..., Producer]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=1)

    produce(bootstrap, topic, [OutRecord(b"k", b"n1", 0, 1_700_000_000_001), OutRecord(b"k", b"n2", 0)])

    committer = tx_producer("committer")
    committer.begin_transaction()
    _send(committer, topic, b"c1")
    _send(committer, topic, b"c2")
    committer.commit_transaction(30)

    committer.begin_transaction()
    _send(committer, topic, b"a1")  # flushed, so the records really are in the log before the abort
    _send(committer, topic, b"a2")
    committer.abort_transaction(30)

    # Two transactional producers interleaving in one partition: x commits, y aborts.
    x, y = tx_producer("x"), tx_producer("y")
    x.begin_transaction()
    y.begin_transaction()
    _send(x, topic, b"x1")
    _send(y, topic, b"y1")
    _send(x, topic, b"x2")
    _send(y, topic, b"y2")
    x.commit_transaction(30)
    y.abort_transaction(30)

    produce(bootstrap, topic, [(b"k", b"n3")])

    # An open transaction: never committed, the producer stays alive during the audit.
    opener = tx_producer("open")
    opener.begin_transaction()
    _send(opener, topic, b"o1")
    _send(opener, topic, b"o2")

    result = audit_topic(bootstrap, topic)
    part = result.partitions[0]
    assert result.committed_values() == [b"n1", b"n2", b"c1", b"c2", b"x1", b"x2", b"n3"], result.summary()
    assert (part.aborted_count, part.pending_count) == (4, 2), result.summary()
    assert sorted(r.value or b"" for r in part.aborted) == [b"a1", b"a2", b"y1", b"y2"]
    assert [r.value for r in part.pending] == [b"o1", b"o2"]
    assert (part.commit_markers, part.abort_markers, part.control_batches) == (2, 2, 4)

    # Offsets, keys and timestamps are the log's: cross-check with a read_uncommitted consumer.
    where = _offsets_by_value(bootstrap, topic)
    assert [r.offset for r in part.committed] == [where[v][1] for v in result.committed_values()]
    assert [r.offset for r in part.committed] == sorted(r.offset for r in part.committed)
    assert all(r.key == b"k" for r in part.committed)
    assert part.committed[0].timestamp == 1_700_000_000_001
    assert [r.transactional for r in part.committed] == [False, False, True, True, True, True, False]
    # 11 data records + 4 markers before the open transaction's 2 records: the log ends at 17.
    assert part.end_offset == part.high_watermark == 17
    assert part.last_stable_offset == where[b"o1"][1]

    # The quirk: read_committed librdkafka consumer vs. the broker.
    seen = [r.value for r in consume_all(bootstrap, topic)]
    assert b"o1" not in seen and b"o2" not in seen, "open transactions must be hidden by every broker"
    with_aborted = [b"n1", b"n2", b"c1", b"c2", b"a1", b"a2", b"x1", b"y1", b"x2", b"y2", b"n3"]
    if kafka_broker.hides_aborted_transactions is True:
        assert seen == result.committed_values()
    elif kafka_broker.hides_aborted_transactions is False:
        # Tansu 0.6.0 keeps aborted records visible to read_committed consumers; the audit does not.
        assert seen == with_aborted
    else:
        assert seen in (result.committed_values(), with_aborted)  # external broker of unknown flavor

    # Ending the open transaction turns pending into aborted.
    opener.abort_transaction(30)
    after = audit_topic(bootstrap, topic)
    assert after.committed_values() == result.committed_values()
    assert (after.aborted_count, after.pending_count) == (6, 0)


@pytest.mark.kafka
def test_audit_multi_partition(
    kafka_broker: KafkaBroker, topic_factory: TopicFactory, tx_producer: Callable[..., Producer]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=3)

    committer = tx_producer("committer")
    committer.begin_transaction()
    for partition in range(3):
        _send(committer, topic, b"c-p%d" % partition, partition)
    committer.commit_transaction(30)

    aborter = tx_producer("aborter")
    aborter.begin_transaction()
    _send(aborter, topic, b"a-p0", 0)
    _send(aborter, topic, b"a-p2", 2)
    aborter.abort_transaction(30)

    produce(bootstrap, topic, [OutRecord(b"k", b"n-p1", 1), OutRecord(b"k", b"n-p2", 2)])

    opener = tx_producer("open")
    opener.begin_transaction()
    _send(opener, topic, b"o-p2", 2)

    result = audit_topic(bootstrap, topic)
    assert sorted(result.partitions) == [0, 1, 2]
    assert result.committed_values(0) == [b"c-p0"]
    assert result.committed_values(1) == [b"c-p1", b"n-p1"]
    assert result.committed_values(2) == [b"c-p2", b"n-p2"]
    counts = {p: (a.aborted_count, a.pending_count) for p, a in result.partitions.items()}
    assert counts == {0: (1, 0), 1: (0, 0), 2: (1, 1)}, result.summary()
    assert (result.aborted_count, result.pending_count) == (2, 1)
    assert [(r.partition, r.value) for r in result.committed] == [
        (0, b"c-p0"),
        (1, b"c-p1"),
        (1, b"n-p1"),
        (2, b"c-p2"),
        (2, b"n-p2"),
    ]
    # Partition 1 got no abort marker: the aborting producer never wrote to it.
    assert (result.partitions[1].commit_markers, result.partitions[1].abort_markers) == (1, 0)

    only = audit_topic(bootstrap, topic, partitions=[2])
    assert sorted(only.partitions) == [2]
    assert only.committed == result.partitions[2].committed
    opener.abort_transaction(30)


@pytest.mark.kafka
def test_audit_gzip_transaction_and_headers(
    kafka_broker: KafkaBroker, topic_factory: TopicFactory, tx_producer: Callable[..., Producer]
) -> None:
    topic = topic_factory(partitions=1)
    producer = tx_producer("gz", **{"compression.type": "gzip", "linger.ms": 50})
    producer.begin_transaction()
    for i in range(200):
        producer.produce(
            topic, b"value-%03d" % i, b"key-%d" % (i % 7), partition=0, headers=[("i", b"%d" % i)]
        )
    producer.commit_transaction(30)

    result = audit_topic(kafka_broker.bootstrap_servers, topic)
    part = result.partitions[0]
    assert result.committed_values() == [b"value-%03d" % i for i in range(200)]
    assert [r.headers for r in part.committed[:2]] == [(("i", b"0"),), (("i", b"1"),)]
    assert part.batches < 200, "records should have been batched (and gzip-compressed) by the producer"


@pytest.mark.kafka
def test_audit_survives_truncated_fetch_responses(
    kafka_broker: KafkaBroker,
    topic_factory: TopicFactory,
    tx_producer: Callable[..., Producer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Apache Kafka cuts the last batch of a fetch at max_bytes; Tansu never does, so simulate it.

    Every fetch response is cut to its first complete batch plus half of the next one. The reader must
    skip the partial batch, continue from the next offset and end with the same result.
    """
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=1)
    produce(bootstrap, topic, [(b"k", b"n%d" % i) for i in range(3)], **{"linger.ms": 0})
    producer = tx_producer("t")
    for outcome in ("commit", "abort", "commit"):
        producer.begin_transaction()
        _send(producer, topic, outcome.encode() + b"-1")
        _send(producer, topic, outcome.encode() + b"-2")
        if outcome == "commit":
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    expected = audit_topic(bootstrap, topic)

    real_fetch = _Client.fetch
    fetched_offsets: list[int] = []
    cut_responses = 0

    def truncating_fetch(self: _Client, *args: Any) -> tuple[int, int, memoryview | None]:
        nonlocal cut_responses
        error, high_watermark, records = real_fetch(self, *args)
        fetched_offsets.append(args[3])
        if records is not None and len(records) > 0:
            batches, _ = parse_record_batches(records, verify_crc=False)
            if len(batches) > 1:
                first_len = 12 + struct.unpack_from(">i", records, 8)[0]
                second_len = 12 + struct.unpack_from(">i", records, first_len + 8)[0]
                records = records[: first_len + second_len // 2]
                cut_responses += 1
        return error, high_watermark, records

    monkeypatch.setattr(_Client, "fetch", truncating_fetch)
    result = audit_topic(bootstrap, topic)

    assert cut_responses > 3
    assert fetched_offsets == sorted(fetched_offsets), "the fetch offset only moves forward"
    assert _summary(result) == _summary(expected)
    assert result.committed_values() == [
        b"n0",
        b"n1",
        b"n2",
        b"commit-1",
        b"commit-2",
        b"commit-1",
        b"commit-2",
    ]


@pytest.mark.kafka
def test_audit_errors(kafka_broker: KafkaBroker, topic_factory: TopicFactory) -> None:
    with pytest.raises(AuditError, match="does not exist"):
        audit_topic(kafka_broker.bootstrap_servers, "no-such-topic-for-the-audit-reader")
    topic = topic_factory(partitions=2)
    with pytest.raises(AuditError, match="does not exist"):
        audit_topic(kafka_broker.bootstrap_servers, topic, partitions=[5])
    empty = audit_topic(kafka_broker.bootstrap_servers, topic)
    assert [(p.partition, p.end_offset, len(p.committed)) for p in empty.partitions.values()] == [
        (0, 0, 0),
        (1, 0, 0),
    ]


def _summary(result: AuditResult) -> list[tuple[int, list[int], int, int, int]]:
    return [
        (p.partition, [r.offset for r in p.committed], p.aborted_count, p.pending_count, p.end_offset)
        for p in result.partitions.values()
    ]
