"""The reader of the aborted-records-visible quirk (connectors/kafka/marker_reader.py) against a
real broker: committed records in offset order, and a fetch answered from a later offset than
asked (Tansu 0.6.0 does this under load) fetched again instead of skipping records."""

from __future__ import annotations

import time
from typing import Any

import pytest

from eventapp.connectors.kafka import KafkaSourceConfig
from eventapp.connectors.kafka.marker_reader import MarkerHonouringReader
from eventapp.connectors.kafka.quirks import BrokerQuirks
from tests.support.broker import KafkaBroker, OutRecord, produce

pytestmark = pytest.mark.kafka


def _read(reader: MarkerHonouringReader, count: int) -> list[int]:
    positions: list[int] = []
    deadline = time.monotonic() + 30
    while len(positions) < count:
        assert time.monotonic() < deadline, f"read {positions} of {count}"
        positions.extend(r.position for r in reader.poll(100, 0.1) if r.position is not None)
    return positions


def test_a_fetch_answered_from_a_later_offset_is_fetched_again(
    kafka_broker: KafkaBroker, topic_factory: Any, group_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = topic_factory(prefix="gaps", partitions=1)
    for n in range(10):  # one batch per record
        produce(kafka_broker.bootstrap_servers, topic, [OutRecord(None, b"%d" % n, 0)])
    config = KafkaSourceConfig(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        topics=[topic],
        group_id=group_id,
        broker_quirks=BrokerQuirks.tansu(),
    )
    reader = MarkerHonouringReader(config, [f"{topic}-0"], {})
    real = reader._client.fetch
    asked: list[int] = []

    def skipping(node: int, name: str, partition: int, offset: int, max_bytes: int, wait_ms: int) -> Any:
        asked.append(offset)
        # The first answer comes from 5 records further on, as Tansu's did.
        return real(node, name, partition, offset + 5 if len(asked) == 1 else offset, max_bytes, wait_ms)

    monkeypatch.setattr(reader._client, "fetch", skipping)
    try:
        assert _read(reader, 10) == list(range(10))
    finally:
        reader.close()
    assert asked[:2] == [0, 0]  # the skipped answer was not applied: fetched again from 0
