"""Window functions: Flink's ``ProcessWindowFunction`` and the context it is called with.

Incremental aggregation uses ``reduce`` (a ``callable(a, b)``) or an
:class:`eventapp.AggregateFunction`; either can be combined with a ``ProcessWindowFunction``, which
then receives the single aggregated value as its ``elements``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from eventapp.functions import Collector, OutputTag, RuntimeContext, StateAccess
from eventapp.state.descriptors import ValueStateDescriptor

__all__ = ["ProcessWindowFunction", "WindowContext", "WindowValueState"]

IN = TypeVar("IN")
OUT = TypeVar("OUT")
K = TypeVar("K")
W = TypeVar("W")
W_co = TypeVar("W_co", covariant=True)
T = TypeVar("T")


class WindowValueState(Protocol[T]):
    """A value kept per key *and window* (``WindowContext.window_state``)."""

    def value(self) -> T | None: ...

    def update(self, value: T | None) -> None: ...

    def clear(self) -> None: ...


class WindowContext(Protocol[W_co]):
    """Passed to :meth:`ProcessWindowFunction.process` and ``clear``."""

    @property
    def window(self) -> W_co: ...

    def current_watermark(self) -> int: ...

    def current_processing_time(self) -> int: ...

    def window_state(self, descriptor: ValueStateDescriptor[T]) -> WindowValueState[T]:
        """State of the current key in this window only (Flink's ``windowState()``; ValueState).
        Clear it in :meth:`ProcessWindowFunction.clear`: it is kept until then."""
        ...

    @property
    def global_state(self) -> StateAccess:
        """Keyed state of the current key across all its windows (Flink's ``globalState()``)."""
        ...

    def output(self, tag: OutputTag[T], value: T) -> None:
        """Emit ``value`` to the side output ``tag`` (with the window's result timestamp)."""
        ...


class ProcessWindowFunction(Generic[IN, OUT, K, W]):
    """Called with every element of a window (or its aggregate) when the window fires. Outputs
    carry ``window.max_timestamp()`` as their timestamp (as in Flink)."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once before any window fires."""

    def process(self, key: K, context: WindowContext[W], elements: Iterable[IN], out: Collector[OUT]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement process()")

    def clear(self, context: WindowContext[W]) -> None:
        """The window is removed (its end plus the allowed lateness passed): clear window state."""

    def close(self) -> None:
        """Called once when the job stops."""
