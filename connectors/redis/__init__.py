"""Redis connectors: a Redis Streams source (each stream a split, its committed checkpoint kept in
Redis) and a Redis sink (exactly-once through a fenced Lua apply after each checkpoint, or
batched at-least-once), plus an embedded redis-server for demos.

See ``docs/redis.md``.
"""

from __future__ import annotations

from .commands import Delete, Expire, HIncrBy, HSet, IncrBy, Publish, RedisCommand, Set, XAdd, ZAdd
from .commit import RedisCommitPoint
from .embedded import EmbeddedRedis
from .sink import RedisSink
from .sink_config import RedisDelivery, RedisSinkConfig
from .source import RedisStreamSource
from .source_config import RedisStreamSourceConfig

__all__ = [
    "Delete",
    "EmbeddedRedis",
    "Expire",
    "HIncrBy",
    "HSet",
    "IncrBy",
    "Publish",
    "RedisCommand",
    "RedisCommitPoint",
    "RedisDelivery",
    "RedisSink",
    "RedisSinkConfig",
    "RedisStreamSource",
    "RedisStreamSourceConfig",
    "Set",
    "XAdd",
    "ZAdd",
]
