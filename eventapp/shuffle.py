"""The shuffle seam: how ``key_by`` moves records between splits through a broker.

A source whose broker can carry a shuffle implements :class:`ShuffleTransport` (the Kafka source
does: a repartition topic, Kafka Streams' model). The runtime (:mod:`eventapp.runtime.shuffle`)
turns each record into a :class:`ShuffleEnvelope` (its partition, key bytes and payload) and writes
it through the channel's sink, inside the writing split's transaction when checkpoints are
exactly-once; the channel's source reads the partitions back as splits of their own, each with its
own checkpoint. What the payloads hold is the runtime's business, not the transport's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from eventapp.sink import Sink
from eventapp.source import Source

__all__ = ["ShuffleChannel", "ShuffleEnvelope", "ShuffleTransport"]


@dataclass(frozen=True, slots=True)
class ShuffleEnvelope:
    """One message of a shuffle: ``payload`` goes to ``partition`` with ``key`` (``None`` for the
    runtime's watermark markers)."""

    partition: int
    key: bytes | None
    payload: bytes


@dataclass(frozen=True)
class ShuffleChannel:
    """A shuffle's two ends: ``sink`` writes envelopes, ``source`` reads each partition's payloads
    (``bytes`` values, in write order) as one split. ``purge(positions)`` may drop what every
    split read and committed before its position (``None``: the transport keeps everything)."""

    source: Source[bytes]
    sink: Sink[ShuffleEnvelope]
    purge: Callable[[Mapping[str, int]], None] | None = None


@runtime_checkable
class ShuffleTransport(Protocol):
    """A source that can carry a job's shuffles on its broker."""

    def shuffle_channel(self, topic: str, partitions: int, *, exactly_once: bool) -> ShuffleChannel:
        """The channel of the shuffle ``topic`` with ``partitions`` partitions, created if missing.
        An existing ``topic`` with another partition count is refused (ConfigurationError) with the
        fix. ``exactly_once``: the sink writes into each split's transaction."""
        ...
