"""The Redis sink: one writer per input split, exactly-once or at-least-once
(:class:`~eventapp.connectors.redis.sink_config.RedisDelivery`).

Exactly-once writers are :class:`~eventapp.sink.TwoPhaseSinkWriter`\\ s: they hold what their split
writes, hand it to the checkpoint (stored with the split's snapshot) and apply it with
:data:`~eventapp.connectors.redis.apply_script.APPLY_SCRIPT` once the checkpoint committed, under
the split's fencing token. At-least-once writers send their writes as they come, in batches.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import msgpack
import redis
import redis.exceptions
import structlog
from redis.cluster import RedisCluster

from eventapp.errors import ConfigurationError, EventAppError, SinkError
from eventapp.sink import SinkContext

from .apply_script import APPLY_SCRIPT, APPLY_UNFENCED_SCRIPT, decode_prepared, encode_prepared
from .commands import RedisCommand
from .errors import redis_failure, safe_url
from .sink_config import RedisDelivery, RedisSinkConfig
from .slots import by_slot, slot_token

__all__ = ["RedisAtLeastOnceWriter", "RedisExactlyOnceWriter", "RedisSink"]

log = structlog.get_logger(__name__)


class RedisSink:
    """Writes each output value's Redis commands (``config.mapper``)."""

    def __init__(self, config: RedisSinkConfig) -> None:
        self.config = config
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    def __repr__(self) -> str:
        return f"RedisSink({self.config.name!r}, {safe_url(self.config.url)}, {self.config.delivery.value})"

    def client(self) -> redis.Redis:
        """The sink's client (one connection pool per process, shared by its writers)."""
        with self._lock:
            if self._client is None:
                if self.config.cluster:
                    cluster: Any = RedisCluster.from_url(
                        self.config.url, socket_timeout=self.config.socket_timeout_s, socket_connect_timeout=5
                    )
                    self._client = cluster
                else:
                    self._client = redis.Redis.from_url(
                        self.config.url, socket_timeout=self.config.socket_timeout_s, socket_connect_timeout=5
                    )
            assert self._client is not None
            return self._client

    def create_writer(self, context: SinkContext) -> RedisExactlyOnceWriter | RedisAtLeastOnceWriter:
        if self.config.delivery is RedisDelivery.EXACTLY_ONCE:
            return RedisExactlyOnceWriter(self, context)
        return RedisAtLeastOnceWriter(self, context)


class _WriterBase:
    def __init__(self, sink: RedisSink, context: SinkContext) -> None:
        self._sink = sink
        self._config = sink.config
        self._context = context
        self._mapper = sink.config.mapper
        self._written = 0
        self._closed = False
        self._where = f"Redis sink {sink.config.name!r} (split {context.split!r})"
        #: The split's fencing token (exactly-once); on a cluster, the base of one token per slot.
        self._token = f"{sink.config.token_prefix}{context.job}:{context.split}:{sink.config.name}"

    @property
    def records_written(self) -> int:
        """Values written since the writer was created (see eventapp.sink.WriteCounter)."""
        return self._written

    def _commands(self, value: Any) -> Sequence[RedisCommand]:
        if self._closed:
            raise SinkError(f"{self._where}: the writer is closed")
        mapper = self._mapper
        assert mapper is not None
        try:
            mapped = mapper(value)
        except Exception as exc:
            raise SinkError(
                f"{self._where}: the mapper failed on {value!r:.200}: {type(exc).__name__}: {exc}"
            ) from exc
        if mapped is None:
            return ()
        commands = (mapped,) if isinstance(mapped, RedisCommand) else mapped
        for command in commands:
            if not isinstance(command, RedisCommand):
                raise SinkError(
                    f"{self._where}: the mapper returned {type(command).__name__} {command!r:.100} for "
                    f"{value!r:.100}; it must return Redis commands (eventapp.connectors.redis.Set, "
                    f"HSet, IncrBy, ...), a list of them, or None"
                )
        return commands

    def _wire(self, command: RedisCommand) -> list[bytes]:
        try:
            return command.to_wire()
        except ConfigurationError as exc:
            raise SinkError(f"{self._where}: {exc}") from exc

    def _failure(self, what: str, exc: BaseException) -> EventAppError:
        return redis_failure(SinkError, f"{self._where}: {what}", self._config.url, exc)


class RedisExactlyOnceWriter(_WriterBase):
    """Holds the split's writes until its checkpoint committed, then applies them once."""

    def __init__(self, sink: RedisSink, context: SinkContext) -> None:
        super().__init__(sink, context)
        self._held: list[list[bytes]] = []
        self._script: Any = None

    def write(self, value: Any, timestamp: int | None) -> None:
        held = self._held
        for command in self._commands(value):
            held.append(self._wire(command))
        self._written += 1

    def flush(self) -> None:
        """Nothing to do: the writes go with the checkpoint (:meth:`prepare_commit`)."""
        if self._closed:
            raise SinkError(f"{self._where}: the writer is closed")

    def prepare_commit(self, checkpoint_id: int) -> bytes | None:
        held, self._held = self._held, []
        if not held:
            return None
        return encode_prepared(held, self._config.chunk_size)

    def commit(self, checkpoint_id: int, prepared: bytes) -> None:
        chunk_size, commands = decode_prepared(prepared, f"checkpoint {checkpoint_id} of {self._where}")
        script = self._apply_script()
        applied = skipped = 0
        # On a cluster a script touches one slot: each slot's commands go under its own token.
        groups = (
            [(slot_token(self._token, slot), group) for slot, group in by_slot(commands)]
            if self._config.cluster
            else [(self._token, commands)]
        )
        for token, group in groups:
            for chunk, start in enumerate(range(0, len(group), chunk_size)):
                batch = group[start : start + chunk_size]
                try:
                    done = script(keys=[token], args=[checkpoint_id, chunk, _pack(batch)])
                except redis.exceptions.ResponseError as exc:
                    raise SinkError(
                        f"{self._where}: checkpoint {checkpoint_id} (committed) could not be applied: "
                        f"{exc}. Nothing of chunk {chunk} was written. Fix the key it names (delete or "
                        f"rename it, or change the mapper), then restart the job: a restored split "
                        f"applies its committed checkpoint again"
                    ) from exc
                except redis.exceptions.RedisError as exc:
                    raise self._failure(
                        f"applying committed checkpoint {checkpoint_id} (chunk {chunk}; it is applied "
                        f"again when the split restores)",
                        exc,
                    ) from exc
                if done:
                    applied += len(batch)
                else:
                    skipped += len(batch)
        log.debug(
            "redis.sink.applied",
            sink=self._config.name,
            split=self._context.split,
            checkpoint_id=checkpoint_id,
            commands=applied,
            skipped=skipped,
        )

    def _apply_script(self) -> Any:
        if self._script is None:
            self._script = self._sink.client().register_script(APPLY_SCRIPT)
        return self._script

    def close(self) -> None:
        """Uncommitted writes are dropped, like the state they came from (they are replayed)."""
        self._closed = True
        self._held = []


class RedisAtLeastOnceWriter(_WriterBase):
    """Sends the split's writes as they come, ``pipeline_size`` commands per round trip, each batch
    checked and applied by one script (:data:`~.apply_script.APPLY_UNFENCED_SCRIPT`: nothing of a
    batch is written unless all of it can be); at-least-once."""

    def __init__(self, sink: RedisSink, context: SinkContext) -> None:
        super().__init__(sink, context)
        self._batch: list[list[bytes]] = []
        self._script: Any = None

    def write(self, value: Any, timestamp: int | None) -> None:
        batch = self._batch
        for command in self._commands(value):
            batch.append(self._wire(command))
        self._written += 1
        if len(batch) >= self._config.pipeline_size:
            self.flush()

    def flush(self) -> None:
        if self._closed:
            raise SinkError(f"{self._where}: the writer is closed")
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self._script is None:
            self._script = self._sink.client().register_script(APPLY_UNFENCED_SCRIPT)
        try:
            if self._config.cluster:  # one script call per slot, routed by a key of that slot
                for slot, group in by_slot(batch):
                    self._script(keys=[slot_token(self._token, slot)], args=[_pack(group)])
            else:
                self._script(args=[_pack(batch)])
        except redis.exceptions.ResponseError as exc:
            raise SinkError(
                f"{self._where}: a batch of {len(batch)} commands could not be written: {exc}. Nothing "
                f"of the batch was written; fix the key it names (delete or rename it, or change the "
                f"mapper) and restart the job"
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise self._failure(f"writing a batch of {len(batch)} commands", exc) from exc

    def close(self) -> None:
        self._closed = True
        self._batch = []


def _pack(commands: list[list[bytes]]) -> bytes:
    data: bytes = msgpack.packb(commands, use_bin_type=False)
    return data
