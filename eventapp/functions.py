"""The user-facing function API: :class:`KeyedProcessFunction` and the contexts it is called with.

This mirrors Flink's ``KeyedProcessFunction``: ``process_element`` is called once per record with
the record's key as the current key; ``on_timer`` is called when a timer registered through the
:class:`TimerService` fires, again with the timer's key as the current key. Keyed state obtained
with ``get_state`` is always scoped to the current key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from eventapp.errors import ConfigurationError

if TYPE_CHECKING:
    from eventapp.state.descriptors import (
        AggregatingStateDescriptor,
        ListStateDescriptor,
        MapStateDescriptor,
        ReducingStateDescriptor,
        ValueStateDescriptor,
    )
    from eventapp.state.handles import AggregatingState, ListState, MapState, ReducingState, ValueState

__all__ = [
    "CoContext",
    "CoProcessFunction",
    "Collector",
    "Context",
    "KeyedCoProcessFunction",
    "KeyedProcessFunction",
    "OnTimerContext",
    "OutputTag",
    "RuntimeContext",
    "StateAccess",
    "TimeDomain",
    "TimerService",
]

K = TypeVar("K")
IN = TypeVar("IN")
OUT = TypeVar("OUT")
T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
MK = TypeVar("MK")
MV = TypeVar("MV")
ACC = TypeVar("ACC")
RES = TypeVar("RES")


class TimeDomain(enum.Enum):
    EVENT_TIME = "event_time"
    PROCESSING_TIME = "processing_time"


@dataclass(frozen=True)
class OutputTag(Generic[T]):
    """Names a side output. Tags are equal when their names are."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(f"OutputTag needs a non-empty name, got {self.name!r}")


class Collector(Protocol[T_contra]):
    """Emits records to the main output of a function."""

    def collect(self, value: T_contra) -> None: ...


class TimerService(Protocol):
    """Times and timers of the current key (Flink's TimerService). Times are epoch milliseconds."""

    def current_processing_time(self) -> int: ...

    def current_watermark(self) -> int: ...

    def register_event_time_timer(self, timestamp: int) -> None:
        """Fire ``on_timer`` for the current key once the watermark reaches ``timestamp``.

        At most one timer exists per (key, timestamp, time domain): registering it again is a no-op.
        """
        ...

    def register_processing_time_timer(self, timestamp: int) -> None:
        """Fire ``on_timer`` for the current key once processing time reaches ``timestamp``."""
        ...

    def delete_event_time_timer(self, timestamp: int) -> None:
        """Delete the current key's event-time timer; deleting a missing timer does nothing."""
        ...

    def delete_processing_time_timer(self, timestamp: int) -> None: ...


class StateAccess:
    """``get_state`` for every descriptor type; each call returns a handle bound to the current key."""

    __slots__ = ()

    @overload
    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]: ...
    @overload
    def get_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]: ...
    @overload
    def get_state(self, descriptor: MapStateDescriptor[MK, MV]) -> MapState[MK, MV]: ...
    @overload
    def get_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]: ...
    @overload
    def get_state(
        self, descriptor: AggregatingStateDescriptor[IN, ACC, RES]
    ) -> AggregatingState[IN, ACC, RES]: ...
    def get_state(self, descriptor: Any) -> Any:
        raise NotImplementedError


class RuntimeContext(StateAccess):
    """Passed to ``open``: where the function runs, and access to keyed state."""

    __slots__ = ()

    @property
    def job_name(self) -> str:
        raise NotImplementedError

    @property
    def operator_uid(self) -> str:
        raise NotImplementedError


class Context(StateAccess):
    """Passed to ``process_element``."""

    __slots__ = ()

    @property
    def timestamp(self) -> int | None:
        """Epoch ms: in ``process_element`` the record's event time (``None`` if unknown); in
        ``on_timer`` the firing timer's timestamp, in both time domains (as in Flink). Outputs of a
        processing-time timer carry no event time."""
        raise NotImplementedError

    @property
    def current_key(self) -> Any:
        raise NotImplementedError

    @property
    def timer_service(self) -> TimerService:
        raise NotImplementedError

    def output(self, tag: OutputTag[T], value: T) -> None:
        """Emit ``value`` to the side output named by ``tag``."""
        raise NotImplementedError


class OnTimerContext(Context):
    """Passed to ``on_timer``; also says which time domain the firing timer belongs to."""

    __slots__ = ()

    @property
    def time_domain(self) -> TimeDomain:
        raise NotImplementedError


class KeyedProcessFunction(Generic[K, IN, OUT]):
    """Process records of a keyed stream, with keyed state and timers.

    Subclass it and override ``process_element`` (and ``on_timer`` if you register timers).
    Output emitted from ``process_element`` carries the record's timestamp; from an event-time
    timer, the timer's timestamp; from a processing-time timer, no timestamp.
    """

    def open(self, ctx: RuntimeContext) -> None:
        """Called once before any record; obtain state handles here."""

    def process_element(self, value: IN, ctx: Context, out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process_element()")

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[OUT]) -> None:
        """Called when a timer fires; the default does nothing."""

    def close(self) -> None:
        """Called once when the job stops."""


class KeyedCoProcessFunction(Generic[K, IN, T, OUT]):
    """Process two keyed inputs with shared keyed state and timers (Flink's
    ``KeyedCoProcessFunction``): ``a.connect(b).key_by(key_a, key_b).process(function, uid=...)``.
    ``process_element1`` gets the first input's records, ``process_element2`` the second's, both
    with the record's key as the current key."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once before any record; obtain state handles here."""

    def process_element1(self, value: IN, ctx: Context, out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process_element1()")

    def process_element2(self, value: T, ctx: Context, out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process_element2()")

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[OUT]) -> None:
        """Called when a timer fires; the default does nothing."""

    def close(self) -> None:
        """Called once when the job stops."""


class CoContext:
    """What a :class:`CoProcessFunction` sees of the record it processes."""

    @property
    def timestamp(self) -> int | None:
        """The record's event time (epoch ms), ``None`` if it has none."""
        raise NotImplementedError


class CoProcessFunction(Generic[IN, T, OUT]):
    """Process two non-keyed inputs (Flink's ``CoProcessFunction``):
    ``a.connect(b).process(function)``. No keyed state and no timers (they need ``key_by``);
    outputs carry the input record's timestamp."""

    def open(self) -> None:
        """Called once before any record."""

    def process_element1(self, value: IN, ctx: CoContext, out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process_element1()")

    def process_element2(self, value: T, ctx: CoContext, out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process_element2()")

    def close(self) -> None:
        """Called once when the job stops."""
