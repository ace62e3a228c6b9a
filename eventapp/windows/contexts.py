"""What a window's trigger and its function see of it: :class:`TriggerContextImpl` and
:class:`WindowContextImpl` over the window's state entry (``META`` layout below)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, cast

from eventapp.errors import ConfigurationError
from eventapp.functions import Context, OutputTag, StateAccess
from eventapp.state.descriptors import ValueStateDescriptor
from eventapp.windows.window import Window

__all__ = [
    "CONTENTS",
    "EVENT",
    "PROCESSING",
    "TRIGGER",
    "WINDOW",
    "Meta",
    "TriggerContextImpl",
    "WindowContextImpl",
    "WindowValueStateImpl",
    "new_meta",
]

#: A window's state entry: [contents (serialized) or None, event-time timers, processing-time
#: timers, trigger state, per-window state of the window function (name -> serialized value)].
Meta = list[Any]
CONTENTS, EVENT, PROCESSING, TRIGGER, WINDOW = range(5)


def new_meta() -> Meta:
    """The state entry of a window with nothing in it yet."""
    return [None, [], [], {}, {}]


class TriggerContextImpl:
    """A trigger's view of one window (see :class:`~eventapp.windows.triggers.TriggerContext`)."""

    __slots__ = ("_ctx", "_meta", "merged_states")

    def __init__(self, ctx: Context, meta: Meta, merged_states: list[dict[str, Any]] | None = None) -> None:
        self._ctx, self._meta = ctx, meta
        self.merged_states = merged_states or []

    def current_watermark(self) -> int:
        return self._ctx.timer_service.current_watermark()

    def current_processing_time(self) -> int:
        return self._ctx.timer_service.current_processing_time()

    def register_event_time_timer(self, timestamp: int) -> None:
        timers = self._meta[EVENT]
        if timestamp not in timers:  # else registered already (for this window)
            timers.append(timestamp)
            self._ctx.timer_service.register_event_time_timer(timestamp)

    def register_processing_time_timer(self, timestamp: int) -> None:
        timers = self._meta[PROCESSING]
        if timestamp not in timers:
            timers.append(timestamp)
            self._ctx.timer_service.register_processing_time_timer(timestamp)

    def delete_event_time_timer(self, timestamp: int) -> None:
        if timestamp in self._meta[EVENT]:
            self._meta[EVENT].remove(timestamp)

    def delete_processing_time_timer(self, timestamp: int) -> None:
        if timestamp in self._meta[PROCESSING]:
            self._meta[PROCESSING].remove(timestamp)

    @property
    def state(self) -> MutableMapping[str, Any]:
        return cast(dict[str, Any], self._meta[TRIGGER])


class WindowValueStateImpl:
    __slots__ = ("_descriptor", "_meta")

    def __init__(self, meta: Meta, descriptor: ValueStateDescriptor[Any]) -> None:
        self._meta, self._descriptor = meta, descriptor

    def value(self) -> Any:
        data = self._meta[WINDOW].get(self._descriptor.name)
        return self._descriptor.default if data is None else self._descriptor.serializer.loads(data)

    def update(self, value: Any) -> None:
        if value is None:
            self.clear()
        else:
            self._meta[WINDOW][self._descriptor.name] = self._descriptor.serializer.dumps(value)

    def clear(self) -> None:
        self._meta[WINDOW].pop(self._descriptor.name, None)


class WindowContextImpl:
    """:class:`~eventapp.windows.functions.WindowContext` of one firing."""

    __slots__ = ("_ctx", "_meta", "window")

    def __init__(self, ctx: Context, window: Window, meta: Meta) -> None:
        self._ctx, self.window, self._meta = ctx, window, meta

    def current_watermark(self) -> int:
        return self._ctx.timer_service.current_watermark()

    def current_processing_time(self) -> int:
        return self._ctx.timer_service.current_processing_time()

    def window_state(self, descriptor: ValueStateDescriptor[Any]) -> WindowValueStateImpl:
        if not isinstance(descriptor, ValueStateDescriptor):
            raise ConfigurationError(
                f"window_state({descriptor!r}): per-window state is a ValueStateDescriptor; keep a "
                f"list or dict in it, or use global_state for the other kinds"
            )
        return WindowValueStateImpl(self._meta, descriptor)

    @property
    def global_state(self) -> StateAccess:
        return self._ctx

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        self._ctx.output(tag, value)
