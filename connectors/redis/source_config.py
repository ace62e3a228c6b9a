"""Configuration of the Redis Streams source: :class:`RedisStreamSourceConfig`, the rule for stream
keys that can be split ids, and the client every Redis call of the source goes through."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import Pipeline
from redis.cluster import RedisCluster
from redis.retry import Retry

from eventapp.errors import ConfigurationError

from .errors import safe_url

__all__ = ["RedisStreamSourceConfig", "check_stream_key"]

_URL_SCHEMES = ("redis://", "rediss://", "unix://")
_DEFAULT_CONSUMER = "eventapp"
_DEFAULT_CLAIM_IDLE_MS = 60_000


def check_stream_key(key: str, fix: str) -> str:
    """``key`` if it can be a split id (split ids name checkpoint directories), else a
    :class:`ConfigurationError` naming it and ending with ``fix``."""
    if not isinstance(key, str):
        raise ConfigurationError(f"stream key {key!r} must be a str; {fix}")
    if not key or key in (".", "..") or "/" in key or "\x00" in key:
        raise ConfigurationError(
            f"stream key {key!r} cannot be read by the Redis stream source: each stream is a split "
            f"and its key is the split id, which names a checkpoint directory, so it must be "
            f"non-empty, not '.' or '..', and contain no '/' or NUL; {fix}"
        )
    return key


@dataclass(frozen=True, slots=True)
class RedisStreamSourceConfig:
    """Configuration of a :class:`~eventapp.connectors.redis.source.RedisStreamSource`.

    :param url: the Redis server, ``redis://[[user]:password@]host:port/db`` (``rediss://`` for
        TLS, ``unix://`` for a socket).
    :param streams: the stream keys to read; each is a split whose id is the key itself.
    :param pattern: instead of ``streams``: a glob (``"orders:*"``); the streams matching it are
        listed with ``SCAN ... MATCH pattern TYPE stream`` when the job starts (sorted). Streams
        created later are picked up while the job runs only with ``discovery_interval_ms``.
    :param discovery_interval_ms: with ``pattern``: look for new matching streams this often (ms of
        processing time) while the job runs, and read each new one from its first entry (Flink's
        ``partition.discovery.interval.ms``; :mod:`eventapp.runtime.discovery`). Streams then go to
        subtasks by a hash of their key (:func:`eventapp.assignment.owner_of`), and a job may start
        before any stream matches. Default ``None``: streams are listed once, at start.
    :param start: where a split without a restored position starts: ``"earliest"`` (its first
        entry still there) or ``"latest"`` (after its last entry when the reader opens). A restored
        position always wins.
    :param bounded: read each stream up to its last entry as of reader creation, then finish (for
        tests, backfills and benchmarks); else keep reading new entries.
    :param timestamp: the records' event time when ``timestamp_field`` is not set: ``"id"`` (the
        entry id's milliseconds part, the time Redis added it for auto-generated ids) or ``"none"``.
    :param timestamp_field: take the event time from this field of each entry instead (an int of
        epoch milliseconds); an entry without a valid one becomes an error record.
    :param value_field: the record's value is this field of each entry, decoded as JSON (orjson).
    :param value_decoder: the record's value is ``value_decoder(fields)``, ``fields`` being the
        entry's fields as ``dict[bytes, bytes]``. Default (neither option): the fields as
        ``dict[str, str]`` (UTF-8). A value that cannot be decoded becomes an error record.
    :param batch_size: entries fetched per stream per read (``XRANGE ... COUNT``); at most this many
        entries per stream are held in memory.
    :param block_ms: with nothing to hand out, an unbounded read waits up to this long (and the
        poll's timeout) for a new entry, on one stream at a time (``XREAD BLOCK``).
    :param name: printable name of the source (default ``redis:<streams or pattern>``).
    :param timeout_s: connect and command timeout of the Redis client (seconds).
    :param cluster: ``url`` names a node of a Redis Cluster: use a cluster client (every command the
        source sends names one key, so streams may live in any slots; ``pattern`` scans every
        primary).
    :param commit_prefix: the splits' committed checkpoints are the hashes
        ``<commit_prefix><job>:<stream>`` in the same Redis (:mod:`.commit`).
    :param group: read through this consumer group (created on each stream if missing): entries
        are delivered with ``XREADGROUP``, show in ``XPENDING`` and are acknowledged (``XACK``) once
        the checkpoint covering them committed (:mod:`.group_reader`). The job's checkpointed
        position stays the source of truth. Default: no group (``XRANGE``/``XREAD``).
    :param consumer: the consumer name in the group; keep one name per job (a restarted job finds
        its pending entries by it).
    :param claim_idle_ms: with a group, entries other consumers of the group left pending for
        longer than this are taken over (``XAUTOCLAIM``) when a split's reader opens.
    """

    url: str = "redis://localhost:6379/0"
    streams: Sequence[str] = ()
    pattern: str | None = None
    start: Literal["earliest", "latest"] = "earliest"
    bounded: bool = False
    timestamp: Literal["id", "none"] = "id"
    timestamp_field: str | None = None
    value_field: str | None = None
    value_decoder: Callable[[dict[bytes, bytes]], Any] | None = None
    batch_size: int = 1000
    block_ms: int = 100
    name: str | None = None
    timeout_s: float = 10.0
    commit_prefix: str = "eventapp:committed:"
    cluster: bool = False
    group: str | None = None
    consumer: str = _DEFAULT_CONSUMER
    claim_idle_ms: int = _DEFAULT_CLAIM_IDLE_MS
    discovery_interval_ms: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(_URL_SCHEMES):
            raise ConfigurationError(
                f"RedisStreamSourceConfig.url must be a Redis URL starting with "
                f"{', '.join(_URL_SCHEMES)}; got {self.url!r}"
            )
        self._check_streams()
        if self.start not in ("earliest", "latest"):
            raise ConfigurationError(
                f"RedisStreamSourceConfig.start must be 'earliest' or 'latest', got {self.start!r}"
            )
        if not isinstance(self.cluster, bool):
            raise ConfigurationError(f"RedisStreamSourceConfig.cluster must be a bool, got {self.cluster!r}")
        if not isinstance(self.bounded, bool):
            raise ConfigurationError(f"RedisStreamSourceConfig.bounded must be a bool, got {self.bounded!r}")
        self._check_values()
        for option in ("batch_size", "block_ms"):
            value = getattr(self, option)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(
                    f"RedisStreamSourceConfig.{option} must be an int >= 1, got {value!r}"
                )
        timeout = self.timeout_s
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigurationError(
                f"RedisStreamSourceConfig.timeout_s must be > 0 seconds, got {timeout!r}"
            )
        if self.block_ms >= timeout * 1000:
            raise ConfigurationError(
                f"RedisStreamSourceConfig.block_ms ({self.block_ms}) must be shorter than timeout_s "
                f"({timeout} s): a blocking read longer than the command timeout would fail; lower "
                f"block_ms (100 is plenty) or raise timeout_s"
            )
        if not isinstance(self.commit_prefix, str) or not self.commit_prefix:
            raise ConfigurationError(
                f"RedisStreamSourceConfig.commit_prefix must be a non-empty str, got {self.commit_prefix!r}"
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ConfigurationError(
                f"RedisStreamSourceConfig.name must be a non-empty str, got {self.name!r}"
            )
        self._check_group()
        self._check_discovery()

    def _check_discovery(self) -> None:
        interval = self.discovery_interval_ms
        if interval is None:
            return
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ConfigurationError(
                f"RedisStreamSourceConfig.discovery_interval_ms must be an int >= 1 (ms between two "
                f"looks for new streams, for example 10_000), or None; got {interval!r}"
            )
        if self.pattern is None:
            raise ConfigurationError(
                "RedisStreamSourceConfig.discovery_interval_ms needs pattern='prefix:*': named "
                "streams are all known at start; drop discovery_interval_ms or use a pattern"
            )
        if self.bounded:
            raise ConfigurationError(
                "RedisStreamSourceConfig: bounded=True reads the streams there are at start up to "
                "their last entry and finishes, so it discovers none later; drop bounded or "
                "discovery_interval_ms"
            )

    def _check_group(self) -> None:
        group, consumer, idle = self.group, self.consumer, self.claim_idle_ms
        if group is not None and (not isinstance(group, str) or not group):
            raise ConfigurationError(
                f"RedisStreamSourceConfig.group must be a consumer group name (a non-empty str, for "
                f"example the job's name), or None to read without a group; got {group!r}"
            )
        if not isinstance(consumer, str) or not consumer:
            raise ConfigurationError(
                f"RedisStreamSourceConfig.consumer must be a consumer name (a non-empty str), got "
                f"{consumer!r}; keep one name per job: a restarted job finds its pending entries by it"
            )
        if not isinstance(idle, int) or isinstance(idle, bool) or idle < 1:
            raise ConfigurationError(
                f"RedisStreamSourceConfig.claim_idle_ms must be an int >= 1 (how long, in ms, an entry "
                f"must have been pending at another consumer before it is taken over), got {idle!r}"
            )
        if group is None and (consumer != _DEFAULT_CONSUMER or idle != _DEFAULT_CLAIM_IDLE_MS):
            raise ConfigurationError(
                "RedisStreamSourceConfig: consumer and claim_idle_ms apply only to a consumer group: "
                "set group='<name>' (for example the job's name) to read through one, or drop them"
            )

    def _check_streams(self) -> None:
        streams, pattern = self.streams, self.pattern
        if isinstance(streams, str | bytes):
            raise ConfigurationError(
                f"RedisStreamSourceConfig.streams must be a list of stream keys, got the string "
                f"{streams!r}; write streams=[{streams!r}]"
            )
        keys = tuple(streams)
        object.__setattr__(self, "streams", keys)
        if bool(keys) == (pattern is not None):
            raise ConfigurationError(
                "RedisStreamSourceConfig needs exactly one of streams=[...] (the stream keys) or "
                f"pattern='prefix:*' (a glob the streams are found by); got streams={list(keys)!r}, "
                f"pattern={pattern!r}"
            )
        for key in keys:
            check_stream_key(key, "rename the stream, or leave it out of streams")
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ConfigurationError(f"RedisStreamSourceConfig.streams lists {duplicates} more than once")
        if pattern is not None and (not isinstance(pattern, str) or not pattern):
            raise ConfigurationError(
                f"RedisStreamSourceConfig.pattern must be a non-empty glob such as 'orders:*', "
                f"got {pattern!r}"
            )

    def _check_values(self) -> None:
        if self.timestamp not in ("id", "none"):
            raise ConfigurationError(
                f"RedisStreamSourceConfig.timestamp must be 'id' (the entry id's milliseconds) or "
                f"'none'; got {self.timestamp!r} (for a field of the entry, set timestamp_field)"
            )
        for option in ("timestamp_field", "value_field"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(
                    f"RedisStreamSourceConfig.{option} must be a field name (a non-empty str), got {value!r}"
                )
        if self.timestamp_field is not None and self.timestamp == "none":
            raise ConfigurationError(
                "RedisStreamSourceConfig: timestamp='none' and timestamp_field contradict each other; "
                "drop one of them"
            )
        if self.value_decoder is not None and not callable(self.value_decoder):
            raise ConfigurationError(
                f"RedisStreamSourceConfig.value_decoder must be a callable taking the entry's fields "
                f"(dict[bytes, bytes]), got {self.value_decoder!r}"
            )
        if self.value_decoder is not None and self.value_field is not None:
            raise ConfigurationError(
                "RedisStreamSourceConfig: set value_field (a JSON field) or value_decoder (a callable "
                "on all fields), not both"
            )

    @property
    def display_name(self) -> str:
        if self.name is not None:
            return self.name
        what = self.pattern if self.pattern is not None else ",".join(self.streams)
        return f"redis:{what}"

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden (for messages and logs)."""
        return safe_url(self.url)

    def transaction(self, client: redis.Redis, name: bytes) -> Pipeline:
        """``MULTI``/``EXEC`` for commands on the one stream ``name``: on a cluster, the pipeline of
        the node serving its slot (redis-py's cluster transactions return unparsed replies)."""
        if self.cluster:
            cluster: Any = client
            client = cluster.get_redis_connection(cluster.get_node_from_key(name))
        return client.pipeline(transaction=True)

    def client(self) -> redis.Redis:
        """A new client (bytes replies) with this config's timeouts and a few quick retries of
        connection errors; the caller closes it. With ``cluster``, a ``RedisCluster`` (which has the
        same commands: the source's calls are typed against ``redis.Redis``)."""
        if self.cluster:
            cluster: Any = RedisCluster.from_url(
                self.url,
                decode_responses=False,
                socket_connect_timeout=self.timeout_s,
                socket_timeout=self.timeout_s,
                retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
            )
            client: redis.Redis = cluster
            return client
        return redis.Redis.from_url(
            self.url,
            decode_responses=False,
            socket_connect_timeout=self.timeout_s,
            socket_timeout=self.timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
        )
