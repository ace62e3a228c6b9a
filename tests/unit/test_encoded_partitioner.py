"""A partitioner's encoded fast path (re-sharding routes store keys without decoding them) agrees
with partition() for every kind of key and msgpack header length."""

from __future__ import annotations

import random

import pytest

from eventapp.errors import ConfigurationError
from eventapp.partitioning import Crc32Partitioner, Murmur2Partitioner
from eventapp.state.keys import encode_key

KEYS: list[object] = [
    "",
    "a",
    "card-1",
    "x" * 31,  # fixstr
    "y" * 32,  # str8
    "z" * 300,  # str16
    "é" * 70_000,  # str32
    "ünïcødé-🙂",
    b"",
    b"\x00\xff",
    b"b" * 300,
    *(f"u{random.Random(7).randrange(10**9)}-{i}" for i in range(200)),
]


@pytest.mark.parametrize("partitioner", [Murmur2Partitioner(), Crc32Partitioner()], ids=["murmur2", "crc32"])
@pytest.mark.parametrize("partitions", [1, 7, 12])
def test_encoded_partitioner_agrees_with_partition(partitioner: Murmur2Partitioner, partitions: int) -> None:
    encoded = partitioner.encoded_partitioner(partitions)
    for key in KEYS:
        assert encoded(encode_key(key)) == partitioner.partition(key, partitions), key


def test_custom_key_bytes_go_through_the_decoded_key() -> None:
    partitioner = Murmur2Partitioner(key_bytes=lambda k: str(k).encode())
    encoded = partitioner.encoded_partitioner(12)
    for key in [1, -5, 10**12, "7", (1, "a")]:
        assert encoded(encode_key(key)) == partitioner.partition(key, 12)


def test_a_key_without_kafka_bytes_is_refused_as_by_partition() -> None:
    with pytest.raises(ConfigurationError, match="cannot tell which Kafka key bytes"):
        Murmur2Partitioner().encoded_partitioner(4)(encode_key(42))
