"""The window operator: Flink's ``WindowOperator`` (and ``EvictingWindowOperator``) as a
:class:`~eventapp.KeyedProcessFunction` over the existing keyed state and durable timers, so windows
are checkpointed, restored, re-sharded and savepointed like any keyed state.

State: one map entry per (key, window), ``eventapp.windows``: the window's contents (an incremental
aggregate, or its elements), the timers its trigger registered, the trigger's state and the
``ProcessWindowFunction``'s per-window state. Timers are the key's durable timers; a timer fires a
window's trigger only if that window registered it (Flink's timer namespaces), and removes the
window at its cleanup time (``max_timestamp + allowed_lateness``; processing time: its end).
Deleting a trigger timer forgets it for that window only: the key's timer may serve another window,
so it stays and fires nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from eventapp.errors import ConfigurationError, WindowError
from eventapp.functions import (
    Collector,
    Context,
    KeyedProcessFunction,
    OnTimerContext,
    OutputTag,
    RuntimeContext,
    TimeDomain,
)
from eventapp.serialization import Serializer
from eventapp.state.descriptors import AggregateFunction, MapStateDescriptor
from eventapp.state.handles import MapState
from eventapp.state.keys import MAX_TIMESTAMP
from eventapp.state.registry import adopt_declared_descriptors
from eventapp.windows.aggregation import Aggregation
from eventapp.windows.assigners import WindowAssigner
from eventapp.windows.contexts import (
    CONTENTS,
    EVENT,
    PROCESSING,
    TRIGGER,
    WINDOW,
    Meta,
    TriggerContextImpl,
    WindowContextImpl,
    new_meta,
)
from eventapp.windows.evictors import Evictor
from eventapp.windows.functions import ProcessWindowFunction
from eventapp.windows.triggers import Trigger, TriggerResult
from eventapp.windows.window import TimeWindow, Window, window_from_key

__all__ = ["WindowOperator"]


class _TimestampedOutput(Protocol):
    def set_output_timestamp(self, timestamp: int | None) -> int | None: ...


class WindowOperator(KeyedProcessFunction[Any, Any, Any]):
    """Windows of a keyed stream (built by :class:`~eventapp.windows.WindowedStream`)."""

    windows = MapStateDescriptor[tuple[int, ...], Meta]("eventapp.windows")

    def __init__(
        self,
        assigner: WindowAssigner,
        aggregation: Aggregation,
        *,
        trigger: Trigger | None = None,
        allowed_lateness: int = 0,
        late_tag: OutputTag[Any] | None = None,
        evictor: Evictor | None = None,
        window_function: ProcessWindowFunction[Any, Any, Any, Any] | None = None,
        contents_serializer: Serializer[Any] | None = None,
    ) -> None:
        self.assigner = assigner
        self.aggregation = aggregation
        self.trigger = assigner.default_trigger() if trigger is None else trigger
        self.allowed_lateness = allowed_lateness
        self.late_tag = late_tag
        self.evictor = evictor
        self.window_function = window_function
        #: Names the aggregation in errors.
        self._aggregating = f"the window's {aggregation.kind}"
        #: None: contents are stored as they are, in the window's entry (msgpack).
        self.serializer: Serializer[Any] | None = contents_serializer
        if assigner.merging and not self.trigger.can_merge():
            raise ConfigurationError(
                f"trigger {self.trigger!r} cannot be used with merging (session) windows "
                f"{assigner!r}: use a trigger whose can_merge() is True"
            )
        if window_function is not None:  # its keyed (global) state is the operator's
            adopt_declared_descriptors(self, window_function)

    @classmethod
    def reducing(
        cls,
        assigner: WindowAssigner,
        function: Callable[[Any, Any], Any],
        window_function: ProcessWindowFunction[Any, Any, Any, Any] | None = None,
        **options: Any,
    ) -> WindowOperator:
        """A window operator that reduces (as ``.window(assigner).reduce(function)``); ``options``
        as the constructor's. For the test harness: ``KeyedProcessFunctionHarness(op, key)``."""
        return cls(
            assigner, Aggregation("reduce", reduce=function), window_function=window_function, **options
        )

    @classmethod
    def aggregating(
        cls,
        assigner: WindowAssigner,
        function: AggregateFunction[Any, Any, Any],
        window_function: ProcessWindowFunction[Any, Any, Any, Any] | None = None,
        **options: Any,
    ) -> WindowOperator:
        """As ``.window(assigner).aggregate(function, window_function)``."""
        return cls(
            assigner, Aggregation("aggregate", aggregate=function), window_function=window_function, **options
        )

    @classmethod
    def processing(
        cls,
        assigner: WindowAssigner,
        window_function: ProcessWindowFunction[Any, Any, Any, Any],
        **options: Any,
    ) -> WindowOperator:
        """As ``.window(assigner).process(window_function)``."""
        return cls(assigner, Aggregation("process"), window_function=window_function, **options)

    # --- the function ---------------------------------------------------------------------------------
    def open(self, ctx: RuntimeContext) -> None:
        if self.window_function is not None:
            self.window_function.open(ctx)

    def close(self) -> None:
        if self.window_function is not None:
            self.window_function.close()

    def process_element(self, value: Any, ctx: Context, out: Collector[Any]) -> None:
        assigner = self.assigner
        event_time = assigner.event_time
        timer_service = ctx.timer_service
        timestamp = ctx.timestamp if event_time else timer_service.current_processing_time()
        if timestamp is None:
            raise WindowError(
                f"{assigner!r} is an event-time window assigner and the record has no timestamp: "
                f"give the source a WatermarkStrategy with a timestamp assigner, or use processing time"
            )
        watermark = timer_service.current_watermark()
        state = ctx.get_state(self.windows)
        assigned = self._call("window assigner", assigner, None, assigner.assign, timestamp)
        skipped = True
        for assigned_window in assigned:
            if assigner.merging:
                found = self._merge(assigned_window, state, ctx, watermark)
                if found is None:
                    continue
                window, meta = found
                new = not meta[EVENT] and not meta[PROCESSING] and meta[CONTENTS] is None
            else:
                window = assigned_window
                if self._is_window_late(window, watermark):
                    continue
                stored = state.get(window)
                new = stored is None
                meta = new_meta() if stored is None else stored
            skipped = False
            self._add(meta, value, timestamp)
            trigger = self.trigger
            result = self._call(
                "trigger",
                trigger,
                window,
                trigger.on_element,
                value,
                timestamp,
                window,
                TriggerContextImpl(ctx, meta),
            )
            if result is not TriggerResult.CONTINUE:
                self._apply(result, window, meta, ctx, out)
            if new:  # a window's cleanup time never changes: one timer
                self._register_cleanup(window, ctx)
            state.put(window, meta)
        if (
            skipped
            and event_time
            and timestamp + self.allowed_lateness <= watermark
            and self.late_tag is not None
        ):
            ctx.output(self.late_tag, value)  # late: with the record's own timestamp

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Any]) -> None:
        event_time = ctx.time_domain is TimeDomain.EVENT_TIME
        slot = EVENT if event_time else PROCESSING
        state = ctx.get_state(self.windows)
        for key, meta in sorted(state.items()):
            window = window_from_key(key)
            changed = False
            if timestamp in meta[slot]:
                meta[slot].remove(timestamp)
                changed = True
                trigger_ctx = TriggerContextImpl(ctx, meta)
                result = self._call(
                    "trigger",
                    self.trigger,
                    window,
                    self.trigger.on_event_time if event_time else self.trigger.on_processing_time,
                    timestamp,
                    window,
                    trigger_ctx,
                )
                self._apply(result, window, meta, ctx, out)
            if event_time == self.assigner.event_time and timestamp == self._cleanup_time(window):
                self._clear_window(window, meta, ctx)
                state.remove(key)
            elif changed:
                state.put(key, meta)

    # --- windows -------------------------------------------------------------------------------------
    def _add(self, meta: Meta, value: Any, timestamp: int) -> None:
        contents = self._contents(meta)
        if self.evictor is not None:
            contents = [[timestamp, value]] if contents is None else [*contents, [timestamp, value]]
        else:
            contents = self._call(self._aggregating, None, None, self.aggregation.add, contents, value)
        meta[CONTENTS] = contents if self.serializer is None else self.serializer.dumps(contents)

    def _contents(self, meta: Meta) -> Any:
        data = meta[CONTENTS]
        return data if data is None or self.serializer is None else self.serializer.loads(data)

    def _merge(
        self, new: Window, state: MapState[tuple[int, ...], Meta], ctx: Context, watermark: int
    ) -> tuple[Window, Meta] | None:
        """Merge ``new`` (a session window) with the key's windows it overlaps; the merged window and
        its state, or None when the merged window is late."""
        assert isinstance(new, TimeWindow)
        group = [
            (window, meta)
            for window, meta in ((window_from_key(k), m) for k, m in sorted(state.items()))
            if isinstance(window, TimeWindow) and window.intersects(new)
        ]
        merged: TimeWindow = new
        for window, _ in group:
            assert isinstance(window, TimeWindow)
            merged = merged.cover(window)
        if self._is_window_late(merged, watermark):
            return None
        if not group:
            return merged, new_meta()
        if len(group) == 1 and group[0][0] == merged:
            return group[0]
        meta: Meta = new_meta()
        contents: Any = None
        for window, old in group:  # in window order
            held = self._contents(old)
            if self.evictor is not None:
                contents = held if contents is None else [*contents, *(held or [])]
            else:
                contents = self._call(self._aggregating, None, None, self.aggregation.merge, contents, held)
            meta[WINDOW].update(old[WINDOW])
            state.remove(window)
        meta[CONTENTS] = (
            contents if contents is None or self.serializer is None else self.serializer.dumps(contents)
        )
        merged_states = [old[TRIGGER] for _, old in group]
        trigger = self.trigger
        self._call(
            "trigger", trigger, merged, trigger.on_merge, merged, TriggerContextImpl(ctx, meta, merged_states)
        )
        for window, old in group:
            self._call("trigger", trigger, window, trigger.clear, window, TriggerContextImpl(ctx, old))
        return merged, meta

    def _apply(
        self, result: TriggerResult, window: Window, meta: Meta, ctx: Context, out: Collector[Any]
    ) -> None:
        if result.fire:
            contents = self._contents(meta)
            if contents is not None:
                self._emit(window, meta, contents, ctx, out)
        if result.purge:
            meta[CONTENTS] = None

    def _emit(self, window: Window, meta: Meta, contents: Any, ctx: Context, out: Collector[Any]) -> None:
        if self.evictor is not None:
            evictor = self.evictor
            elements = self._call("evictor", evictor, window, evictor.evict_before, list(contents))
            values = [v for _, v in elements]
            inputs = self._call(self._aggregating, None, None, self.aggregation.over, values)
            kept = self._call("evictor", evictor, window, evictor.evict_after, elements)
            meta[CONTENTS] = (
                (kept if self.serializer is None else self.serializer.dumps(kept)) if kept else None
            )
            if not elements:
                return
        else:
            inputs = self.aggregation.inputs(contents)
        output = cast(_TimestampedOutput, ctx)
        previous = output.set_output_timestamp(window.max_timestamp())
        try:
            function = self.window_function
            if function is None:
                for item in inputs:
                    out.collect(item)
            else:
                function.process(ctx.current_key, WindowContextImpl(ctx, window, meta), inputs, out)
        finally:
            output.set_output_timestamp(previous)

    def _clear_window(self, window: Window, meta: Meta, ctx: Context) -> None:
        trigger = self.trigger
        self._call("trigger", trigger, window, trigger.clear, window, TriggerContextImpl(ctx, meta))
        if self.window_function is not None:
            self.window_function.clear(WindowContextImpl(ctx, window, meta))

    def _cleanup_time(self, window: Window) -> int:
        end = window.max_timestamp()
        if not self.assigner.event_time:
            return end
        return MAX_TIMESTAMP if end > MAX_TIMESTAMP - self.allowed_lateness else end + self.allowed_lateness

    def _is_window_late(self, window: Window, watermark: int) -> bool:
        return self.assigner.event_time and self._cleanup_time(window) <= watermark

    def _register_cleanup(self, window: Window, ctx: Context) -> None:
        cleanup = self._cleanup_time(window)
        if cleanup == MAX_TIMESTAMP:
            return  # a global window: never removed
        if self.assigner.event_time:
            ctx.timer_service.register_event_time_timer(cleanup)
        else:
            ctx.timer_service.register_processing_time_timer(cleanup)

    @staticmethod
    def _call(what: str, part: object, window: Window | None, action: Callable[..., Any], *args: Any) -> Any:
        """``action(*args)``; a failure names what raised (``what``, the ``part``'s repr unless
        None, and the window), so the error policy fails the job or dead-letters the record with it.
        The message is built only then: this runs several times per record."""
        try:
            return action(*args)
        except (WindowError, ConfigurationError):
            raise
        except Exception as exc:
            named = what if part is None else f"{what} {part!r}"
            where = "" if window is None else f" of {window}"
            raise WindowError(f"{named}{where} raised {type(exc).__name__}: {exc}") from exc
