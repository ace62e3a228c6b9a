"""Windows in the operator test harness (Flink's WindowOperator harness tests): the window operator
is a KeyedProcessFunction, so the harness drives it with explicit watermarks, reads its main and
late side outputs and its timers, and snapshots and restores it mid-window."""

from __future__ import annotations

from typing import Any

from eventapp import OutputTag
from eventapp.testing import KeyedProcessFunctionHarness
from eventapp.windows import EventTimeSessionWindows, TumblingEventTimeWindows, WindowOperator

LATE = OutputTag[Any]("late")


def adder(a: tuple[str, int], b: tuple[str, int]) -> tuple[str, int]:
    return (a[0], a[1] + b[1])


def outputs(h: KeyedProcessFunctionHarness[Any, Any, Any]) -> list[tuple[Any, int | None]]:
    """Outputs as tuples (a stored window's contents come back from msgpack as lists)."""
    return [(tuple(value), ts) for value, ts in h.output_records]


def tumbling(**options: Any) -> WindowOperator:
    return WindowOperator.reducing(TumblingEventTimeWindows.of(10), adder, **options)


def test_watermarks_fire_windows_and_late_records_go_to_the_side_output() -> None:
    h = KeyedProcessFunctionHarness(tumbling(allowed_lateness=5, late_tag=LATE), key_selector=lambda r: r[0])
    h.process_element(("a", 1), timestamp=1)
    h.process_element(("a", 2), timestamp=9)
    h.process_element(("b", 4), timestamp=3)
    assert h.num_event_time_timers() == 4  # per key: the trigger's at 9, the cleanup at 9 + 5
    h.process_watermark(9)
    assert sorted(outputs(h)) == [(("a", 3), 9), (("b", 4), 9)]
    h.clear_outputs()
    h.process_element(("a", 8), timestamp=2)  # late, within the allowed lateness: fires again
    assert outputs(h) == [(("a", 11), 9)]
    h.process_watermark(14)  # the cleanup time of [0, 10): the window is gone
    h.process_element(("a", 16), timestamp=4)
    assert h.side_output_records(LATE) == [(("a", 16), 4)]
    assert h.num_event_time_timers() == 0


def test_an_open_window_survives_a_snapshot_and_restore() -> None:
    h = KeyedProcessFunctionHarness(tumbling(), key_selector=lambda r: r[0])
    h.process_element(("a", 1), timestamp=1)
    snapshot = h.snapshot()
    h.close()
    restored = KeyedProcessFunctionHarness(tumbling(), key_selector=lambda r: r[0], restore_from=snapshot)
    restored.process_element(("a", 2), timestamp=5)
    restored.process_watermark(20)
    assert outputs(restored) == [(("a", 3), 9)]


def test_session_windows_merge_in_the_harness() -> None:
    op = WindowOperator.reducing(EventTimeSessionWindows.with_gap(5), adder)
    h = KeyedProcessFunctionHarness(op, key_selector=lambda r: r[0])
    for ts, value in ((1, 1), (10, 2), (6, 4)):
        h.process_element(("a", value), timestamp=ts)
    h.process_watermark(100)
    assert outputs(h) == [(("a", 7), 14)]  # [1, 6) + [6, 11) bridged + [10, 15) = [1, 15)
