"""The Redis Streams source: each stream is a split, its key the split id, read from the entry id
after the last one processed (positions: :mod:`.stream_ids`; reading: :mod:`.stream_reader`).

Streams are named (``streams=[...]``) or found by a glob (``pattern``, with ``SCAN ... MATCH
pattern TYPE stream``) when the job starts; with ``discovery_interval_ms`` the running job also
looks for new matching streams that often and reads each new one from its first entry (the source
is then a :class:`~eventapp.source.DiscoveringSource`). By default the source reads streams on its
own, without a consumer group: positions are checkpointed by the job, so a restored job continues
exactly after the last entry its checkpoint covers, and the entries stay in the stream for other
readers. With ``group=...`` it reads through a consumer group (``XREADGROUP``; pending entries
first, ``XAUTOCLAIM`` of abandoned ones; ``XACK`` by the commit point once a checkpoint committed;
:mod:`.group_reader`), the checkpointed positions still deciding what is read. Trim streams
(``MAXLEN``/``MINID``) only below what the job has committed: entries removed before the job read
them are reported as a :class:`~eventapp.errors.SourceError`, never skipped.

Each entry becomes a record whose value is its fields (``dict[str, str]``), one JSON field, or what
``value_decoder`` makes of the fields, and whose event time is the entry id's milliseconds or a
field. An entry that cannot be decoded becomes an error record (``value=None``, ``raw`` = its
fields, ``error`` set) for the job's error policy.

With Redis Cluster, every command the reader sends names a single stream, so streams of any slots
can be read (see :mod:`.stream_reader`); the client is a ``redis.Redis`` of one node, and listing
streams by ``pattern`` scans that node only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import orjson
import redis
import structlog

from eventapp.errors import ConfigurationError, SerializationError, SourceError
from eventapp.source import SourceRecord

from .commit import RedisCommitPoint
from .errors import redis_failure
from .group_reader import RedisGroupStreamReader
from .source_config import RedisStreamSourceConfig, check_stream_key
from .stream_ids import format_id, parse_id
from .stream_reader import RedisStreamReader

__all__ = ["RedisStreamSource"]

log = structlog.get_logger("eventapp.connectors.redis.source")

T = TypeVar("T")


class RedisStreamSource(Generic[T]):
    """A Redis Streams source (implements :class:`eventapp.source.Source`); see the module docstring
    and :class:`~.source_config.RedisStreamSourceConfig`."""

    def __init__(self, config: RedisStreamSourceConfig) -> None:
        if not isinstance(config, RedisStreamSourceConfig):
            raise ConfigurationError(f"RedisStreamSource needs a RedisStreamSourceConfig, got {config!r}")
        self._config = config
        self._decode = _EntryDecoder(config)
        self._commit_client: redis.Redis | None = None

    @property
    def config(self) -> RedisStreamSourceConfig:
        return self._config

    @property
    def name(self) -> str:
        return self._config.display_name

    def __repr__(self) -> str:
        return f"RedisStreamSource({self.name!r}, url={self._config.safe_url!r})"

    @property
    def discovery_interval_ms(self) -> int | None:
        """:class:`~eventapp.source.DiscoveringSource`: how often a running job looks for new
        streams (``None``: never)."""
        return self._config.discovery_interval_ms

    def discover_splits(self) -> list[str]:
        """The streams matching ``pattern`` now, possibly none (sorted)."""
        return self._matching(require=False)

    def splits(self) -> list[str]:
        """The configured streams, or those matching ``pattern`` now (sorted; with discovery there
        may be none yet)."""
        config = self._config
        if config.pattern is None:
            return list(config.streams)
        return self._matching(require=config.discovery_interval_ms is None)

    def _matching(self, *, require: bool) -> list[str]:
        config = self._config
        assert config.pattern is not None
        what = f"Redis stream source {self.name!r}: listing streams (SCAN MATCH {config.pattern} TYPE stream)"
        client = config.client()
        try:
            found = set(client.scan_iter(match=config.pattern, count=1000, _type="stream"))
        except redis.exceptions.RedisError as exc:
            raise redis_failure(SourceError, what, config.url, exc) from exc
        finally:
            client.close()
        keys = sorted(_key_text(k, config.pattern) for k in found)
        if not keys and require:
            raise SourceError(
                f"Redis stream source {self.name!r}: no stream matches pattern {config.pattern!r} on "
                f"Redis {config.safe_url}: create the streams first (XADD), fix the pattern, or set "
                f"discovery_interval_ms to start before they exist"
            )
        log.debug("redis.source.streams_listed", source=self.name, pattern=config.pattern, streams=keys)
        return keys

    def create_reader(self, splits: Sequence[str], start_positions: Mapping[str, int]) -> RedisStreamReader:
        config = self._config
        for split in splits:
            if config.pattern is None and split not in config.streams:
                raise ConfigurationError(
                    f"split {split!r} is not a split of Redis stream source {self.name!r} (streams "
                    f"{list(config.streams)})"
                )
            check_stream_key(split, "it cannot be a split of a Redis stream source")
        if config.group is not None:
            return RedisGroupStreamReader(config, splits, start_positions, self._decode)
        return RedisStreamReader(config, splits, start_positions, self._decode)

    # -- CommittingSource: the splits' committed checkpoints live in the same Redis (.commit) --------

    def create_commit_point(self, job: str, split: str, exactly_once: bool) -> RedisCommitPoint:
        """The commit point of ``split``: the hash ``<commit_prefix><job>:<split>``, fenced by epoch;
        with a consumer group, it acknowledges the committed entries of the source's consumer. The
        same in exactly-once and at-least-once mode (it has no transaction for sinks)."""
        config = self._config
        if self._commit_client is None:
            self._commit_client = config.client()
        group = config.group
        return RedisCommitPoint(
            self._commit_client,
            config.url,
            f"{config.commit_prefix}{job}:{split}",
            split,
            group=group,
            consumer=None if group is None else config.consumer,
        )

    def validate_checkpointing(self, interval_ms: int, exactly_once: bool) -> None:
        """Any interval works: nothing in Redis times out between two checkpoints."""


def _key_text(key: bytes, pattern: str) -> str:
    """A key found by SCAN as a split id (or a ConfigurationError saying what to do)."""
    fix = f"rename the stream, or narrow pattern {pattern!r} so that it does not match it"
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(
            f"stream key {key!r} is not UTF-8 text, so it cannot be a split id; {fix}"
        ) from None
    return check_stream_key(text, fix)


class _EntryDecoder:
    """Makes a stream entry a :class:`SourceRecord` as the config says (value, event time), or an
    error record when it cannot."""

    __slots__ = ("_decoder", "_field", "_how", "_id_time", "_time_field", "_time_name")

    def __init__(self, config: RedisStreamSourceConfig) -> None:
        self._id_time = config.timestamp == "id" and config.timestamp_field is None
        self._time_name = config.timestamp_field
        self._time_field = None if config.timestamp_field is None else config.timestamp_field.encode()
        self._field = None if config.value_field is None else config.value_field.encode()
        self._decoder: Callable[[dict[bytes, bytes]], Any] | None = config.value_decoder
        if config.value_decoder is not None:
            self._how = (
                f"value_decoder {getattr(config.value_decoder, '__qualname__', config.value_decoder)!r}"
            )
        elif config.value_field is not None:
            self._how = f"JSON of field {config.value_field!r}"
        else:
            self._how = "UTF-8 fields"

    def __call__(self, split: str, entry_id: bytes, fields: dict[bytes, bytes]) -> SourceRecord[Any]:
        position = parse_id(entry_id)
        timestamp = position >> 64 if self._id_time else None
        if self._time_field is not None:
            raw = fields.get(self._time_field)
            if raw is None or not raw.isdigit():
                shown = "missing" if raw is None else f"{raw!r}, not an int of epoch milliseconds"
                bad_time = SourceError(
                    f"the timestamp field {self._time_name!r} of entry {format_id(position)} of stream "
                    f"{split!r} is {shown}"
                )
                return SourceRecord(split, None, None, position, raw=fields, error=bad_time)
            timestamp = int(raw)
        try:
            value = self._value(fields)
        except Exception as exc:  # noqa: BLE001 - any decoding failure becomes an error record
            error = SerializationError(
                f"cannot decode entry {format_id(position)} of stream {split!r} with {self._how}: "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            return SourceRecord(split, None, timestamp, position, raw=fields, error=error)
        return SourceRecord(split, value, timestamp, position)

    def _value(self, fields: dict[bytes, bytes]) -> Any:
        if self._decoder is not None:
            return self._decoder(fields)
        if self._field is not None:
            payload = fields.get(self._field)
            if payload is None:
                raise KeyError(f"the entry has no field {self._field.decode()!r}")
            return orjson.loads(payload)
        return {k.decode("utf-8"): v.decode("utf-8") for k, v in fields.items()}
