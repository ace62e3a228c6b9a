"""Triggers (Flink's ``Trigger``): when a window's function runs (FIRE) and when its contents are
dropped (PURGE).

A trigger's timers and state are the window's own (Flink's namespaces): ``on_event_time`` and
``on_processing_time`` are called only for the timers the trigger registered for that window, and
``ctx.state`` is a small per-window mapping (values must be serializable by msgpack).
"""

from __future__ import annotations

import enum
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from eventapp.errors import ConfigurationError
from eventapp.windows.window import Window

__all__ = [
    "ContinuousEventTimeTrigger",
    "ContinuousProcessingTimeTrigger",
    "CountTrigger",
    "EventTimeTrigger",
    "NeverTrigger",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
]


class TriggerResult(enum.Enum):
    """What a trigger decides: fire the window's function, purge its contents, both, or neither."""

    CONTINUE = (False, False)
    FIRE = (True, False)
    PURGE = (False, True)
    FIRE_AND_PURGE = (True, True)

    @property
    def fire(self) -> bool:
        return self.value[0]

    @property
    def purge(self) -> bool:
        return self.value[1]


class TriggerContext(Protocol):
    """What a trigger sees of its window: time, its own timers, its per-window state."""

    def current_watermark(self) -> int: ...

    def current_processing_time(self) -> int: ...

    def register_event_time_timer(self, timestamp: int) -> None: ...

    def register_processing_time_timer(self, timestamp: int) -> None: ...

    def delete_event_time_timer(self, timestamp: int) -> None: ...

    def delete_processing_time_timer(self, timestamp: int) -> None: ...

    @property
    def state(self) -> MutableMapping[str, Any]:
        """The trigger's state of this window (name -> msgpack-serializable value)."""
        ...

    @property
    def merged_states(self) -> list[dict[str, Any]]:
        """In :meth:`Trigger.on_merge`: the states of the windows being merged."""
        ...


class Trigger:
    """Decides, per window, when to fire and purge. Override what the trigger reacts to."""

    def on_element(self, element: Any, timestamp: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        """Whether the trigger works with merging (session) windows."""
        return False

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        """``window`` is the merge of windows whose states are ``ctx.merged_states``."""
        raise ConfigurationError(f"{type(self).__name__} does not support merging (session) windows")

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        """The window is being removed: delete the trigger's timers of it (its state goes with it)."""


class EventTimeTrigger(Trigger):
    """Fires once the watermark passes the window's end (and again for every late record, within
    the allowed lateness). The default of event-time windows."""

    def on_element(self, element: Any, timestamp: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        if window.max_timestamp() <= ctx.current_watermark():
            return TriggerResult.FIRE  # a late record within the allowed lateness
        ctx.register_event_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.max_timestamp() else TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        if window.max_timestamp() > ctx.current_watermark():
            ctx.register_event_time_timer(window.max_timestamp())

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        ctx.delete_event_time_timer(window.max_timestamp())

    def __repr__(self) -> str:
        return "EventTimeTrigger()"


class ProcessingTimeTrigger(Trigger):
    """Fires when the processing time reaches the window's end. The default of processing-time
    windows."""

    def on_element(self, element: Any, timestamp: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        ctx.register_processing_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        if window.max_timestamp() > ctx.current_processing_time():
            ctx.register_processing_time_timer(window.max_timestamp())

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        ctx.delete_processing_time_timer(window.max_timestamp())

    def __repr__(self) -> str:
        return "ProcessingTimeTrigger()"


class NeverTrigger(Trigger):
    """Never fires (the default of :class:`~eventapp.windows.GlobalWindows`)."""

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        return None

    def __repr__(self) -> str:
        return "NeverTrigger()"


@dataclass(frozen=True)
class CountTrigger(Trigger):
    """Fires every ``count`` records of the window."""

    count: int

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count <= 0:
            raise ConfigurationError(f"CountTrigger: count must be a positive int, got {self.count!r}")

    @classmethod
    def of(cls, count: int) -> CountTrigger:
        return cls(count)

    def on_element(self, element: Any, timestamp: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        seen = ctx.state.get("count", 0) + 1
        if seen >= self.count:
            ctx.state.pop("count", None)
            return TriggerResult.FIRE
        ctx.state["count"] = seen
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        total = sum(state.get("count", 0) for state in ctx.merged_states)
        if total:
            ctx.state["count"] = total


@dataclass(frozen=True)
class PurgingTrigger(Trigger):
    """``trigger``, with every FIRE turned into FIRE_AND_PURGE."""

    trigger: Trigger

    @classmethod
    def of(cls, trigger: Trigger) -> PurgingTrigger:
        return cls(trigger)

    @staticmethod
    def _purging(result: TriggerResult) -> TriggerResult:
        return TriggerResult.FIRE_AND_PURGE if result.fire else result

    def on_element(self, element: Any, timestamp: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.trigger.on_element(element, timestamp, window, ctx))

    def on_event_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.trigger.on_event_time(time, window, ctx))

    def on_processing_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.trigger.on_processing_time(time, window, ctx))

    def can_merge(self) -> bool:
        return self.trigger.can_merge()

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        self.trigger.on_merge(window, ctx)

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        self.trigger.clear(window, ctx)


@dataclass(frozen=True)
class ContinuousEventTimeTrigger(Trigger):
    """Fires every ``interval`` of event time (aligned to the epoch) while the window is open, and
    at the window's end."""

    interval: int

    def __post_init__(self) -> None:
        if not isinstance(self.interval, int) or self.interval <= 0:
            raise ConfigurationError(
                f"{type(self).__name__}: interval must be positive, got {self.interval!r}"
            )

    @classmethod
    def of(cls, interval: int) -> ContinuousEventTimeTrigger:
        return cls(interval)

    def on_element(self, element: Any, timestamp: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        if window.max_timestamp() <= ctx.current_watermark():
            return TriggerResult.FIRE
        ctx.register_event_time_timer(window.max_timestamp())
        if "fire" not in ctx.state:
            start = timestamp - timestamp % self.interval
            self._next(start + self.interval, window, ctx)
        return TriggerResult.CONTINUE

    def _next(self, time: int, window: Window, ctx: TriggerContext) -> None:
        fire = min(time, window.max_timestamp())
        ctx.state["fire"] = fire
        ctx.register_event_time_timer(fire)

    def on_event_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        if time == window.max_timestamp():
            return TriggerResult.FIRE
        if ctx.state.get("fire") == time:
            del ctx.state["fire"]
            self._next(time + self.interval, window, ctx)
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        fires = [state["fire"] for state in ctx.merged_states if "fire" in state]
        if fires:
            self._next(min(fires), window, ctx)

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        if "fire" in ctx.state:
            ctx.delete_event_time_timer(ctx.state["fire"])


@dataclass(frozen=True)
class ContinuousProcessingTimeTrigger(Trigger):
    """Fires every ``interval`` of processing time while the window is open."""

    interval: int

    def __post_init__(self) -> None:
        if not isinstance(self.interval, int) or self.interval <= 0:
            raise ConfigurationError(
                f"{type(self).__name__}: interval must be positive, got {self.interval!r}"
            )

    @classmethod
    def of(cls, interval: int) -> ContinuousProcessingTimeTrigger:
        return cls(interval)

    def on_element(self, element: Any, timestamp: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        if "fire" not in ctx.state:
            now = ctx.current_processing_time()
            fire = now - now % self.interval + self.interval
            ctx.state["fire"] = fire
            ctx.register_processing_time_timer(fire)
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Window, ctx: TriggerContext) -> TriggerResult:
        if ctx.state.get("fire") == time:
            ctx.state["fire"] = time + self.interval
            ctx.register_processing_time_timer(time + self.interval)
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: TriggerContext) -> None:
        fires = [state["fire"] for state in ctx.merged_states if "fire" in state]
        if fires:
            ctx.state["fire"] = min(fires)
            ctx.register_processing_time_timer(min(fires))

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        if "fire" in ctx.state:
            ctx.delete_processing_time_timer(ctx.state["fire"])
