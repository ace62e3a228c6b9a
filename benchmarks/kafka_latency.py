"""End-to-end latency of ``bench_kafka``: the card job as a worker process under a paced load.

A worker (``eventapp run benchmarks.kafka_cards:build_worker_job``, unbounded source, one process for
all splits) runs; after a warm-up (until its output shows), a producer writes ``--rate`` card
messages/s for ``--latency-seconds``, each with its send time (epoch ms) as ``ts``; a
``read_committed`` consumer of the output records *receive time - ts* per output (the aggregate
carries the ``ts`` of the message that updated it). Then the worker is stopped (SIGTERM: final
checkpoint) and its output audited like the throughput runs.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from .kafka_cards import CardJobSpec, Expected, audit_cards, card_ids, card_payload
from .kafka_common import Broker, Topics, cpu_seconds, loadavg, percentile
from .kafka_events import (
    CheckpointEvent,
    PauseStats,
    log_tail,
    read_worker_log,
    start_workers,
    stop_workers,
)
from .kafka_throughput import WORKER_TARGET


@dataclass(frozen=True)
class LatencySetup:
    """One latency run's job configuration."""

    mode: str  # "exactly-once" or "at-least-once"
    interval_ms: int
    #: ``None``: eventapp's defaults (poll_timeout_s=0.1, fetch.wait.max.ms=100).
    poll_timeout_s: float | None = None
    fetch_wait_max_ms: int | None = None

    @property
    def polling(self) -> str:
        if self.poll_timeout_s is None:
            return "default"
        return f"{self.poll_timeout_s:g} s / {self.fetch_wait_max_ms} ms"


@dataclass
class LatencyResult:
    setup: LatencySetup
    sent: int
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    worker_cpu: float | None
    broker_cpu: float | None
    #: Mean time between checkpoint starts during the load (ms), and their pauses.
    checkpoint_period_ms: float | None
    pauses: PauseStats | None
    load: str = ""
    checkpoints: list[CheckpointEvent] = field(default_factory=list)


class OutputWatcher(threading.Thread):
    """Reads the output topic (read_committed) and records receive time - ``ts`` per output."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(daemon=True, name="latency-consumer")
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"latency-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.queue.backoff.ms": 10,
                "fetch.wait.max.ms": 10,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.latencies_ms: list[float] = []
        self.outputs: set[tuple[str, int]] = set()
        self.duplicates = 0
        self.warm = threading.Event()
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                messages = self._consumer.consume(500, 0.05)
                now_ms = time.time() * 1000
                for message in messages:
                    if message.error() is not None:
                        continue
                    output = orjson.loads(message.value())  # type: ignore[arg-type]
                    if output["card"].startswith("warm"):
                        self.warm.set()
                        continue
                    pair = (output["card"], output["count"])
                    if pair in self.outputs:
                        self.duplicates += 1
                    self.outputs.add(pair)
                    self.latencies_ms.append(now_ms - output["ts"])
        except BaseException as exc:  # noqa: BLE001 - reported by the caller, which checks .error
            self.error = exc
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def paced_load(
    producer: Producer, topic: str, rate: int, seconds: float, cards: list[str], expected: Expected
) -> int:
    """Produce ``rate`` card messages/s for ``seconds``, each with its send time (epoch ms) as ``ts``."""
    rng = random.Random(5)
    total = int(rate * seconds)
    began = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - began) * rate) + 1)
        while sent < due:
            card = cards[rng.randrange(len(cards))]
            amount = round(rng.uniform(1, 2000), 2)
            payload = card_payload(card, amount, int(time.time() * 1000))
            expected.add(card, amount, len(payload))
            try:
                producer.produce(topic, payload, key=card)
            except BufferError:
                producer.poll(0.05)
                producer.produce(topic, payload, key=card)
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    return sent


def latency_run(
    broker: Broker, topics: Topics, args: argparse.Namespace, tmp: Path, setup: LatencySetup
) -> LatencyResult:
    """Start the job as a worker process, warm it up, send the paced load, measure, stop, audit."""
    mode = "eos" if setup.mode == "exactly-once" else "alo"
    tag = f"lat-{mode}-{setup.interval_ms}-{'d' if setup.poll_timeout_s is None else 'f'}"
    spec = CardJobSpec(
        name=f"bench-{tag}-{topics.run_id}",
        bootstrap=broker.bootstrap,
        input_topic=topics.create(f"{tag}-in", args.partitions),
        output_topic=topics.create(f"{tag}-out", args.partitions),
        state_dir=tmp / f"{tag}-state",
        checkpoint_dir=tmp / f"{tag}-checkpoints",
        interval_ms=setup.interval_ms,
        bounded=False,
        poll_timeout_s=setup.poll_timeout_s,
        fetch_wait_max_ms=setup.fetch_wait_max_ms,
        exactly_once=setup.mode == "exactly-once",
    )
    expected = Expected()
    watcher = OutputWatcher(broker.bootstrap, spec.output_topic, args.partitions)
    watcher.start()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    [worker] = start_workers(WORKER_TARGET, spec.environment(), 1, tmp, tag)
    try:
        deadline = time.monotonic() + 90
        warm = 0
        while not watcher.warm.is_set():  # until the worker has opened and committed a checkpoint
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"latency worker not ready ({worker.process.poll()}): {log_tail(worker)}")
            card = f"warm-{warm}"
            payload = card_payload(card, 1.0, 0)
            expected.add(card, 1.0, len(payload))
            producer.produce(spec.input_topic, payload, key=card)
            producer.poll(0)
            warm += 1
            time.sleep(0.05)
        cpu_before = (cpu_seconds(worker.process.pid), cpu_seconds(broker.pid), time.monotonic())
        load_began = time.time()
        sent = paced_load(
            producer, spec.input_topic, args.rate, args.latency_seconds, card_ids(args.cards), expected
        )
        deadline = time.monotonic() + 10 + 20 * setup.interval_ms / 1000
        while len(watcher.latencies_ms) < sent and time.monotonic() < deadline and watcher.is_alive():
            time.sleep(0.02)
        cpu_after = (cpu_seconds(worker.process.pid), cpu_seconds(broker.pid), time.monotonic())
        load_ended = time.time()
        load = loadavg()
    finally:
        producer.flush(10)
        stop_workers([worker])
        watcher.stop()
    if worker.process.returncode != 0:
        raise RuntimeError(f"latency worker exited with {worker.process.returncode}: {log_tail(worker)}")
    if watcher.error is not None:
        raise RuntimeError(f"latency consumer failed: {watcher.error!r}") from watcher.error
    if len(watcher.outputs) != sent:
        raise RuntimeError(f"{setup}: {len(watcher.outputs)} distinct outputs for {sent} messages sent")
    if setup.mode == "exactly-once":
        if watcher.duplicates:
            raise RuntimeError(f"{setup}: {watcher.duplicates} duplicate outputs in an exactly-once run")
        audit_cards(f"latency {tag}", broker.bootstrap, spec.output_topic, expected)

    def cpu_share(i: int) -> float | None:
        before, after = cpu_before[i], cpu_after[i]
        if before is None or after is None:
            return None
        return 100 * (after - before) / (cpu_after[2] - cpu_before[2])

    during = [e for e in read_worker_log(worker.log_path).checkpoints if load_began <= e.at <= load_ended]
    period = None
    if len(during) >= 2:
        period = 1000 * (during[-1].at - during[0].at) / (len(during) - 1)
    latencies = watcher.latencies_ms
    result = LatencyResult(
        setup,
        sent,
        len(latencies),
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        max(latencies),
        cpu_share(0),
        cpu_share(1),
        period,
        PauseStats.of(during),
        load,
        during,
    )
    pause = "-" if result.pauses is None else f"{result.pauses.p99:.0f}"
    print(
        f"    {setup.mode}, checkpoint every {setup.interval_ms} ms, polling {setup.polling}: p50 "
        f"{result.p50_ms:,.0f} ms, p99 {result.p99_ms:,.0f} ms (checkpoint pause p99 {pause} ms; load {load})"
    )
    return result


#: ``--parts latency-matrix``: the earlier comparison of intervals, guarantees and polling.
LATENCY_MATRIX = (
    LatencySetup("exactly-once", 500),
    LatencySetup("exactly-once", 100),
    LatencySetup("at-least-once", 500),
    LatencySetup("exactly-once", 100, poll_timeout_s=0.01, fetch_wait_max_ms=10),
    LatencySetup("at-least-once", 500, poll_timeout_s=0.01, fetch_wait_max_ms=10),
)


def bench_latency(
    broker: Broker, topics: Topics, args: argparse.Namespace, tmp: Path, setups: tuple[LatencySetup, ...]
) -> list[LatencyResult]:
    print(
        f"\n[3] end-to-end latency: {args.rate:,} msg/s for {args.latency_seconds:g} s, job in one worker "
        f"process (eventapp run), read_committed consumer"
    )
    return [latency_run(broker, topics, args, tmp, setup) for setup in setups]
