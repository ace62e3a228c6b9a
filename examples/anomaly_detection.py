"""Sensor anomaly detection: z-scores over a running mean and variance, and missing heartbeats.

Input readings ``{"sensor": str, "value": float, "ts": int}`` (``ts`` in epoch ms, the event time),
keyed by sensor. Per sensor, in keyed state:

- the running mean and variance (Welford's algorithm: one pass, numerically stable, O(1) state);
  after ``warmup`` readings a reading with ``|z| > z_threshold`` emits
  ``{"type": "anomaly", "sensor", "value", "mean", "stddev", "z", "ts"}``. An anomalous reading does
  *not* update the statistics (``update_on_anomaly=False``), so an outlier neither inflates the
  variance nor masks the next one;
- an event-time timer at ``last_seen + heartbeat_ms``, moved on every reading (the previous one is
  deleted): when the watermark reaches it, ``{"type": "missing_heartbeat", "sensor", "last_seen",
  "ts"}`` is emitted once; the next reading arms it again.

Readings behind the watermark go to the side output ``late-readings`` and change nothing. The
state has a time-to-live (processing time by default, event time optional), so a sensor that is
gone for good leaves no state behind. See ``docs/applications.md``.

    python -m examples.anomaly_detection
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventapp import (
    Collector,
    ConfigurationError,
    Context,
    DataclassSerializer,
    Job,
    JobConfig,
    KeyedProcessFunction,
    OnTimerContext,
    OutputTag,
    RuntimeContext,
    Sink,
    Source,
    StateTtlConfig,
    StateVisibility,
    TtlTimeDomain,
    TtlUpdateType,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource

__all__ = [
    "LATE_READINGS",
    "AnomalyDetector",
    "SensorStats",
    "build_job",
    "main",
]

Reading = dict[str, Any]
Alert = dict[str, Any]

#: Readings whose timestamp is behind the current watermark: routed here, not judged.
LATE_READINGS: OutputTag[Reading] = OutputTag("late-readings")

DEFAULT_WARMUP = 30
DEFAULT_Z_THRESHOLD = 3.0
DEFAULT_HEARTBEAT_MS = 60_000
DEFAULT_STATE_TTL_MS = 24 * 3_600_000
DEFAULT_OUT_OF_ORDERNESS_MS = 5_000


@dataclass(slots=True)
class SensorStats:
    """One sensor's keyed state: Welford's accumulators, the last event time seen and the
    heartbeat timer that is armed (``None``: none, the missing-heartbeat alert was emitted)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    last_seen: int | None = None
    heartbeat_at: int | None = None

    @property
    def stddev(self) -> float:
        """The population standard deviation of the readings so far (``sqrt(M2 / n)``)."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0

    def add(self, value: float) -> None:
        """Welford's update: count, mean and the sum of squared deviations ``M2``."""
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)


class AnomalyDetector(KeyedProcessFunction[str, Reading, Alert]):
    """Keyed by sensor; needs event time (a ``WatermarkStrategy`` with a timestamp assigner).

    :param warmup: readings that only build the statistics; reading ``warmup + 1`` is the first
        judged.
    :param z_threshold: a reading alerts when ``|value - mean| / stddev`` is strictly above it (a
        sensor whose readings were all equal, stddev 0, never alerts: no z-score exists).
    :param heartbeat_ms: event time without a reading after which ``missing_heartbeat`` is emitted.
    :param state_ttl_ms: time-to-live of a sensor's state since its last write (a reading, or the
        missing-heartbeat alert).
    :param ttl_time_domain: the clock of the TTL: processing time (Flink's semantics, the default)
        or event time (the watermark; replays expire state as the original run did).
    :param update_on_anomaly: also feed anomalous readings into the statistics.
    """

    def __init__(
        self,
        *,
        warmup: int = DEFAULT_WARMUP,
        z_threshold: float = DEFAULT_Z_THRESHOLD,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        state_ttl_ms: int = DEFAULT_STATE_TTL_MS,
        ttl_time_domain: TtlTimeDomain = TtlTimeDomain.PROCESSING_TIME,
        update_on_anomaly: bool = False,
    ) -> None:
        if warmup < 2:
            raise ConfigurationError(f"warmup must be >= 2 readings (a stddev needs two), got {warmup}")
        if z_threshold <= 0:
            raise ConfigurationError(f"z_threshold must be > 0, got {z_threshold}")
        if heartbeat_ms <= 0:
            raise ConfigurationError(f"heartbeat_ms must be > 0, got {heartbeat_ms}")
        self.warmup = warmup
        self.z_threshold = z_threshold
        self.heartbeat_ms = heartbeat_ms
        self.update_on_anomaly = update_on_anomaly
        self.stats = ValueStateDescriptor[SensorStats](
            "sensor-stats",
            serializer=DataclassSerializer(SensorStats),
            ttl=StateTtlConfig(
                state_ttl_ms,
                update_type=TtlUpdateType.ON_CREATE_AND_WRITE,
                visibility=StateVisibility.NEVER_RETURN_EXPIRED,
                time_domain=ttl_time_domain,
            ),
        )

    def open(self, ctx: RuntimeContext) -> None:
        self.state = ctx.get_state(self.stats)

    def process_element(self, value: Reading, ctx: Context, out: Collector[Alert]) -> None:
        ts = ctx.timestamp
        if ts is None:
            raise ConfigurationError(
                "AnomalyDetector needs event time: read the source with a WatermarkStrategy "
                "with_timestamp_assigner(lambda r, _: r['ts'])"
            )
        timers = ctx.timer_service
        if ts < timers.current_watermark():
            ctx.output(LATE_READINGS, value)
            return
        reading = float(value["value"])
        stats = self.state.value() or SensorStats()
        anomalous = False
        if stats.count >= self.warmup:
            stddev = stats.stddev
            if stddev > 0:
                z = (reading - stats.mean) / stddev
                if abs(z) > self.z_threshold:
                    anomalous = True
                    out.collect(
                        {
                            "type": "anomaly",
                            "sensor": ctx.current_key,
                            "value": reading,
                            "mean": stats.mean,
                            "stddev": stddev,
                            "z": z,
                            "ts": ts,
                        }
                    )
        if not anomalous or self.update_on_anomaly:
            stats.add(reading)
        # The heartbeat: one timer per sensor, at the latest event time seen plus heartbeat_ms.
        last_seen = ts if stats.last_seen is None else max(stats.last_seen, ts)
        due = last_seen + self.heartbeat_ms
        if stats.heartbeat_at != due:
            if stats.heartbeat_at is not None:
                timers.delete_event_time_timer(stats.heartbeat_at)
            timers.register_event_time_timer(due)
        stats.last_seen, stats.heartbeat_at = last_seen, due
        self.state.update(stats)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Alert]) -> None:
        stats = self.state.value()
        if stats is None or stats.heartbeat_at != timestamp:
            return  # the state expired (TTL shorter than the silence), or a timer of the past
        out.collect(
            {
                "type": "missing_heartbeat",
                "sensor": ctx.current_key,
                "last_seen": stats.last_seen,
                "ts": timestamp,
            }
        )
        stats.heartbeat_at = None  # once: the next reading arms it again
        self.state.update(stats)


def _event_time(reading: Reading, _source_ts: int | None) -> int:
    return int(reading["ts"])


def build_job(
    source: Source[Reading],
    alerts: Sink[Alert] | Sequence[Sink[Alert]],
    late: Sink[Reading] | None = None,
    *,
    detector: AnomalyDetector | None = None,
    out_of_orderness_ms: int = DEFAULT_OUT_OF_ORDERNESS_MS,
    partitioned_by_source: bool = False,
    config: JobConfig | None = None,
    name: str = "anomaly-detection",
) -> Job:
    """The anomaly job over any ``source`` of readings, alerts to ``alerts`` (one sink or several),
    late readings to ``late`` (dropped when ``None``). ``partitioned_by_source``: the source's
    splits are already partitioned by sensor (a Kafka topic keyed by sensor id), so ``key_by``
    needs no shuffle."""
    job = Job(name, config)
    readings = job.from_source(
        source,
        WatermarkStrategy.for_bounded_out_of_orderness(out_of_orderness_ms).with_timestamp_assigner(
            _event_time
        ),
    )
    detected = readings.key_by(
        lambda r: str(r["sensor"]), partitioned_by_source=partitioned_by_source
    ).process(detector or AnomalyDetector(), uid="anomaly-detector")
    for index, sink in enumerate([alerts] if not isinstance(alerts, Sequence) else alerts):
        detected.sink_to(sink, name="alerts" if index == 0 else f"alerts-{index + 1}")
    if late is not None:
        detected.side_output(LATE_READINGS).sink_to(late, name="late-readings")
    return job


def demo_readings() -> list[Reading]:
    """Three sensors, one reading a second each for 90 s: a spike on ``boiler``, ``pump`` silent
    after 40 s, and one ``fan`` reading that arrives 20 s late."""
    rng = random.Random(7)
    start = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    readings: list[Reading] = []
    for second in range(90):
        ts = start + second * 1_000
        for sensor, base in (("boiler", 70.0), ("pump", 3.0), ("fan", 1_200.0)):
            if sensor == "pump" and second >= 40:
                continue
            value = base + rng.uniform(-1, 1) * base * 0.01  # bounded noise: |z| < 1.8
            if sensor == "boiler" and second == 60:
                value = base * 1.2  # the anomaly
            readings.append({"sensor": sensor, "value": round(value, 3), "ts": ts})
        if second == 80:
            readings.append({"sensor": "fan", "value": 1_201.0, "ts": start + 60_000})  # late
    return readings


def main() -> None:
    """Run the job over :func:`demo_readings`, one reading per poll, and print what it emits."""
    source: CollectionSource[Reading] = CollectionSource(bounded=False)
    alerts: CollectionSink[Alert] = CollectionSink("alerts")
    late: CollectionSink[Reading] = CollectionSink("late-readings")
    config = JobConfig(max_batch_records=1, poll_timeout_s=0)
    job = build_job(source, alerts, late, detector=AnomalyDetector(heartbeat_ms=30_000), config=config)
    runner = job.runner()
    for reading in demo_readings():
        source.add(reading)
    runner.run_until_idle()
    # The source stays open, as a live one does: the heartbeat timers of the sensors still
    # reporting are pending and do not fire (ending a bounded input would fire every timer).
    runner.close()
    for alert in alerts.values:
        print("ALERT", json.dumps(_rounded(alert)))
    for reading in late.values:
        print("LATE ", json.dumps(reading))


def _rounded(alert: Alert) -> Alert:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in alert.items()}


if __name__ == "__main__":
    main()
