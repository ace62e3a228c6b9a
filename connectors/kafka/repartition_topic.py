"""The admin side of a ``key_by`` repartition topic: creating it with the shuffle's partition count
(and refusing an existing topic with another count), and deleting the records the shuffle's readers
have consumed and committed (Kafka Streams purges its repartition topics the same way).

* :func:`ensure_repartition_topic` creates a missing topic (the broker's default replication factor,
  ``cleanup.policy=delete``, ``retention.ms=-1``: a shuffle record must stay until it is read, however
  long the job is stopped; consumed records are deleted by the purge instead). A topic another worker
  created concurrently is fine. An existing topic with another partition count is never changed: the
  shuffle's partition of a key depends on the count, and records already in the topic were routed by
  the old one. The :class:`~eventapp.errors.ConfigurationError` says how to proceed.
* :class:`RepartitionPurger` deletes, per partition, the records before an offset (``DeleteRecords``).
  The purge is a space optimisation: the records are committed as read either way, so a failure is
  logged (``shuffle.purge_failed``) and never raised. After a failure the purger skips purges for a
  while (:data:`PURGE_RETRY_INITIAL_S`, doubling to :data:`PURGE_RETRY_MAX_S`): a later purge deletes
  everything before its own offsets, so nothing is lost by skipping, and a broker that cannot purge
  is not asked at every checkpoint.

Measured on Tansu 0.6.0 (the embedded test broker, ``memory://`` storage): ``DeleteRecords`` is not
implemented. The broker's connection task panics (``not yet implemented`` at
``tansu-storage/src/dynostore.rs:641``; the broker keeps running and serving other requests) and
librdkafka reports ``_TRANSPORT`` for the request, then ``_NOENT`` ("Failed to query partition
leaders") for requests made while it reconnects; nothing is deleted. On Tansu the purge therefore
takes the warning path above, which is why no broker quirk is needed for it. Apache Kafka deletes the
records (``DeleteRecords``, KIP-107).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventapp.errors import ConfigurationError, SourceError

from .client_settings import admin_settings
from .config_checks import check_bootstrap, check_topic_name
from .errors import describe_kafka_error, kafka_error_of

__all__ = [
    "PURGE_FAILED_EVENT",
    "PURGE_RETRY_INITIAL_S",
    "PURGE_RETRY_MAX_S",
    "REPARTITION_TOPIC_CONFIGS",
    "RepartitionPurger",
    "ensure_repartition_topic",
]

log = structlog.get_logger(__name__)

#: Configs of a created repartition topic: nothing is deleted by time; the purge deletes what was read.
REPARTITION_TOPIC_CONFIGS: Final[Mapping[str, str]] = {"cleanup.policy": "delete", "retention.ms": "-1"}

#: The warning logged when a purge fails (fields ``topic``, ``partitions``, ``error``, ``retry_in_s``).
PURGE_FAILED_EVENT: Final = "shuffle.purge_failed"
#: After a failed purge, purges are skipped for this long; each further failure doubles it ...
PURGE_RETRY_INITIAL_S: Final = 5.0
#: ... up to this.
PURGE_RETRY_MAX_S: Final = 300.0


def ensure_repartition_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    *,
    timeout_s: float = 30.0,
    client_config: Mapping[str, Any] | None = None,
) -> None:
    """Make sure repartition topic ``topic`` exists with ``partitions`` partitions, creating it if it
    is missing (never changing an existing one).

    :param client_config: librdkafka settings of the job's clients; their connection settings
        (security, SASL, SSL, client id, sockets) are used for the admin client.
    :raises ConfigurationError: on invalid arguments, or when the topic exists with another
        partition count (the message names both counts and the fix).
    :raises SourceError: when the broker cannot be asked, or refuses to create the topic.
    """
    where = "ensure_repartition_topic"
    bootstrap = check_bootstrap(bootstrap_servers, where)
    check_topic_name(topic, f"{where}(topic)")
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise ConfigurationError(f"{where}({topic!r}): partitions must be an int >= 1, got {partitions!r}")
    _check_timeout(timeout_s, f"{where}({topic!r})")
    admin = AdminClient(admin_settings(bootstrap, client_config or {}))
    existing = _partition_count(admin, topic, timeout_s)
    if existing is None:
        _create(admin, topic, partitions, timeout_s)
        existing = _wait_visible(admin, topic, timeout_s)
    if existing != partitions:
        raise ConfigurationError(
            f"repartition topic {topic!r} on {bootstrap} has {existing} partition(s), but this key_by "
            f"shuffles into {partitions}; eventapp never changes an existing repartition topic (the "
            f"records in it were routed by its partition count). Either keep the topic: "
            f"key_by(..., partitions={existing}); or change the count: stop the job with everything in "
            f"the topic consumed and committed (a drained savepoint: eventapp stop JOB --savepoint DIR "
            f"--drain), delete the topic (it holds only in-flight shuffle records), and start the job "
            f"again (from the savepoint): the topic is created with {partitions} partition(s)"
        )


def _check_timeout(timeout_s: object, where: str) -> None:
    if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool) or timeout_s <= 0:
        raise ConfigurationError(f"{where}: timeout_s must be a number of seconds > 0, got {timeout_s!r}")


def _partition_count(admin: AdminClient, topic: str, timeout_s: float) -> int | None:
    """The partition count of ``topic`` once every partition has a leader; ``None`` if it is missing
    or not ready yet."""
    try:
        # All topics, not list_topics(topic): a metadata request naming a topic makes some brokers
        # (Tansu, Kafka with auto.create.topics.enable) create it, with their default partition count.
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise SourceError(
            f"repartition topic {topic!r}: cannot read topic metadata: "
            f"{describe_kafka_error(kafka_error_of(exc), exc)}"
        ) from exc
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        return None
    if any(p.leader < 0 or p.error is not None for p in described.partitions.values()):
        return None
    return len(described.partitions)


def _create(admin: AdminClient, topic: str, partitions: int, timeout_s: float) -> None:
    futures = admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=partitions,
                replication_factor=-1,  # the broker's default (Kafka >= 2.4; Tansu accepts it)
                config=dict(REPARTITION_TOPIC_CONFIGS),
            )
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    try:
        futures[topic].result(timeout=timeout_s)
    except KafkaException as exc:
        error = kafka_error_of(exc)
        if error is not None and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return  # another worker created it: its partition count is checked like any other
        raise SourceError(
            f"cannot create repartition topic {topic!r} ({partitions} partitions): "
            f"{describe_kafka_error(error, exc)}; create it yourself ({partitions} partitions, "
            f"cleanup.policy=delete, retention.ms=-1)"
        ) from exc
    except concurrent.futures.TimeoutError as exc:
        raise SourceError(
            f"cannot create repartition topic {topic!r}: no answer from the broker in {timeout_s}s"
        ) from exc
    log.info("shuffle.repartition_topic_created", topic=topic, partitions=partitions)


def _wait_visible(admin: AdminClient, topic: str, timeout_s: float) -> int:
    """Wait until the (just created) topic shows in metadata with a leader for every partition."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = _partition_count(admin, topic, max(0.001, min(5.0, deadline - time.monotonic())))
        if count is not None:
            return count
        if time.monotonic() > deadline:
            raise SourceError(
                f"repartition topic {topic!r} was created but did not show in metadata with a leader "
                f"for every partition within {timeout_s}s"
            )
        time.sleep(0.05)


class RepartitionPurger:
    """Deletes the consumed and committed records of one repartition topic (``DeleteRecords``).

    One admin client for the purger's life. Thread-safe. Failures are logged, never raised (see the
    module docstring).

    :param client_config: librdkafka settings of the job's clients (their connection settings are
        used, as in :func:`ensure_repartition_topic`).
    :param timeout_s: how long one :meth:`purge` waits for the broker.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        client_config: Mapping[str, Any] | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        where = f"RepartitionPurger({topic!r})"
        bootstrap = check_bootstrap(bootstrap_servers, "RepartitionPurger")
        check_topic_name(topic, "RepartitionPurger(topic)")
        _check_timeout(timeout_s, where)
        self._topic = topic
        self._timeout_s = float(timeout_s)
        self._admin: AdminClient | None = AdminClient(admin_settings(bootstrap, client_config or {}))
        self._lock = threading.Lock()
        #: partition -> the offset before which records were deleted (by this purger).
        self._purged: dict[int, int] = {}
        self._retry_in_s = 0.0
        self._skip_until = 0.0

    @property
    def topic(self) -> str:
        return self._topic

    def purge(self, offsets: Mapping[int, int]) -> None:
        """Delete the records before ``offsets[partition]`` in each partition: the readers consumed
        and committed them. Offsets at or below what this purger already deleted are skipped; so
        is the whole call for a while after a failure. Never raises for broker failures."""
        with self._lock:
            wanted = [
                TopicPartition(self._topic, partition, offset)
                for partition, offset in sorted(offsets.items())
                if offset > self._purged.get(partition, 0)
            ]
            if not wanted:
                return
            admin = self._admin
            if admin is None:
                log.warning(
                    PURGE_FAILED_EVENT,
                    topic=self._topic,
                    partitions=[tp.partition for tp in wanted],
                    error="the purger is closed",
                )
                return
            now = time.monotonic()
            if now < self._skip_until:
                log.debug("shuffle.purge_skipped", topic=self._topic, retry_in_s=self._skip_until - now)
                return
            failed = self._delete(admin, wanted)
            for tp in wanted:
                if tp.partition not in failed:
                    self._purged[tp.partition] = tp.offset
            if not failed:
                self._retry_in_s = 0.0
                log.debug(
                    "shuffle.purged", topic=self._topic, offsets={tp.partition: tp.offset for tp in wanted}
                )
                return
            self._retry_in_s = min(PURGE_RETRY_MAX_S, max(PURGE_RETRY_INITIAL_S, self._retry_in_s * 2))
            self._skip_until = time.monotonic() + self._retry_in_s
            errors = sorted(set(failed.values()))
            log.warning(
                PURGE_FAILED_EVENT,
                topic=self._topic,
                partitions=sorted(failed),
                error="; ".join(errors),
                retry_in_s=self._retry_in_s,
            )

    def _delete(self, admin: AdminClient, wanted: list[TopicPartition]) -> dict[int, str]:
        """Send one ``DeleteRecords`` and wait for it; partition -> error description of each
        partition that failed."""
        timeout = self._timeout_s
        try:
            futures = admin.delete_records(wanted, request_timeout=timeout, operation_timeout=timeout)
        except (KafkaException, ValueError, TypeError) as exc:
            reason = describe_kafka_error(kafka_error_of(exc), exc)
            return {tp.partition: reason for tp in wanted}
        done, _ = concurrent.futures.wait(futures.values(), timeout=timeout)
        failed: dict[int, str] = {}
        for tp, future in futures.items():
            if future not in done:
                failed[tp.partition] = f"no answer from the broker in {timeout}s"
                continue
            failure = future.exception()
            if failure is not None:
                failed[tp.partition] = describe_kafka_error(kafka_error_of(failure), failure)
        return failed

    def close(self) -> None:
        """Release the admin client (confluent-kafka frees it when the last reference goes).
        Idempotent; a purge after close logs ``shuffle.purge_failed`` and does nothing."""
        with self._lock:
            self._admin = None

    def __repr__(self) -> str:
        return f"RepartitionPurger({self._topic!r})"
