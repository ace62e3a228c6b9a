"""The job manager's Prometheus metrics (``GET /metrics``, rendered by ``prometheus-client``).

Names follow Prometheus' conventions (``eventapp_`` prefix, base units, ``_total`` counters) and
carry Flink's meaning; labels are bounded (split, topic/partition, subtask; never a key):

============================================  ==========================================================
``eventapp_records_in_total{split}``          records read (Flink ``numRecordsIn``), summed over restarts
``eventapp_records_out_total{split}``         records written to sinks (``numRecordsOut``)
``eventapp_dead_letters_total{split}``        records routed to the dead-letter sink
``eventapp_consumer_lag_records{topic,partition}``  records after the split's position (``pendingRecords``)
``eventapp_watermark_lag_seconds{split}``     wall clock minus the split's worker's watermark
``eventapp_split_state_bytes{split}``         state size of the split's last checkpoint
``eventapp_busy_seconds_total{subtask}``      time processing (``busyTimeMsPerSecond`` integrated)
``eventapp_idle_seconds_total{subtask}``      time waiting for input (``idleTimeMsPerSecond``)
``eventapp_rebalances_total{subtask}``        consumer-group rebalance callbacks (``--group``)
``eventapp_checkpoint_duration_seconds``      histogram of checkpoint durations
``eventapp_checkpoint_pause_seconds``         histogram of how long processing stopped for one
``eventapp_checkpoint_size_bytes``            histogram of checkpoint sizes
``eventapp_checkpoints_total``                completed checkpoints (``numberOfCompletedCheckpoints``)
``eventapp_restarts_total``                   worker restarts (``numRestarts``)
``eventapp_restore_duration_seconds``         histogram of how long a worker took to restore its splits
``eventapp_job_running``                      1 while the job is RUNNING
``eventapp_slots_running``                    task slots restored and processing
============================================  ==========================================================
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventapp.daemon.job_state import JobState
from eventapp.daemon.status import JobStatus, SlotStatus

__all__ = ["JobMetrics"]

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BYTES = tuple(float(4**k * 1024) for k in range(12))  # 1 KiB .. 4 GiB


class _StateCollector(Collector):
    """Reads the job state at scrape time."""

    def __init__(self, state: JobState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state
        for name, doc, label, totals in (
            ("eventapp_records_in", "Records read from the split.", "split", state.records_in),
            ("eventapp_records_out", "Records written to sinks for the split.", "split", state.records_out),
            (
                "eventapp_dead_letters",
                "Records of the split routed to the dead-letter sink.",
                "split",
                state.dead_letters,
            ),
            ("eventapp_busy_seconds", "Seconds the subtask spent processing.", "subtask", state.busy),
            ("eventapp_idle_seconds", "Seconds the subtask waited for input.", "subtask", state.idle),
            (
                "eventapp_rebalances",
                "Consumer-group rebalance callbacks of the subtask.",
                "subtask",
                state.rebalances,
            ),
        ):
            counter = CounterMetricFamily(name, doc, labels=[label])
            with state.lock:
                items = totals.items()
            for key, value in items:
                counter.add_metric([key], value)
            yield counter
        lag = GaugeMetricFamily(
            "eventapp_consumer_lag_records",
            "Records after the split's position.",
            labels=["topic", "partition"],
        )
        watermark_lag = GaugeMetricFamily(
            "eventapp_watermark_lag_seconds", "Wall clock minus the split's watermark.", labels=["split"]
        )
        state_bytes = GaugeMetricFamily(
            "eventapp_split_state_bytes", "State size of the split's last checkpoint.", labels=["split"]
        )
        for row in state.splits():
            topic, _, partition = row["split"].rpartition("-")
            if row["lag"] is not None:
                lag.add_metric([topic or row["split"], partition], row["lag"])
            if row["watermark_lag_s"] is not None:
                watermark_lag.add_metric([row["split"]], row["watermark_lag_s"])
            if row["state_size"] is not None:
                state_bytes.add_metric([row["split"]], row["state_size"])
        yield lag
        yield watermark_lag
        yield state_bytes
        with state.lock:
            completed = state.checkpoints_completed
            restarts = state.restarts
            running = state.status is JobStatus.RUNNING
            slots_running = sum(1 for s in state.slots if s.status is SlotStatus.RUNNING)
        yield CounterMetricFamily("eventapp_checkpoints", "Completed checkpoints.", value=completed)
        yield CounterMetricFamily("eventapp_restarts", "Worker restarts.", value=restarts)
        yield GaugeMetricFamily("eventapp_job_running", "1 while the job is RUNNING.", value=int(running))
        yield GaugeMetricFamily("eventapp_slots_running", "Task slots processing.", value=slots_running)


class JobMetrics:
    """The registry behind ``/metrics``: histograms fed as checkpoints and restores complete, the
    rest read from the job state when scraped."""

    def __init__(self, state: JobState) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StateCollector(state))
        self._duration = Histogram(
            "eventapp_checkpoint_duration_seconds",
            "Checkpoint duration (trigger to commit of every split of a worker).",
            buckets=_SECONDS,
            registry=self.registry,
        )
        self._pause = Histogram(
            "eventapp_checkpoint_pause_seconds",
            "How long processing stopped for a checkpoint.",
            buckets=_SECONDS,
            registry=self.registry,
        )
        self._size = Histogram(
            "eventapp_checkpoint_size_bytes", "Checkpoint state size.", buckets=_BYTES, registry=self.registry
        )
        self._restore = Histogram(
            "eventapp_restore_duration_seconds",
            "How long a worker took to restore its splits.",
            buckets=_SECONDS,
            registry=self.registry,
        )
        state.on_checkpoint.append(self._checkpoint)
        state.on_restore.append(self._restore.observe)
        self._started = time.monotonic()

    def _checkpoint(self, entry: dict[str, Any]) -> None:
        self._duration.observe(float(entry.get("duration_ms", 0.0)) / 1000)
        self._pause.observe(float(entry.get("pause_ms", 0.0)) / 1000)
        self._size.observe(float(entry.get("size_bytes", 0)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
