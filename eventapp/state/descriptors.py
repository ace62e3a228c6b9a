"""State descriptors: name, serializer and TTL of one piece of keyed state (Flink's StateDescriptor)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from eventapp.errors import ConfigurationError
from eventapp.serialization import MsgpackSerializer, Serializer

__all__ = [
    "AggregateFunction",
    "AggregatingStateDescriptor",
    "ListStateDescriptor",
    "MapStateDescriptor",
    "ReducingStateDescriptor",
    "StateDescriptor",
    "StateTtlConfig",
    "StateVisibility",
    "TtlTimeDomain",
    "TtlUpdateType",
    "ValueStateDescriptor",
]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")


class TtlUpdateType(enum.Enum):
    """When the last-access time of a TTL'd value is refreshed (Flink's ``UpdateType``)."""

    ON_CREATE_AND_WRITE = "on_create_and_write"
    ON_READ_AND_WRITE = "on_read_and_write"


class StateVisibility(enum.Enum):
    """Whether an expired value that has not been cleaned up yet may still be returned."""

    NEVER_RETURN_EXPIRED = "never_return_expired"
    RETURN_EXPIRED_IF_NOT_CLEANED_UP = "return_expired_if_not_cleaned_up"


class TtlTimeDomain(enum.Enum):
    """The clock a TTL is measured on.

    ``PROCESSING_TIME`` (Flink's only option): access time and expiry use the processing clock.
    ``EVENT_TIME``: the access time is the timestamp of the record (or event-time timer) being
    processed, falling back to the current watermark; a value expires once the *watermark* passes
    ``access time + ttl``, so replays and restores expire state exactly as the original run did.
    """

    PROCESSING_TIME = "processing_time"
    EVENT_TIME = "event_time"


@dataclass(frozen=True, slots=True)
class StateTtlConfig:
    """Time-to-live of a state's values. Expired values are removed when they are read, and by an
    incremental cleanup that visits ``cleanup_batch`` entries of the state per processed batch."""

    ttl_ms: int
    update_type: TtlUpdateType = TtlUpdateType.ON_CREATE_AND_WRITE
    visibility: StateVisibility = StateVisibility.NEVER_RETURN_EXPIRED
    time_domain: TtlTimeDomain = TtlTimeDomain.PROCESSING_TIME
    cleanup_batch: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.ttl_ms, int) or isinstance(self.ttl_ms, bool) or self.ttl_ms <= 0:
            raise ConfigurationError(
                f"StateTtlConfig.ttl_ms must be a positive number of milliseconds, got {self.ttl_ms!r}; "
                f"for example StateTtlConfig(ttl_ms=60_000) for one minute"
            )
        if self.cleanup_batch < 0:
            raise ConfigurationError(
                f"StateTtlConfig.cleanup_batch must be >= 0 (0 disables incremental cleanup), "
                f"got {self.cleanup_batch}"
            )


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{kind} needs a non-empty name, got {name!r}")
    if "\x00" in name:
        raise ConfigurationError(f"{kind} name {name!r} must not contain NUL characters")


@dataclass(frozen=True)
class StateDescriptor(Generic[T]):
    """Base of all descriptors: a name unique within the operator, and an optional TTL."""

    name: str
    ttl: StateTtlConfig | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _check_name(type(self).__name__, self.name)


@dataclass(frozen=True)
class ValueStateDescriptor(StateDescriptor[T]):
    """A single value per key. ``default`` is returned by ``value()`` when nothing is stored."""

    serializer: Serializer[T] = field(default_factory=MsgpackSerializer)
    default: T | None = None


@dataclass(frozen=True)
class ListStateDescriptor(StateDescriptor[T]):
    """A list of elements per key (each element has its own TTL timestamp)."""

    serializer: Serializer[T] = field(default_factory=MsgpackSerializer)


@dataclass(frozen=True)
class MapStateDescriptor(StateDescriptor[Any], Generic[K, V]):
    """A map per key; each entry is stored on its own (and has its own TTL timestamp).

    Map keys must serialize deterministically (the default msgpack does for str, int, bytes, tuples).
    """

    key_serializer: Serializer[K] = field(default_factory=lambda: MsgpackSerializer(tuples=True))
    value_serializer: Serializer[V] = field(default_factory=MsgpackSerializer)


@dataclass(frozen=True)
class ReducingStateDescriptor(StateDescriptor[T]):
    """A value per key that ``add()`` combines with ``reduce_function(old, new)``."""

    reduce_function: Callable[[T, T], T] | None = None
    serializer: Serializer[T] = field(default_factory=MsgpackSerializer)

    def __post_init__(self) -> None:
        _check_name("ReducingStateDescriptor", self.name)
        if not callable(self.reduce_function):
            raise ConfigurationError(
                f"ReducingStateDescriptor({self.name!r}) needs reduce_function=callable(a, b) -> value"
            )


class AggregateFunction(Generic[IN, ACC, OUT]):
    """Flink's AggregateFunction: an accumulator that ``add`` folds inputs into."""

    def create_accumulator(self) -> ACC:
        raise NotImplementedError

    def add(self, value: IN, accumulator: ACC) -> ACC:
        raise NotImplementedError

    def get_result(self, accumulator: ACC) -> OUT:
        raise NotImplementedError

    def merge(self, first: ACC, second: ACC) -> ACC:
        """Combine two accumulators (session windows merge theirs)."""
        raise NotImplementedError(
            f"{type(self).__name__}.merge(first, second) is needed to merge session windows: implement it"
        )


@dataclass(frozen=True)
class AggregatingStateDescriptor(StateDescriptor[Any], Generic[IN, ACC, OUT]):
    """A per-key accumulator; ``get()`` returns ``aggregate_function.get_result(acc)``.
    ``serializer`` is the accumulator's serializer."""

    aggregate_function: AggregateFunction[IN, ACC, OUT] | None = None
    serializer: Serializer[ACC] = field(default_factory=MsgpackSerializer)

    def __post_init__(self) -> None:
        _check_name("AggregatingStateDescriptor", self.name)
        if not isinstance(self.aggregate_function, AggregateFunction):
            raise ConfigurationError(
                f"AggregatingStateDescriptor({self.name!r}) needs aggregate_function=an "
                f"eventapp.AggregateFunction instance"
            )
