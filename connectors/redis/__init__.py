"""Redis connectors: a Redis Streams source and a Redis sink (at-least-once and exactly-once).

See ``docs/redis.md``.
"""

from __future__ import annotations

__all__: list[str] = []
