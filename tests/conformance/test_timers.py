"""Conformance: timers (ordering, deduplication, deletion, snapshot/restore) on every backend,
through the real operator (driven by the public test harness)."""

from __future__ import annotations

from typing import Any

from eventapp import (
    Collector,
    Context,
    KeyedProcessFunction,
    OnTimerContext,
    RuntimeContext,
    TimeDomain,
    ValueStateDescriptor,
)
from eventapp.state.store import StateBackend
from eventapp.testing import KeyedProcessFunctionHarness

from .conftest import BackendFactory


class TimerRecorder(KeyedProcessFunction[str, dict[str, Any], tuple[Any, ...]]):
    """Records {"key", "event": [ts...], "proc": [ts...], "delete_event": [...]} into timers and
    emits (domain, key, timestamp, state) when they fire."""

    seen = ValueStateDescriptor[str]("seen")

    def open(self, ctx: RuntimeContext) -> None:
        self.state = ctx.get_state(self.seen)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[tuple[Any, ...]]) -> None:
        self.state.update(f"state-of-{ctx.current_key}")
        ts = ctx.timer_service
        for t in value.get("event", []):
            ts.register_event_time_timer(t)
        for t in value.get("proc", []):
            ts.register_processing_time_timer(t)
        for t in value.get("delete_event", []):
            ts.delete_event_time_timer(t)
        for t in value.get("delete_proc", []):
            ts.delete_processing_time_timer(t)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[tuple[Any, ...]]) -> None:
        out.collect((ctx.time_domain.value, ctx.current_key, timestamp, self.state.value()))


def harness(backend: StateBackend, **kw: Any) -> KeyedProcessFunctionHarness[str, dict[str, Any], Any]:
    return KeyedProcessFunctionHarness(TimerRecorder(), lambda v: v["key"], state_backend=backend, **kw)


def test_event_timers_fire_in_timestamp_order_across_keys(backend: StateBackend) -> None:
    h = harness(backend)
    h.process_element({"key": "b", "event": [30, 10]})
    h.process_element({"key": "a", "event": [20, -5]})
    h.process_watermark(25)
    assert [(k, t) for _, k, t, _ in h.outputs] == [("a", -5), ("b", 10), ("a", 20)]
    h.process_watermark(29)
    assert len(h.outputs) == 3, "a timer at 30 must not fire at watermark 29"
    h.process_watermark(30)
    assert h.outputs[-1][1:3] == ("b", 30)
    h.close()


def test_one_timer_per_key_timestamp_and_domain(backend: StateBackend) -> None:
    h = harness(backend)
    h.process_element({"key": "a", "event": [10, 10], "proc": [10]})
    h.process_element({"key": "a", "event": [10]})
    h.process_element({"key": "b", "event": [10]})
    assert h.num_event_time_timers() == 2
    assert h.num_processing_time_timers() == 1
    h.process_watermark(100)
    h.set_processing_time(100)
    domains = sorted((d, k) for d, k, _, _ in h.outputs)
    assert domains == [("event_time", "a"), ("event_time", "b"), ("processing_time", "a")]
    h.close()


def test_delete_timer_and_delete_missing_timer(backend: StateBackend) -> None:
    h = harness(backend)
    h.process_element({"key": "a", "event": [10, 20], "proc": [5]})
    h.process_element({"key": "a", "delete_event": [10, 999], "delete_proc": [5, 6]})
    h.process_element({"key": "b", "delete_event": [20]})  # another key's timer: untouched
    h.process_watermark(100)
    h.set_processing_time(100)
    assert [(d, t) for d, _, t, _ in h.outputs] == [("event_time", 20)]
    h.close()


def test_on_timer_sees_the_keys_state_and_output_timestamps(backend: StateBackend) -> None:
    h = harness(backend)
    h.process_element({"key": "a", "event": [10], "proc": [50]})
    h.process_element({"key": "b", "event": [10]})
    h.process_watermark(10)
    h.set_processing_time(50)
    assert h.output_records == [
        (("event_time", "a", 10, "state-of-a"), 10),
        (("event_time", "b", 10, "state-of-b"), 10),
        (("processing_time", "a", 50, "state-of-a"), None),
    ]
    h.close()


class Rearming(KeyedProcessFunction[str, str, int]):
    """Registers a timer at the firing timestamp's +0 and +10 from on_timer."""

    def process_element(self, value: str, ctx: Context, out: Collector[int]) -> None:
        ctx.timer_service.register_event_time_timer(0)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[int]) -> None:
        out.collect(timestamp)
        if timestamp < 30:
            ctx.timer_service.register_event_time_timer(timestamp + 10)


def test_timers_registered_in_on_timer_fire_in_the_same_advance(backend: StateBackend) -> None:
    h = KeyedProcessFunctionHarness(Rearming(), lambda v: v, state_backend=backend)
    h.process_element("k")
    h.process_watermark(25)
    assert h.outputs == [0, 10, 20]
    h.process_watermark(1_000)
    assert h.outputs == [0, 10, 20, 30]
    h.close()


def test_timers_and_state_survive_snapshot_and_restore(
    backend: StateBackend, make_backend: BackendFactory
) -> None:
    h = harness(backend, processing_time=1_000)
    h.process_element({"key": "a", "event": [100], "proc": [5_000]})
    h.process_element({"key": "b", "event": [50]})
    snapshot = h.snapshot()
    h.process_element({"key": "c", "event": [1]})  # after the snapshot: must not be restored
    h.close()

    restored = harness(make_backend(), processing_time=1_000, restore_from=snapshot)
    assert restored.num_event_time_timers() == 2
    # The processing-time timer came due "while the job was down": it fires on the first advance.
    restored.set_processing_time(60_000)
    restored.process_watermark(1_000)
    assert [(d, k, t) for d, k, t, _ in restored.outputs] == [
        ("processing_time", "a", 5_000),
        ("event_time", "b", 50),
        ("event_time", "a", 100),
    ]
    assert restored.state(TimerRecorder.seen, "a") == "state-of-a"
    assert restored.state(TimerRecorder.seen, "c") is None
    restored.close()


def test_time_domain_enum_is_exposed() -> None:
    assert {d.value for d in TimeDomain} == {"event_time", "processing_time"}
