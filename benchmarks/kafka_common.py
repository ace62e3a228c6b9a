"""Shared parts of the Kafka benchmarks: the broker, topics, producing input, the running-count job's
pieces, table printing.

``bench_kafka`` and ``bench_restart`` import from here (``bench_kafka`` re-exports the names
``bench_restart`` uses). Nothing in the Kafka benchmarks subclasses the runner or reads private
attributes: runs are observed through the public API and eventapp's structlog events
(:mod:`benchmarks.kafka_events`).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from eventapp import (
    Collector,
    Context,
    KeyedProcessFunction,
    KeyedStateStore,
    LocalRunner,
    RuntimeContext,
    ValueStateDescriptor,
)
from eventapp.checkpoint.commit import CommitPoint
from eventapp.connectors.kafka import KafkaSource, KafkaSourceConfig
from eventapp.connectors.kafka.quirks import QUIRKS_ENVIRONMENT_VARIABLE
from eventapp.embedded_broker import EmbeddedBroker
from eventapp.statebackends import RocksDBStateBackend

BOOTSTRAP_ENV = "EVENTAPP_BENCH_BOOTSTRAP_SERVERS"
TOPIC_CONFIGS = {"retention.ms": "-1", "cleanup.policy": "delete"}
UID = "count"
MiB = 1 << 20
#: The directory holding ``benchmarks/`` (not resolved: a symlinked ``benchmarks`` works beside another tree).
ROOT = Path(__file__).absolute().parents[1]


# -- the running count (checkpoint/restore parts, bench_restart) ------------------------------------


class RunningCount(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    """Counts records per key ``k`` and emits ``{"k": key, "n": count}``.

    Records with ``"q"`` (fill records of the many-keys benchmark) only update the count; ``"t"``
    (a send time) is copied to the output.
    """

    count = ValueStateDescriptor[int]("count")

    def open(self, ctx: RuntimeContext) -> None:
        self.state = ctx.get_state(self.count)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[dict[str, Any]]) -> None:
        n = (self.state.value() or 0) + 1
        self.state.update(n)
        if "q" in value:
            return
        if "t" in value:
            out.collect({"k": value["k"], "n": n, "t": value["t"]})
        else:
            out.collect({"k": value["k"], "n": n})


def key_of(value: dict[str, Any]) -> str:
    """The key of the running count's input and output records."""
    key: str = value["k"]
    return key


class TimedRocksDBStateBackend(RocksDBStateBackend):
    """RocksDB, recording how long each restore and each state snapshot takes (the stores' get/put
    path is untouched)."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__(directory)
        self.restore_ms: dict[str, float] = {}
        self.snapshot_ms: list[float] = []

    def open(self, scope: str, restore_from: Path | None = None) -> KeyedStateStore:
        began = time.perf_counter()
        store = super().open(scope, restore_from=restore_from)
        if restore_from is not None:
            self.restore_ms[scope] = (time.perf_counter() - began) * 1000
        inner = store.snapshot
        timings = self.snapshot_ms

        def snapshot(directory: Path) -> None:
            started = time.perf_counter()
            inner(directory)
            timings.append((time.perf_counter() - started) * 1000)

        store.snapshot = snapshot  # type: ignore[method-assign]
        return store


class RecordingKafkaSource(KafkaSource[Any]):
    """A KafkaSource that keeps the commit points it creates, to read their public ``timings``."""

    def __init__(self, config: KafkaSourceConfig) -> None:
        super().__init__(config)
        self.commit_points: list[CommitPoint] = []

    def create_commit_point(self, job: str, split: str, exactly_once: bool) -> CommitPoint:
        point = super().create_commit_point(job, split, exactly_once)
        self.commit_points.append(point)
        return point

    def timing(self, name: str) -> float:
        """Sum over splits of the last recorded ``name`` timing (ms) of each commit point (0 if the
        connector no longer records it)."""
        return sum(float(getattr(p, "timings", {}).get(name, 0.0)) for p in self.commit_points)


def count_state_entries(runner: LocalRunner) -> int:
    """Keyed state entries in every split's store (scanned: outside any timed section)."""
    return sum(sum(1 for _ in runner.store(split).scan(b"s")) for split in runner.splits)


# -- broker, topics, input ------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    """The broker every part runs against."""

    bootstrap: str
    description: str
    #: Process id of the embedded broker (to measure its CPU use); ``None`` for an external cluster.
    pid: int | None


@contextlib.contextmanager
def broker() -> Iterator[Broker]:
    """``$EVENTAPP_BENCH_BOOTSTRAP_SERVERS``, or a fresh embedded Tansu broker (in memory)."""
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        yield Broker(external, f"${BOOTSTRAP_ENV}={external}", None)
        return
    # Tansu's quirks are worked around only when named (eventapp.connectors.kafka.quirks); workers
    # started by the benchmark inherit the variable.
    os.environ.setdefault(QUIRKS_ENVIRONMENT_VARIABLE, EmbeddedBroker.BROKER_QUIRKS)
    with EmbeddedBroker() as embedded:
        yield Broker(embedded.bootstrap_servers, "Tansu (embedded, in-memory storage)", embedded.pid)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` (Linux ``/proc``; else ``None``)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    """``/proc/loadavg``'s three load averages (1, 5, 15 min), or ``"?"``."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


class Topics:
    """Creates uniquely named topics (explicit configs: Tansu describes topics without them as {})."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.run_id = uuid.uuid4().hex[:8]

    def create(self, prefix: str, partitions: int) -> str:
        name = f"bench-{prefix}-{self.run_id}"
        # A client per call: none is left connected when the broker stops (librdkafka would log it).
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=-1, config=TOPIC_CONFIGS)],
            operation_timeout=30,
            request_timeout=30,
        )
        futures[name].result(timeout=30)
        deadline = time.monotonic() + 30
        while True:
            described = admin.list_topics(name, timeout=5).topics.get(name)
            if (
                described is not None
                and described.error is None
                and len(described.partitions) == partitions
                and all(p.leader >= 0 for p in described.partitions.values())
            ):
                return name
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} not visible in metadata after 30 s")
            time.sleep(0.05)


def produce(bootstrap: str, topic: str, records: Iterable[tuple[str, bytes]]) -> int:
    """Produce ``(key, value)`` records (idempotent, acks=all, batched) and wait for every
    acknowledgement."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
        }
    )
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            failures.append(error)

    count = 0
    send = producer.produce
    for key, value in records:
        try:
            send(topic, value, key=key, on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.05)
            send(topic, value, key=key, on_delivery=on_delivery)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(300)
    if remaining or failures:
        raise RuntimeError(f"producing to {topic}: {remaining} unacknowledged, failures {failures[:3]}")
    return count


# -- figures ----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank, never interpolated)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "   ") -> None:
    """Print ``rows`` under ``headers``: first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def render(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return indent + "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    print(render(headers))
    for r in rows:
        print(render(r))
