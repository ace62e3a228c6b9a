"""Configuration of the Redis sink (validated when it is built)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eventapp.errors import ConfigurationError

from .commands import RedisCommand

__all__ = ["RedisDelivery", "RedisSinkConfig"]

#: What the mapper returns for one output value: a command, several, or None (write nothing).
Mapped = RedisCommand | Sequence[RedisCommand] | None


class RedisDelivery(enum.Enum):
    """How the Redis sink applies its writes.

    ``EXACTLY_ONCE``: a split's writes of a checkpoint are held, stored with the snapshot and
    applied after the checkpoint committed, once (:mod:`eventapp.connectors.redis.apply_script`).
    Needs checkpointing; outputs become visible one checkpoint interval later.

    ``AT_LEAST_ONCE``: writes are sent to Redis as they come, in batches (every ``pipeline_size``
    commands and at each checkpoint; each batch is checked and applied by one script, so a batch is
    never written in part). After a crash the records since the last checkpoint are processed
    again, so their writes are made again: safe for idempotent writes (SET, HSET, ZADD of the same
    values), visible as duplicates for INCRBY, XADD and PUBLISH.
    """

    EXACTLY_ONCE = "exactly_once"
    AT_LEAST_ONCE = "at_least_once"


@dataclass(frozen=True)
class RedisSinkConfig:
    """``mapper(value)`` gives the Redis commands (:mod:`eventapp.connectors.redis.commands`) of
    one output value.

    ``token_prefix``: the fencing tokens of exactly-once mode are the hashes
    ``<token_prefix><job>:<split>:<sink name>``; keep them (deleting one makes the next replay apply
    a committed checkpoint again). ``chunk_size``: commands per atomic apply (exactly-once).
    ``pipeline_size``: commands per round trip (at-least-once). ``cluster``: ``url`` names a node
    of a Redis Cluster; commands are applied slot by slot, each slot with a token of its own
    (:mod:`eventapp.connectors.redis.slots`).
    """

    url: str = "redis://localhost:6379/0"
    mapper: Callable[[Any], Mapped] | None = None
    delivery: RedisDelivery = RedisDelivery.EXACTLY_ONCE
    name: str = "redis"
    token_prefix: str = "eventapp:applied:"
    chunk_size: int = 5_000
    pipeline_size: int = 1_000
    socket_timeout_s: float = 10.0
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.mapper is None or not callable(self.mapper):
            raise ConfigurationError(
                "RedisSinkConfig needs mapper=: a function from an output value to a Redis command "
                "(eventapp.connectors.redis.Set/HSet/IncrBy/XAdd/...), a list of them, or None"
            )
        if isinstance(self.delivery, str):
            try:
                object.__setattr__(self, "delivery", RedisDelivery(self.delivery))
            except ValueError:
                raise ConfigurationError(
                    f"RedisSinkConfig: delivery must be one of {[d.value for d in RedisDelivery]}, got "
                    f"{self.delivery!r}"
                ) from None
        if not isinstance(self.delivery, RedisDelivery):
            raise ConfigurationError(
                f"RedisSinkConfig: delivery must be a RedisDelivery, got {self.delivery!r}"
            )
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"RedisSinkConfig: url must start with redis://, rediss:// or unix://, got {self.url!r}"
            )
        if not self.name:
            raise ConfigurationError("RedisSinkConfig: name must not be empty")
        for what, value in (("chunk_size", self.chunk_size), ("pipeline_size", self.pipeline_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"RedisSinkConfig: {what} must be an int >= 1, got {value!r}")
        if self.socket_timeout_s <= 0:
            raise ConfigurationError(
                f"RedisSinkConfig: socket_timeout_s must be > 0, got {self.socket_timeout_s!r}"
            )
