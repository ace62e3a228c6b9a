"""Embedded defaults shared by the Redis/Kafka examples: a Redis (``$EXAMPLE_REDIS_URL``, else an
:class:`~eventapp.connectors.redis.EmbeddedRedis`), a Kafka-protocol broker
(``$EXAMPLE_BOOTSTRAP_SERVERS``, else the embedded Tansu broker), and writing demo input to them."""

from __future__ import annotations

import contextlib
import os
import uuid
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from eventapp.connectors.kafka.quirks import QUIRKS_ENVIRONMENT_VARIABLE
from eventapp.connectors.redis import EmbeddedRedis
from eventapp.embedded_broker import EmbeddedBroker

__all__ = ["kafka", "partition_of", "redis_url", "write_kafka", "write_streams"]


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """``$EXAMPLE_REDIS_URL``, or a redis-server started for the example (stopped at the end)."""
    external = os.environ.get("EXAMPLE_REDIS_URL")
    if external:
        yield external
        return
    with EmbeddedRedis() as server:
        yield server.url


@contextlib.contextmanager
def kafka() -> Iterator[str]:
    """``$EXAMPLE_BOOTSTRAP_SERVERS``, or the embedded broker (with its quirks declared)."""
    external = os.environ.get("EXAMPLE_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    os.environ.setdefault(QUIRKS_ENVIRONMENT_VARIABLE, "tansu")
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


def partition_of(key: str, partitions: int) -> int:
    """A stable partition (stream index) for ``key``, so each key's records stay in one split."""
    return zlib.crc32(key.encode()) % partitions


def write_streams(url: str, streams: Sequence[str], records: Sequence[dict[str, Any]], key: str) -> None:
    """Each record as JSON in field ``json`` of the stream its ``key`` field maps to (rule updates,
    which have no key, go to the first stream)."""
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for record in records:
        index = partition_of(str(record[key]), len(streams)) if key in record else 0
        pipe.xadd(streams[index], {"json": orjson.dumps(record)})
    pipe.execute()
    client.close()


def write_kafka(bootstrap: str, records: Sequence[dict[str, Any]], key: str, partitions: int) -> str:
    """A new topic with ``records`` as JSON, keyed by their ``key`` field; returns its name."""
    topic = f"example-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for record in records:
        k = str(record[key]) if key in record else None
        partition = 0 if k is None else partition_of(k, partitions)
        producer.produce(topic, orjson.dumps(record), k, partition=partition)
    producer.flush(30)
    return topic
