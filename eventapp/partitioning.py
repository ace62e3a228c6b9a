"""How a job's keys map to its input partitions, and to key groups.

A keyed operator's state lives in the split whose records carry the key, so when a savepoint is
restored onto a different number of input partitions, each key's state must move to the partition
the key's records now go to: the partition the *producers* of the input topic pick. The job declares
that choice with a :class:`Partitioner` (``JobConfig.partitioner``); the default is Apache Kafka's
default partitioner (murmur2 of the key bytes, as the Java client and librdkafka's
``murmur2_random`` do). librdkafka's own default, ``consistent_random``, is CRC-32 of the key bytes:
:class:`Crc32Partitioner`.

A partitioner maps the *state key* (what ``key_by`` returns) to a partition, so it also needs the
bytes the producers used as the Kafka key: by default a ``str`` key's UTF-8 bytes and ``bytes`` as
they are; pass ``key_bytes`` for anything else.

**Key groups** (Flink's ``KeyGroupRangeAssignment``): every key belongs to one of
``max_parallelism`` key groups, ``murmur2(encoded key) mod max_parallelism``. Savepoints store each
split's entries grouped by key group; ``max_parallelism`` is fixed when a job's first savepoint is
taken and a restore with another one is refused, as in Flink.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from murmurhash2 import murmurhash2

from eventapp.errors import ConfigurationError
from eventapp.state.keys import decode_key

__all__ = [
    "Crc32Partitioner",
    "Murmur2Partitioner",
    "Partitioner",
    "default_key_bytes",
    "key_group",
    "topic_partitions",
]

#: The seed of Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2).
KAFKA_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as a non-negative int (``Utils.toPositive(Utils.murmur2(data))``)."""
    return int(murmurhash2(data, KAFKA_SEED)) & 0x7FFFFFFF


def key_group(encoded_key: bytes, max_parallelism: int) -> int:
    """The key group of a state key (``encoded_key``: its bytes in the store, :func:`encode_key`)."""
    return murmur2(encoded_key) % max_parallelism


def topic_partitions(splits: Iterable[str]) -> dict[str, int] | None:
    """Per topic, its number of partitions, when ``splits`` are named as Kafka sources name them
    (``<topic>-<partition>``) and each topic's are numbered ``0..N-1``; else ``None``."""
    numbers: dict[str, set[int]] = {}
    for split in splits:
        topic, _, number = split.rpartition("-")
        if not topic or not number.isdigit():
            return None
        numbers.setdefault(topic, set()).add(int(number))
    if any(found != set(range(len(found))) for found in numbers.values()):
        return None
    return {topic: len(found) for topic, found in numbers.items()}


def default_key_bytes(key: Any) -> bytes:
    """The Kafka key bytes of a state key: UTF-8 of a ``str``, a ``bytes`` key as it is."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    raise ConfigurationError(
        f"cannot tell which Kafka key bytes state key {key!r} ({type(key).__name__}) was produced with; "
        f"give the job's partitioner a key_bytes function, for example "
        f"JobConfig(partitioner=Murmur2Partitioner(key_bytes=lambda k: str(k).encode()))"
    )


@runtime_checkable
class Partitioner(Protocol):
    """Which of ``partitions`` input partitions the records of a state key go to."""

    def partition(self, key: Any, partitions: int) -> int: ...

    def describe(self) -> str:
        """A short name for savepoint metadata and messages, for example ``"murmur2"``."""
        ...


@dataclass(frozen=True)
class Murmur2Partitioner:
    """Apache Kafka's default partitioner: ``toPositive(murmur2(key bytes)) % partitions`` (the Java
    client's, and librdkafka's ``partitioner=murmur2_random`` for non-empty keys)."""

    key_bytes: Callable[[Any], bytes] = field(default=default_key_bytes)

    def partition(self, key: Any, partitions: int) -> int:
        return murmur2(self.key_bytes(key)) % partitions

    def encoded_partitioner(self, partitions: int) -> Callable[[bytes], int]:
        """:meth:`partition` as a function of a key's store bytes (:func:`encode_key`), which is
        what re-sharding has: a ``str`` or ``bytes`` key is not decoded (runs once per key)."""
        key_bytes = self.key_bytes
        if key_bytes is not default_key_bytes:
            return lambda encoded: murmur2(key_bytes(decode_key(encoded))) % partitions
        headers = _STR_BIN_HEADERS

        def partition(encoded: bytes) -> int:
            header = headers.get(encoded[0])
            if header is None:
                return murmur2(default_key_bytes(decode_key(encoded))) % partitions
            return (murmurhash2(encoded[header:], KAFKA_SEED) & 0x7FFFFFFF) % partitions  # murmur2()

        return partition

    def encoded_partitions(self, partitions: int) -> Callable[[list[bytes]], list[int]]:
        """:meth:`encoded_partitioner` for many keys at once (one list comprehension when every key
        is a ``str`` or ``bytes`` with the default key bytes)."""
        single = self.encoded_partitioner(partitions)
        if self.key_bytes is not default_key_bytes:
            return lambda keys: list(map(single, keys))
        headers = _STR_BIN_HEADERS

        def many(keys: list[bytes]) -> list[int]:
            try:
                return [(murmurhash2(k[headers[k[0]] :], KAFKA_SEED) & 0x7FFFFFFF) % partitions for k in keys]
            except KeyError:  # a key of another type: decoded one by one
                return list(map(single, keys))

        return many

    def describe(self) -> str:
        return "murmur2"


@dataclass(frozen=True)
class Crc32Partitioner:
    """librdkafka's default partitioner (``consistent_random`` for non-empty keys):
    ``crc32(key bytes) % partitions``."""

    key_bytes: Callable[[Any], bytes] = field(default=default_key_bytes)

    def partition(self, key: Any, partitions: int) -> int:
        return zlib.crc32(self.key_bytes(key)) % partitions

    def encoded_partitioner(self, partitions: int) -> Callable[[bytes], int]:
        """As :meth:`Murmur2Partitioner.encoded_partitioner`."""
        key_bytes = self.key_bytes
        return lambda encoded: zlib.crc32(_kafka_key_bytes(key_bytes, encoded)) % partitions

    def describe(self) -> str:
        return "crc32"


#: msgpack headers of a str or bin, and how many bytes they take (the payload follows).
_STR_BIN_HEADERS = {0xD9: 2, 0xC4: 2, 0xDA: 3, 0xC5: 3, 0xDB: 5, 0xC6: 5} | {t: 1 for t in range(0xA0, 0xC0)}


def _kafka_key_bytes(key_bytes: Callable[[Any], bytes], encoded_key: bytes) -> bytes:
    """``key_bytes(decode_key(encoded_key))``; with the default key bytes, a str's UTF-8 or a bytes
    key is sliced out of its msgpack encoding instead."""
    if key_bytes is default_key_bytes:
        header = _STR_BIN_HEADERS.get(encoded_key[0])
        if header is not None:
            return encoded_key[header:]
    return key_bytes(decode_key(encoded_key))
