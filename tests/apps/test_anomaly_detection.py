"""The anomaly app (examples/anomaly_detection.py): z-scores after a warm-up, the missing-heartbeat
timer, late readings and state TTL, through the public harness and through a local run of
build_job on in-memory sources."""

from __future__ import annotations

from typing import Any

import pytest

from eventapp import JobConfig, ManualClock, TtlTimeDomain
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.testing import KeyedProcessFunctionHarness
from examples.anomaly_detection import (
    LATE_READINGS,
    AnomalyDetector,
    SensorStats,
    build_job,
    demo_readings,
)

Harness = KeyedProcessFunctionHarness[str, dict[str, Any], dict[str, Any]]
T0 = 1_000_000


def reading(sensor: str, value: float, ts: int) -> dict[str, Any]:
    return {"sensor": sensor, "value": value, "ts": ts}


def harness(detector: AnomalyDetector | None = None, processing_time: int = 0) -> Harness:
    return KeyedProcessFunctionHarness(
        detector or AnomalyDetector(), lambda r: r["sensor"], processing_time=processing_time
    )


def warm_up(h: Harness, sensor: str, n: int = 30, start: int = T0) -> int:
    """``n`` readings alternating 9 and 11: mean 10 and stddev 1, exactly. Returns the next ts."""
    for i in range(n):
        h.process_element(reading(sensor, 9.0 if i % 2 == 0 else 11.0, start + i), timestamp=start + i)
    return start + n


def stats(h: Harness, sensor: str, detector: AnomalyDetector) -> SensorStats | None:
    value: SensorStats | None = h.state(detector.stats, sensor)
    return value


def test_welford_gives_the_exact_mean_and_stddev() -> None:
    detector = AnomalyDetector()
    h = harness(detector)
    warm_up(h, "s")
    s = stats(h, "s", detector)
    assert s is not None and (s.count, s.mean, s.m2, s.stddev) == (30, 10.0, 30.0, 1.0)
    assert h.outputs == []


def test_z_exactly_at_the_threshold_does_not_alert_just_above_does() -> None:
    h = harness()
    for sensor, value in [("exact", 13.0), ("exact-low", 7.0), ("over", 13.001), ("under", 6.999)]:
        ts = warm_up(h, sensor)
        h.process_element(reading(sensor, value, ts), timestamp=ts)
    assert [(a["sensor"], a["type"]) for a in h.outputs] == [("over", "anomaly"), ("under", "anomaly")]
    over, under = h.outputs
    assert over == {
        "type": "anomaly",
        "sensor": "over",
        "value": 13.001,
        "mean": 10.0,
        "stddev": 1.0,
        "z": pytest.approx(3.001),
        "ts": T0 + 30,
    }
    assert under["z"] == pytest.approx(-3.001)


def test_the_warm_up_reading_is_not_judged_the_next_one_is() -> None:
    h = harness(AnomalyDetector(warmup=30))
    ts = warm_up(h, "s", n=29)
    h.process_element(reading("s", 1_000.0, ts), timestamp=ts)  # the 30th: only builds statistics
    assert h.outputs == []
    h.process_element(reading("s", 1_000_000.0, ts + 1), timestamp=ts + 1)  # the 31st: judged
    assert [a["type"] for a in h.outputs] == ["anomaly"]


def test_an_anomaly_does_not_update_the_statistics_unless_asked() -> None:
    for update, count in [(False, 30), (True, 31)]:
        detector = AnomalyDetector(update_on_anomaly=update)
        h = harness(detector)
        ts = warm_up(h, "s")
        h.process_element(reading("s", 50.0, ts), timestamp=ts)
        assert len(h.outputs) == 1
        s = stats(h, "s", detector)
        assert s is not None and s.count == count
        assert (s.mean == 10.0) is not update
        assert s.last_seen == ts, "an anomalous reading is still a heartbeat"


def test_a_constant_sensor_has_no_z_score_and_never_alerts() -> None:
    h = harness()
    for i in range(30):
        h.process_element(reading("flat", 5.0, T0 + i), timestamp=T0 + i)
    h.process_element(reading("flat", 6.0, T0 + 30), timestamp=T0 + 30)
    assert h.outputs == []


def test_missing_heartbeat_fires_once_and_the_next_reading_rearms_it() -> None:
    detector = AnomalyDetector(heartbeat_ms=60_000)
    h = harness(detector)
    h.process_element(reading("s", 1.0, 0), timestamp=0)
    assert h.num_event_time_timers() == 1
    h.process_watermark(59_999)
    assert h.outputs == []
    h.process_watermark(60_000)
    assert h.outputs == [{"type": "missing_heartbeat", "sensor": "s", "last_seen": 0, "ts": 60_000}]
    assert h.output_records[0][1] == 60_000, "stamped with the timer's time"
    h.process_watermark(10_000_000)
    assert len(h.outputs) == 1, "once, however long the silence"
    assert h.num_event_time_timers() == 0
    h.process_element(reading("s", 1.0, 10_000_000), timestamp=10_000_000)
    assert h.num_event_time_timers() == 1, "re-armed"
    h.process_watermark(10_060_000)
    assert h.outputs[1] == {
        "type": "missing_heartbeat",
        "sensor": "s",
        "last_seen": 10_000_000,
        "ts": 10_060_000,
    }


def test_every_reading_moves_the_timer_and_deletes_the_previous_one() -> None:
    detector = AnomalyDetector(heartbeat_ms=60_000)
    h = harness(detector)
    for ts in (0, 10_000, 20_000):
        h.process_element(reading("s", 1.0, ts), timestamp=ts)
    h.process_element(reading("s", 1.0, 15_000), timestamp=15_000)  # out of order, not late
    assert h.num_event_time_timers() == 1
    s = stats(h, "s", detector)
    assert s is not None and (s.last_seen, s.heartbeat_at) == (20_000, 80_000)
    h.process_watermark(79_999)
    assert h.outputs == []
    h.process_watermark(80_000)
    assert h.outputs == [{"type": "missing_heartbeat", "sensor": "s", "last_seen": 20_000, "ts": 80_000}]


def test_a_reading_exactly_at_the_deadline_keeps_the_sensor_alive() -> None:
    h = harness(AnomalyDetector(heartbeat_ms=60_000))
    h.process_element(reading("s", 1.0, 0), timestamp=0)
    h.process_element(reading("s", 1.0, 60_000), timestamp=60_000)
    h.process_watermark(119_999)
    assert h.outputs == []


def test_heartbeats_are_per_sensor() -> None:
    h = harness(AnomalyDetector(heartbeat_ms=1_000))
    h.process_element(reading("a", 1.0, 0), timestamp=0)
    h.process_element(reading("b", 1.0, 500), timestamp=500)
    h.process_watermark(1_200)
    assert [a["sensor"] for a in h.outputs] == ["a"]


def test_late_readings_go_to_the_side_output_and_change_nothing() -> None:
    detector = AnomalyDetector()
    h = harness(detector)
    h.process_watermark(100_000)
    late = reading("s", 1.0, 99_999)
    h.process_element(late, timestamp=99_999)
    assert h.side_output(LATE_READINGS) == [late]
    assert h.side_output_records(LATE_READINGS) == [(late, 99_999)]
    assert stats(h, "s", detector) is None and h.num_event_time_timers() == 0
    h.process_element(reading("s", 1.0, 100_000), timestamp=100_000)  # at the watermark: on time
    assert len(h.side_output(LATE_READINGS)) == 1
    s = stats(h, "s", detector)
    assert s is not None and s.count == 1


def test_processing_time_ttl_removes_a_dead_sensor_and_every_reading_refreshes_it() -> None:
    detector = AnomalyDetector(state_ttl_ms=10_000)
    h = harness(detector, processing_time=0)
    warm_up(h, "s", n=3)
    h.set_processing_time(6_000)
    h.process_element(reading("s", 11.0, T0 + 10), timestamp=T0 + 10)  # refreshes the TTL
    h.set_processing_time(15_999)
    s = stats(h, "s", detector)
    assert s is not None and s.count == 4
    h.set_processing_time(16_000)
    assert stats(h, "s", detector) is None, "expired 10 s after the last write"
    h.process_element(reading("s", 10.0, T0 + 20), timestamp=T0 + 20)
    s = stats(h, "s", detector)
    assert s is not None and s.count == 1, "a sensor that comes back warms up again"


def test_event_time_ttl_follows_the_watermark() -> None:
    detector = AnomalyDetector(
        state_ttl_ms=100_000, ttl_time_domain=TtlTimeDomain.EVENT_TIME, heartbeat_ms=500_000
    )
    h = harness(detector, processing_time=0)
    h.process_element(reading("s", 1.0, 0), timestamp=0)
    h.set_processing_time(10**12)  # processing time plays no part
    h.process_watermark(99_999)
    assert stats(h, "s", detector) is not None
    h.process_watermark(100_000)
    assert stats(h, "s", detector) is None
    h.process_watermark(500_000)  # the heartbeat timer finds no state: nothing to report
    assert h.outputs == []


@pytest.mark.parametrize("bad", [{"warmup": 1}, {"z_threshold": 0}, {"heartbeat_ms": 0}])
def test_bad_parameters_are_refused(bad: dict[str, Any]) -> None:
    from eventapp import ConfigurationError

    with pytest.raises(ConfigurationError):
        AnomalyDetector(**bad)


def _local_run(
    readings: list[dict[str, Any]], detector: AnomalyDetector, *, end: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    source: CollectionSource[dict[str, Any]] = CollectionSource(bounded=False)
    alerts: CollectionSink[dict[str, Any]] = CollectionSink()
    late: CollectionSink[dict[str, Any]] = CollectionSink()
    config = JobConfig(clock=ManualClock(0), max_batch_records=1, poll_timeout_s=0)
    runner = build_job(source, alerts, late, detector=detector, config=config).runner()
    try:
        for r in readings:
            source.add(r)
        runner.run_until_idle()
        if end:
            source.end()
            runner.run_until_idle()
            assert runner.finished
    finally:
        runner.close()
    return alerts.values, late.values


def test_build_job_runs_the_demo_end_to_end() -> None:
    alerts, late = _local_run(demo_readings(), AnomalyDetector(heartbeat_ms=30_000))
    start = 1_767_225_600_000
    assert [(a["type"], a["sensor"], a["ts"]) for a in alerts] == [
        ("anomaly", "boiler", start + 60_000),
        ("missing_heartbeat", "pump", start + 69_000),
    ]
    assert alerts[1]["last_seen"] == start + 39_000
    assert late == [{"sensor": "fan", "value": 1_201.0, "ts": start + 60_000}]


def test_build_job_at_the_end_of_a_bounded_input_every_heartbeat_fires() -> None:
    readings = [reading("a", 1.0, 0), reading("b", 1.0, 5_000)]
    alerts, _ = _local_run(readings, AnomalyDetector(heartbeat_ms=60_000), end=True)
    assert alerts == [
        {"type": "missing_heartbeat", "sensor": "a", "last_seen": 0, "ts": 60_000},
        {"type": "missing_heartbeat", "sensor": "b", "last_seen": 5_000, "ts": 65_000},
    ]


def test_main_prints_the_alerts(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.anomaly_detection import main

    main()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("ALERT", "LATE"))]
    assert [line.split()[0] for line in lines] == ["ALERT", "ALERT", "LATE"]
    assert '"type": "anomaly"' in lines[0] and '"sensor": "boiler"' in lines[0]
    assert '"type": "missing_heartbeat"' in lines[1] and '"sensor": "pump"' in lines[1]


def test_state_and_heartbeat_survive_a_snapshot_and_restore() -> None:
    detector = AnomalyDetector(heartbeat_ms=60_000)
    h = harness(detector)
    ts = warm_up(h, "s")
    snapshot = h.snapshot()
    h.close()
    restored = KeyedProcessFunctionHarness(
        AnomalyDetector(heartbeat_ms=60_000), lambda r: r["sensor"], restore_from=snapshot
    )
    restored.process_element(reading("s", 13.5, ts), timestamp=ts)
    restored.process_watermark(ts + 60_000)
    assert [a["type"] for a in restored.outputs] == ["anomaly", "missing_heartbeat"]
    assert restored.num_event_time_timers() == 0
