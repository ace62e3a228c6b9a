"""eventapp on Kafka: throughput against the raw libraries, checkpoint pause, restore time, latency.

    .venv/bin/python -m benchmarks.bench_kafka [--records 200000] [--keys 10000] [--partitions 4]
    .venv/bin/python -m benchmarks.bench_kafka --quick          # a smaller run (~40 s), not for figures
    .venv/bin/python -m benchmarks.bench_kafka --profile        # cProfile of the eventapp job only
    .venv/bin/python -m benchmarks.bench_kafka --parts latency  # some parts only

Everything runs against one broker: the embedded Tansu broker (in memory, started here) or
``$EVENTAPP_BENCH_BOOTSTRAP_SERVERS``. Parts 1-3 run in this process; part 4 runs the job as a
worker process. It prints progress, then a summary table (see ``docs/benchmarks.md``):

1. **Throughput** of a keyed running count (JSON ``{"k", "v"}`` in, ValueState count += 1,
   ``{"k", "n"}`` out) as an eventapp job (KafkaSource -> key_by -> process -> KafkaSink, exactly-once,
   RocksDB, checkpoint every second) next to a raw loop doing the same work with confluent-kafka,
   orjson and rocksdict, committing a Kafka transaction with the consumed offsets at the same
   interval. Each side runs ``--repeat`` times (best kept); every output is audited (committed
   records only: each key's counts 1..n exactly once) before a figure is printed.
2. **Checkpoint pause** of a job whose RocksDB state holds ``--fill-keys`` (1 M) keys: the first
   checkpoint after loading them (a full snapshot) and later checkpoints after ``--updates`` (10 k)
   updates (incremental: unchanged SST files are hard links shared with the previous snapshot),
   split into state snapshot and Kafka commit.
3. **Restore time** of those keys: a new runner (same job, same checkpoint directory, empty state
   directory) from ``open()`` until it is ready to process.
4. **End-to-end latency** (p50/p99) of the job running as a worker process (``eventapp run``) while
   a producer writes ``--rate`` records/s carrying their send time and a ``read_committed``
   consumer of the output measures receive time - send time: exactly-once at two checkpoint
   intervals and at-least-once, with eventapp's default polling and with fast polling.

A benchmark, not a test: it asserts nothing about speed. It does fail if an output is not exactly
what the input implies (so that no figure comes from a broken run).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import rocksdict
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from eventapp import (
    CheckpointConfig,
    CheckpointingMode,
    Collector,
    Context,
    DataStream,
    Job,
    JobConfig,
    KeyedProcessFunction,
    LocalRunner,
    RuntimeContext,
    ValueStateDescriptor,
    configure_logging,
)
from eventapp.checkpoint.commit import CommitPoint
from eventapp.checkpoint.storage import LocalCheckpointStorage
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
)
from eventapp.connectors.kafka.quirks import QUIRKS_ENVIRONMENT_VARIABLE
from eventapp.connectors.kafka.txnlog import audit_topic
from eventapp.embedded_broker import EmbeddedBroker
from eventapp.state.store import KeyedStateStore
from eventapp.statebackends import RocksDBStateBackend

BOOTSTRAP_ENV = "EVENTAPP_BENCH_BOOTSTRAP_SERVERS"
TOPIC_CONFIGS = {"retention.ms": "-1", "cleanup.policy": "delete"}
UID = "count"
MiB = 1 << 20


# -- the job ------------------------------------------------------------------------------------------


class RunningCount(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    """Counts records per key and emits ``{"k": key, "n": count}``.

    Records with ``"q"`` (fill records of the checkpoint benchmark) only update the count; ``"t"``
    (a send time, latency benchmark) is copied to the output.
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


class TimedRocksDBStateBackend(RocksDBStateBackend):
    """RocksDB, recording how long each restore and each state snapshot takes (nothing else changes:
    the stores' get/put path is untouched)."""

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
    """A KafkaSource that keeps the commit points it creates, to read their ``timings``."""

    def __init__(self, config: KafkaSourceConfig) -> None:
        super().__init__(config)
        self.commit_points: list[CommitPoint] = []

    def create_commit_point(self, job: str, split: str, exactly_once: bool) -> CommitPoint:
        point = super().create_commit_point(job, split, exactly_once)
        self.commit_points.append(point)
        return point

    def timing(self, name: str) -> float:
        """Sum over splits of the last recorded ``name`` timing (ms) of each commit point."""
        return sum(float(getattr(p, "timings", {}).get(name, 0.0)) for p in self.commit_points)


@dataclass
class CheckpointSample:
    """One ``runner.checkpoint()``: its pause and where the time went (ms, summed over splits)."""

    pause_ms: float
    snapshot_ms: float
    commit_ms: float
    marker_flush_ms: float
    send_offsets_ms: float
    commit_transaction_ms: float

    @property
    def other_ms(self) -> float:
        """Sink flush, snapshot metadata and fsync, pruning of old snapshots."""
        return self.pause_ms - self.snapshot_ms - self.commit_ms


class TimedRunner(LocalRunner):
    """A LocalRunner that times every checkpoint (periodic ones taken by ``step()`` included)."""

    def __init__(self, job: Job, backend: TimedRocksDBStateBackend, source: RecordingKafkaSource) -> None:
        super().__init__(job)
        self.backend = backend
        self.source = source
        self.samples: list[CheckpointSample] = []

    def checkpoint(self) -> None:
        snapshots_before = len(self.backend.snapshot_ms)
        began = time.perf_counter()
        super().checkpoint()
        pause = (time.perf_counter() - began) * 1000
        self.samples.append(
            CheckpointSample(
                pause_ms=pause,
                snapshot_ms=sum(self.backend.snapshot_ms[snapshots_before:]),
                commit_ms=self.source.timing("commit_ms"),
                marker_flush_ms=self.source.timing("flush_ms"),
                send_offsets_ms=self.source.timing("send_offsets_ms"),
                commit_transaction_ms=self.source.timing("commit_transaction_ms"),
            )
        )


@dataclass
class JobSpec:
    """What :func:`build_job` needs."""

    name: str
    bootstrap: str
    input_topic: str
    output_topic: str
    state_dir: Path
    checkpoint_dir: Path
    interval_ms: int
    bounded: bool
    exactly_once: bool = True
    transaction_timeout_ms: int = 60_000
    #: ``JobConfig.poll_timeout_s`` (how long a poll waits to fill a batch) and the source consumer's
    #: ``fetch.wait.max.ms``; ``None``: eventapp's defaults (0.1 s, 100 ms).
    poll_timeout_s: float | None = None
    fetch_wait_max_ms: int | None = None


def build_job(spec: JobSpec) -> tuple[Job, TimedRocksDBStateBackend, RecordingKafkaSource]:
    """KafkaSource -> key_by(k) -> RunningCount -> KafkaSink, RocksDB state, checkpoints."""
    source = RecordingKafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=spec.bootstrap,
            topics=[spec.input_topic],
            group_id=f"{spec.name}-group",
            value_deserializer="json",
            bounded=spec.bounded,
            transaction_timeout_ms=spec.transaction_timeout_ms,
            consumer_config={}
            if spec.fetch_wait_max_ms is None
            else {"fetch.wait.max.ms": spec.fetch_wait_max_ms},
        )
    )
    guarantee = DeliveryGuarantee.EXACTLY_ONCE if spec.exactly_once else DeliveryGuarantee.AT_LEAST_ONCE
    sink: KafkaSink[dict[str, Any]] = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=spec.bootstrap,
            topic=spec.output_topic,
            key_selector=key_of,
            delivery_guarantee=guarantee,
        )
    )
    backend = TimedRocksDBStateBackend(spec.state_dir)
    mode = CheckpointingMode.EXACTLY_ONCE if spec.exactly_once else CheckpointingMode.AT_LEAST_ONCE
    config = JobConfig(
        state_backend=backend,
        checkpoint=CheckpointConfig(storage=spec.checkpoint_dir, interval_ms=spec.interval_ms, mode=mode),
    )
    if spec.poll_timeout_s is not None:
        config = dataclasses.replace(config, poll_timeout_s=spec.poll_timeout_s)
    job = Job(spec.name, config)
    stream: DataStream[dict[str, Any]] = job.from_source(source)
    stream.key_by(key_of).process(RunningCount(), uid=UID).sink_to(sink)
    return job, backend, source


def key_of(value: dict[str, Any]) -> str:
    """The key of input and output records."""
    key: str = value["k"]
    return key


def build_latency_job() -> Job:
    """The latency benchmark's worker (``eventapp run benchmarks.bench_kafka:build_latency_job``),
    configured by ``BENCH_*`` environment variables set by :func:`latency_run`."""
    env = os.environ
    job, _, _ = build_job(
        JobSpec(
            name=env["BENCH_JOB"],
            bootstrap=env["BENCH_BOOTSTRAP"],
            input_topic=env["BENCH_INPUT"],
            output_topic=env["BENCH_OUTPUT"],
            state_dir=Path(env["BENCH_STATE_DIR"]),
            checkpoint_dir=Path(env["BENCH_CHECKPOINT_DIR"]),
            interval_ms=int(env["BENCH_INTERVAL_MS"]),
            bounded=False,
            exactly_once=env["BENCH_MODE"] == "exactly-once",
            poll_timeout_s=float(env["BENCH_POLL_TIMEOUT_S"]) if env.get("BENCH_POLL_TIMEOUT_S") else None,
            fetch_wait_max_ms=int(env["BENCH_FETCH_WAIT_MS"]) if env.get("BENCH_FETCH_WAIT_MS") else None,
        )
    )
    return job


# -- broker helpers ----------------------------------------------------------------------------------


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
    """Produce ``(key, value)`` records (idempotent, acks=all) and wait for every acknowledgement."""
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
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise RuntimeError(f"producing to {topic}: {remaining} unacknowledged, failures {failures[:3]}")
    return count


def audit_outputs(what: str, bootstrap: str, topic: str, expected: dict[str, int], first: int = 1) -> int:
    """Check ``topic``'s committed records (read with :func:`audit_topic`: transaction markers
    honoured, so aborted and open transactions are left out): each key ``k`` of ``expected`` must have
    exactly the outputs ``n = first .. expected[k]``, each once, and no other key any output.
    Returns the number of committed records."""
    result = audit_topic(bootstrap, topic, verify_crc=False, timeout=300)
    if result.aborted_count or result.pending_count:
        raise RuntimeError(f"{what}: {result.aborted_count} aborted, {result.pending_count} pending records")
    counts: dict[str, list[int]] = {}
    committed = 0
    for value in result.committed_values():
        assert value is not None
        record = orjson.loads(value)
        counts.setdefault(record["k"], []).append(record["n"])
        committed += 1
    wrong = [
        (key, sorted(counts.get(key, [])))
        for key in expected.keys() | counts.keys()
        if sorted(counts.get(key, [])) != list(range(first, expected.get(key, first - 1) + 1))
    ]
    if wrong:
        raise RuntimeError(f"{what}: wrong outputs for {len(wrong)} keys, e.g. {wrong[:3]}")
    return committed


# -- 1. throughput ------------------------------------------------------------------------------------


@dataclass
class ThroughputResult:
    """One side of the throughput comparison.

    The rate is measured after the first batch of records was processed (``measured`` records in
    ``run_s``, to the end of the input and the final commit), so that start-up (the producers'
    ``init_transactions``, the consumer's first fetch) does not count: ``startup_s`` shows it.
    """

    what: str
    records: int
    measured: int
    startup_s: float
    run_s: float
    commits: int
    outputs: int = 0
    checkpoint_s: float = 0.0
    snapshot_s: float = 0.0
    commit_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.measured / self.run_s


def input_records(n: int, keys: int) -> Iterator[tuple[str, bytes]]:
    """``n`` JSON records ``{"k": "key-<i % keys>", "v": i}``, keyed by ``k``."""
    for i in range(n):
        key = f"key-{i % keys}"
        yield key, orjson.dumps({"k": key, "v": i})


def run_eventapp(
    spec: JobSpec, records: int, profiler: cProfile.Profile | None = None
) -> tuple[ThroughputResult, TimedRunner]:
    """Run the bounded job to its end (final checkpoint included); ``profiler`` profiles the measured
    part (after the first batch)."""
    job, backend, source = build_job(spec)
    runner = TimedRunner(job, backend, source)
    began = time.perf_counter()
    runner.open()
    try:
        while runner.result().records_read == 0 and not runner.finished:
            runner.step()
        first_batch = runner.result().records_read
        if profiler is not None:
            profiler.enable()
        started = time.perf_counter()
        while not runner.finished:
            runner.step()
        ended = time.perf_counter()
        if profiler is not None:
            profiler.disable()
    finally:
        runner.close()
    read = runner.result().records_read
    if read != records:
        raise RuntimeError(f"eventapp job read {read} records, expected {records}")
    samples = runner.samples
    result = ThroughputResult(
        "eventapp job",
        records,
        records - first_batch,
        started - began,
        ended - started,
        len(samples),
        checkpoint_s=sum(s.pause_ms for s in samples) / 1000,
        snapshot_s=sum(s.snapshot_ms for s in samples) / 1000,
        commit_s=sum(s.commit_ms for s in samples) / 1000,
    )
    return result, runner


def run_raw(
    bootstrap: str, input_topic: str, output_topic: str, partitions: int, db_dir: Path, interval_ms: int
) -> ThroughputResult:
    """The same work with the raw libraries: one consumer (all partitions), orjson, rocksdict, one
    transactional producer committing outputs + consumed offsets every ``interval_ms``."""
    began = time.perf_counter()
    group = f"raw-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.queue.backoff.ms": 10,
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.assign([TopicPartition(input_topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"{group}-txn", "linger.ms": 5, "acks": "all"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    db = rocksdict.Rdict(str(db_dir), options)
    write_options = rocksdict.WriteOptions()
    write_options.disable_wal = True  # type: ignore[assignment,method-assign] # a setter, not a method
    db.set_write_options(write_options)
    group_metadata = consumer.consumer_group_metadata()
    positions: dict[int, int] = {}
    at_end: set[int] = set()
    commits = 0

    def commit() -> None:
        nonlocal commits
        offsets = [TopicPartition(input_topic, p, o) for p, o in positions.items()]
        producer.send_offsets_to_transaction(offsets, group_metadata, 30)
        producer.commit_transaction(30)
        producer.begin_transaction()
        commits += 1

    loads, dumps, get, produce_ = orjson.loads, orjson.dumps, db.get, producer.produce
    read = first_batch = 0
    started = last_commit = time.perf_counter()
    try:
        while True:
            messages = consumer.consume(1_000, 0.1)
            for message in messages:
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                partition, payload, offset = message.partition(), message.value(), message.offset()
                assert partition is not None and offset is not None
                if error is not None:
                    at_end.add(partition)
                    continue
                assert payload is not None
                value = loads(payload)
                key = value["k"]
                key_bytes = key.encode()
                stored = get(key_bytes)
                n = 1 if stored is None else int.from_bytes(stored, "little") + 1
                db[key_bytes] = n.to_bytes(8, "little")
                payload = dumps({"k": key, "n": n})
                while True:
                    try:
                        produce_(output_topic, payload, key=key)
                        break
                    except BufferError:
                        producer.poll(0.01)
                positions[partition] = offset + 1
                read += 1
            if not first_batch and read:
                first_batch, started = read, time.perf_counter()
            producer.poll(0)
            now = time.perf_counter()
            if now - last_commit >= interval_ms / 1000:
                commit()
                last_commit = now
            if not messages and len(at_end) == partitions:
                break
        commit()
        ended = time.perf_counter()
    finally:
        consumer.close()
        producer.flush(10)
        db.close()
    return ThroughputResult("raw loop", read, read - first_batch, started - began, ended - started, commits)


def bench_throughput(
    bootstrap: str, topics: Topics, args: argparse.Namespace, tmp: Path
) -> tuple[ThroughputResult, ThroughputResult]:
    """Part 1: the eventapp job and the raw loop over the same input, ``--repeat`` times each
    (alternating), every output audited; the best run of each side is returned."""
    n, keys, partitions = args.records, args.keys, args.partitions
    print(f"\n[1] throughput: keyed running count, {n:,} records over {keys:,} keys, {partitions} partitions")
    input_topic = topics.create("in", partitions)
    began = time.perf_counter()
    produce(bootstrap, input_topic, input_records(n, keys))
    print(f"    input produced in {time.perf_counter() - began:.1f} s")
    expected = {f"key-{k}": n // keys + (1 if k < n % keys else 0) for k in range(min(n, keys))}
    best: dict[str, ThroughputResult] = {}
    for attempt in range(1, args.repeat + 1):
        out = topics.create(f"out-eventapp-{attempt}", partitions)
        spec = JobSpec(
            name=f"bench-eos-{attempt}-{topics.run_id}",
            bootstrap=bootstrap,
            input_topic=input_topic,
            output_topic=out,
            state_dir=tmp / f"tp-state-{attempt}",
            checkpoint_dir=tmp / f"tp-checkpoints-{attempt}",
            interval_ms=args.interval_ms,
            bounded=True,
        )
        eventapp, _ = run_eventapp(spec, n)
        eventapp.outputs = audit_outputs("eventapp job", bootstrap, out, expected)
        out = topics.create(f"out-raw-{attempt}", partitions)
        raw = run_raw(bootstrap, input_topic, out, partitions, tmp / f"raw-db-{attempt}", args.interval_ms)
        raw.outputs = audit_outputs("raw loop", bootstrap, out, expected)
        print(
            f"    run {attempt}: eventapp job {eventapp.rate:,.0f} records/s, raw loop {raw.rate:,.0f} "
            f"records/s (outputs of both audited: {n:,} each, exactly once)"
        )
        for result in (eventapp, raw):
            if result.what not in best or result.rate > best[result.what].rate:
                best[result.what] = result
    return best["eventapp job"], best["raw loop"]


def profile_eventapp(bootstrap: str, topics: Topics, args: argparse.Namespace, tmp: Path) -> None:
    """``--profile``: the throughput job under cProfile; prints the top functions by own time."""
    n, keys, partitions = args.records, args.keys, args.partitions
    input_topic = topics.create("profile-in", partitions)
    produce(bootstrap, input_topic, input_records(n, keys))
    spec = JobSpec(
        name=f"bench-profile-{topics.run_id}",
        bootstrap=bootstrap,
        input_topic=input_topic,
        output_topic=topics.create("profile-out", partitions),
        state_dir=tmp / "profile-state",
        checkpoint_dir=tmp / "profile-checkpoints",
        interval_ms=args.interval_ms,
        bounded=True,
    )
    profiler = cProfile.Profile()
    result, _ = run_eventapp(spec, n, profiler)
    print(
        f"\nprofile of the eventapp job after its first batch: {result.measured:,} records "
        f"({result.rate:,.0f} records/s under cProfile)"
    )
    stats = pstats.Stats(profiler)
    own: dict[str, float] = {}
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = function if filename == "~" else "/".join(Path(filename).parts[-2:])
        own[where] = own.get(where, 0.0) + tottime
    total = sum(own.values())
    print(f"\nown time by module (C functions by name), of {total:.2f} s:")
    for where, seconds in sorted(own.items(), key=lambda item: -item[1])[: args.profile_top]:
        print(f"  {seconds:6.2f} s {100 * seconds / total:5.1f} %  {where}")
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(args.profile_top)
        print(text.getvalue())


# -- 2 and 3. checkpoint pause and restore with many keys ---------------------------------------------


@dataclass
class SnapshotFiles:
    """Files of the newest snapshots (all splits) compared with each split's previous snapshot.

    Counts are of SST files (the data); bytes are of all files (RocksDB copies the small MANIFEST,
    OPTIONS and CURRENT files into every checkpoint: they are always new).
    """

    new_sst: int = 0
    shared_sst: int = 0
    new_bytes: int = 0
    shared_bytes: int = 0


@dataclass
class CheckpointRow:
    """A measured checkpoint of part 2."""

    label: str
    sample: CheckpointSample
    files: SnapshotFiles


@dataclass
class RestoreResult:
    """Part 3."""

    open_ms: float
    state_restore_ms: float
    recover_ms: float
    init_transactions_ms: float
    read_committed_ms: float
    keys: int
    snapshot_bytes: int


@dataclass
class ManyKeysResult:
    """Parts 2 and 3."""

    keys: int
    partitions: int
    fill_s: float
    rows: list[CheckpointRow] = field(default_factory=list)
    restore: RestoreResult | None = None


def snapshot_files(storage: LocalCheckpointStorage, job: str, splits: Sequence[str]) -> SnapshotFiles:
    """New vs shared files of each split's newest snapshot. RocksDB checkpoints hard-link SST files,
    so a file is shared with the previous snapshot when it is the same inode (``st_nlink > 1`` alone
    is true of every SST: it is also linked from the working database)."""
    total = SnapshotFiles()
    for split in splits:
        names = [info.name for info in storage.list_snapshots(job, split)]
        dirs = [storage.split_dir(job, split) / name / "state" / "db" for name in names[-2:]]
        previous = {os.stat(p).st_ino for p in dirs[0].iterdir()} if len(dirs) == 2 else set()
        for path in dirs[-1].iterdir():
            info = os.stat(path)
            sst = path.suffix == ".sst"
            if info.st_ino in previous:
                total.shared_sst += sst
                total.shared_bytes += info.st_size
            else:
                total.new_sst += sst
                total.new_bytes += info.st_size
    return total


def step_until(runner: LocalRunner, records: int, timeout_s: float = 600) -> None:
    """Step ``runner`` until it has read ``records`` records in total."""
    deadline = time.monotonic() + timeout_s
    while runner.result().records_read < records:
        runner.step()
        if time.monotonic() > deadline:
            raise TimeoutError(f"read {runner.result().records_read} of {records} records")


def count_state_entries(runner: LocalRunner) -> int:
    """Keyed state entries in every split's store (scanned: outside any timed section)."""
    return sum(sum(1 for _ in runner.store(split).scan(b"s")) for split in runner.splits)


def bench_many_keys(bootstrap: str, topics: Topics, args: argparse.Namespace, tmp: Path) -> ManyKeysResult:
    """Parts 2 and 3: fill RocksDB with ``--fill-keys`` keys through the job, time checkpoints, restore."""
    keys, partitions, updates = args.fill_keys, args.partitions, args.updates
    print(f"\n[2] checkpoint pause with {keys:,} keys in RocksDB ({partitions} splits), exactly-once")
    topic = topics.create("many-keys", partitions)
    began = time.perf_counter()
    produce(bootstrap, topic, ((f"u{i:07d}", orjson.dumps({"k": f"u{i:07d}", "q": 1})) for i in range(keys)))
    print(
        f"    {keys:,} fill records (one per key, no output) produced in {time.perf_counter() - began:.1f} s"
    )
    spec = JobSpec(
        name=f"bench-keys-{topics.run_id}",
        bootstrap=bootstrap,
        input_topic=topic,
        output_topic=topics.create("many-keys-out", partitions),
        state_dir=tmp / "keys-state",
        checkpoint_dir=tmp / "keys-checkpoints",
        # No periodic checkpoint during the fill: the first checkpoint is a full one. Checkpoints are
        # taken by runner.checkpoint() below (transactions must outlive 3 intervals).
        interval_ms=300_000,
        bounded=False,
        transaction_timeout_ms=900_000,
    )
    storage = LocalCheckpointStorage(spec.checkpoint_dir)
    updated: dict[str, int] = {}  # key -> its count after the updates
    job, backend, source = build_job(spec)
    runner = TimedRunner(job, backend, source)
    runner.open()
    began = time.perf_counter()
    step_until(runner, keys)
    fill_s = time.perf_counter() - began
    print(f"    filled through the job in {fill_s:.1f} s ({keys / fill_s:,.0f} records/s)")
    result = ManyKeysResult(keys, partitions, fill_s)
    try:
        runner.checkpoint()
        first = CheckpointRow(
            "first, after the load", runner.samples[-1], snapshot_files(storage, job.name, runner.splits)
        )
        result.rows.append(first)
        print(f"    first checkpoint: {first.sample.pause_ms:,.0f} ms")
        read = keys
        for round_ in range(args.update_rounds):
            update_keys = [f"u{(i * 97 + round_) % keys:07d}" for i in range(min(updates, keys))]
            for key in update_keys:
                updated[key] = updated.get(key, 1) + 1
            produce(bootstrap, topic, ((k, orjson.dumps({"k": k, "v": round_})) for k in update_keys))
            read += len(update_keys)
            step_until(runner, read)
            runner.checkpoint()
            row = CheckpointRow(
                f"after {len(update_keys):,} updates #{round_ + 1}",
                runner.samples[-1],
                snapshot_files(storage, job.name, runner.splits),
            )
            result.rows.append(row)
            print(f"    checkpoint {row.label}: {row.sample.pause_ms:,.0f} ms")
    finally:
        runner.close()
    # Fill records emit nothing; each update emits the key's new count (2, 3, ...).
    outputs = audit_outputs("checkpoint job", bootstrap, spec.output_topic, updated, first=2)
    print(f"    outputs of the updates audited ({outputs:,}, exactly once)")
    result.restore = bench_restore(spec, storage, tmp, keys)
    return result


def bench_restore(spec: JobSpec, storage: LocalCheckpointStorage, tmp: Path, keys: int) -> RestoreResult:
    """Part 3: a new runner of the same job (same checkpoint directory, new state directory)."""
    print(f"\n[3] restore of {keys:,} keys: new runner, same checkpoints, empty state directory")
    restored_spec = dataclasses.replace(spec, state_dir=tmp / "keys-state-restored")
    job, backend, source = build_job(restored_spec)
    runner = TimedRunner(job, backend, source)
    began = time.perf_counter()
    runner.open()
    open_ms = (time.perf_counter() - began) * 1000
    try:
        entries = count_state_entries(runner)
        if entries != keys:
            raise RuntimeError(f"restored {entries} state entries, expected {keys}")
    finally:
        runner.close()
    snapshot_bytes = 0
    for split in runner.splits:
        newest = storage.list_snapshots(job.name, split)[-1].name
        db = storage.split_dir(job.name, split) / newest / "state" / "db"
        snapshot_bytes += sum(p.stat().st_size for p in db.iterdir())
    result = RestoreResult(
        open_ms=open_ms,
        state_restore_ms=sum(backend.restore_ms.values()),
        recover_ms=source.timing("recover_ms"),
        init_transactions_ms=source.timing("init_transactions_ms"),
        read_committed_ms=source.timing("read_committed_ms"),
        keys=entries,
        snapshot_bytes=snapshot_bytes,
    )
    print(f"    open() until ready: {open_ms:,.0f} ms; {entries:,} state entries verified")
    return result


# -- 4. latency ---------------------------------------------------------------------------------------


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
    """One latency run."""

    setup: LatencySetup
    sent: int
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    worker_cpu: float | None
    broker_cpu: float | None
    #: Mean time between the starts of two checkpoints, and mean checkpoint pause, in the worker.
    checkpoint_period_ms: float | None
    checkpoint_pause_ms: float | None


def checkpoint_cadence(log_path: Path, begin: float, end: float) -> tuple[float | None, float | None]:
    """Mean period and mean duration (ms) of the worker's checkpoints between ``begin`` and ``end``
    (epoch seconds), from its ``checkpoint.completed`` log events (JSON lines)."""
    starts: list[float] = []
    durations: list[float] = []
    for line in log_path.read_bytes().splitlines():
        if b"checkpoint.completed" not in line:
            continue
        event = orjson.loads(line)
        if event.get("event") != "checkpoint.completed":
            continue
        ended = datetime.fromisoformat(event["timestamp"]).timestamp()
        duration_ms = float(event["duration_ms"])
        started = ended - duration_ms / 1000
        if begin <= started <= end:
            starts.append(started)
            durations.append(duration_ms)
    if len(starts) < 2:
        return None, None
    return 1000 * (starts[-1] - starts[0]) / (len(starts) - 1), statistics.fmean(durations)


class OutputWatcher(threading.Thread):
    """Reads the output topic (read_committed) and records receive time - send time per record."""

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
                    payload = message.value()
                    assert payload is not None
                    value = orjson.loads(payload)
                    if value["k"].startswith("warm"):
                        self.warm.set()
                        continue
                    pair = (value["k"], value["n"])
                    if pair in self.outputs:
                        self.duplicates += 1
                    self.outputs.add(pair)
                    self.latencies_ms.append(now_ms - value["t"])
        except BaseException as exc:  # noqa: BLE001 - reported by the caller, which checks .error
            self.error = exc
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_run(
    broker_: Broker, topics: Topics, args: argparse.Namespace, tmp: Path, setup: LatencySetup
) -> LatencyResult:
    """Start the job as a worker process, wait until its output shows, send ``--rate`` records/s for
    ``--latency-seconds`` and measure each output's latency; then stop the worker (SIGTERM)."""
    bootstrap = broker_.bootstrap
    tag = f"lat-{setup.mode[:3]}-{setup.interval_ms}-{'d' if setup.poll_timeout_s is None else 'f'}"
    partitions = args.partitions
    input_topic = topics.create(f"{tag}-in", partitions)
    output_topic = topics.create(f"{tag}-out", partitions)
    root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "BENCH_JOB": f"bench-{tag}-{topics.run_id}",
        "BENCH_BOOTSTRAP": bootstrap,
        "BENCH_INPUT": input_topic,
        "BENCH_OUTPUT": output_topic,
        "BENCH_STATE_DIR": str(tmp / f"{tag}-state"),
        "BENCH_CHECKPOINT_DIR": str(tmp / f"{tag}-checkpoints"),
        "BENCH_INTERVAL_MS": str(setup.interval_ms),
        "BENCH_MODE": setup.mode,
        "BENCH_POLL_TIMEOUT_S": "" if setup.poll_timeout_s is None else str(setup.poll_timeout_s),
        "BENCH_FETCH_WAIT_MS": "" if setup.fetch_wait_max_ms is None else str(setup.fetch_wait_max_ms),
        "EVENTAPP_LOG_LEVEL": "INFO",  # checkpoint.completed events: the checkpoint cadence
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    log_path = tmp / f"{tag}.log"
    watcher = OutputWatcher(bootstrap, output_topic, partitions)
    watcher.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "eventapp", "run", "benchmarks.bench_kafka:build_latency_job"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # Warm up until the worker's output shows: it has opened and committed a checkpoint.
        deadline = time.monotonic() + 60
        warm = 0
        while not watcher.warm.is_set():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"latency worker not ready (exit code {worker.poll()}): {log_path.read_text()[-2000:]}"
                )
            producer.produce(input_topic, orjson.dumps({"k": f"warm-{warm}", "t": 0}), key=f"warm-{warm}")
            producer.poll(0)
            warm += 1
            time.sleep(0.05)
        cpu_before = (cpu_seconds(worker.pid), cpu_seconds(broker_.pid), time.monotonic())
        load_began = time.time()
        sent = paced_load(producer, input_topic, args.rate, args.latency_seconds, args.keys)
        deadline = time.monotonic() + 10 + 20 * setup.interval_ms / 1000
        while len(watcher.latencies_ms) < sent and time.monotonic() < deadline and watcher.is_alive():
            time.sleep(0.02)
        cpu_after = (cpu_seconds(worker.pid), cpu_seconds(broker_.pid), time.monotonic())
        load_ended = time.time()
    finally:
        producer.flush(10)
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        watcher.stop()
    if worker.returncode != 0:
        raise RuntimeError(f"latency worker exited with {worker.returncode}: {log_path.read_text()[-2000:]}")
    if watcher.error is not None:
        raise RuntimeError(f"latency consumer failed: {watcher.error!r}") from watcher.error
    if len(watcher.outputs) != sent:
        raise RuntimeError(f"{setup}: {len(watcher.outputs)} distinct outputs for {sent} records sent")
    if setup.mode == "exactly-once" and watcher.duplicates:
        raise RuntimeError(f"{setup}: {watcher.duplicates} duplicate outputs in an exactly-once run")

    def cpu_share(i: int) -> float | None:
        before, after = cpu_before[i], cpu_after[i]
        if before is None or after is None:
            return None
        return 100 * (after - before) / (cpu_after[2] - cpu_before[2])

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
        *checkpoint_cadence(log_path, load_began, load_ended),
    )
    print(
        f"    {setup.mode}, checkpoint every {setup.interval_ms} ms, polling {setup.polling}: "
        f"p50 {result.p50_ms:,.0f} ms, p99 {result.p99_ms:,.0f} ms"
    )
    return result


def paced_load(producer: Producer, topic: str, rate: int, seconds: float, keys: int) -> int:
    """Produce ``rate`` records/s for ``seconds``, each carrying its send time (epoch ms) in ``t``."""
    total = int(rate * seconds)
    began = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - began) * rate) + 1)
        while sent < due:
            key = f"key-{sent % keys}"
            payload = orjson.dumps({"k": key, "v": sent, "t": time.time() * 1000})
            while True:
                try:
                    producer.produce(topic, payload, key=key)
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    return sent


LATENCY_SETUPS = (
    LatencySetup("exactly-once", 500),
    LatencySetup("exactly-once", 100),
    LatencySetup("at-least-once", 500),
    # The same with a short poll timeout and broker wait: what the defaults cost in latency.
    LatencySetup("exactly-once", 100, poll_timeout_s=0.01, fetch_wait_max_ms=10),
    LatencySetup("at-least-once", 500, poll_timeout_s=0.01, fetch_wait_max_ms=10),
)


def bench_latency(
    broker_: Broker, topics: Topics, args: argparse.Namespace, tmp: Path
) -> list[LatencyResult]:
    """Part 4: exactly-once at two checkpoint intervals, at-least-once, and both with fast polling."""
    print(
        f"\n[4] end-to-end latency: {args.rate:,} records/s for {args.latency_seconds:g} s, job in a worker "
        f"process (eventapp run), read_committed consumer"
    )
    return [latency_run(broker_, topics, args, tmp, setup) for setup in LATENCY_SETUPS]


# -- report -------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "   ") -> None:
    """Print ``rows`` under ``headers``: first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def render(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return indent + "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    print(render(headers))
    for r in rows:
        print(render(r))


def print_throughput(eventapp: ThroughputResult, raw: ThroughputResult, interval_ms: int) -> None:
    print(
        f"1. throughput: keyed running count, {eventapp.records:,} records, exactly-once, "
        f"commit every {interval_ms} ms"
    )
    rows = [
        [
            label,
            f"{r.rate:,.0f}",
            f"{r.run_s:.2f}",
            f"{r.startup_s:.2f}",
            str(r.commits),
            in_checkpoints,
            f"{r.outputs:,}",
        ]
        for label, r, in_checkpoints in (
            ("eventapp job (RocksDB)", eventapp, f"{eventapp.checkpoint_s:.2f}"),
            ("raw loop (rocksdict)", raw, "-"),
        )
    ]
    table(["", "records/s", "run s", "startup s", "commits", "in checkpoints s", "outputs audited"], rows)
    print("   records/s: after the first batch (startup: open/init_transactions, first fetch, first batch)")
    print(f"   ratio eventapp / raw: {eventapp.rate / raw.rate:.2f}")
    other = eventapp.checkpoint_s - eventapp.snapshot_s - eventapp.commit_s
    print(
        f"   eventapp checkpoint pauses: {eventapp.checkpoint_s:.2f} s = state snapshots "
        f"{eventapp.snapshot_s:.2f} s + Kafka commits {eventapp.commit_s:.2f} s + other {other:.2f} s"
    )


def print_many_keys(many: ManyKeysResult) -> None:
    print(f"2. checkpoint pause: {many.keys:,} keys in RocksDB, {many.partitions} splits (ms, all splits)")
    rows = [
        [
            row.label,
            f"{row.sample.pause_ms:,.0f}",
            f"{row.sample.snapshot_ms:,.0f}",
            f"{row.sample.commit_ms:,.0f}",
            f"{row.sample.other_ms:,.0f}",
            f"{row.files.new_sst}/{row.files.shared_sst}",
            f"{row.files.new_bytes / MiB:.1f}/{row.files.shared_bytes / MiB:.1f}",
        ]
        for row in many.rows
    ]
    table(
        ["checkpoint", "pause", "snapshot", "commit", "other", "SST files new/shared", "MiB new/shared"], rows
    )
    incremental = [r.sample for r in many.rows[1:]] or [r.sample for r in many.rows]
    print(
        "   Kafka commit (median of the incremental ones): marker + flush "
        f"{statistics.median(s.marker_flush_ms for s in incremental):.0f} ms, send_offsets x2 "
        f"{statistics.median(s.send_offsets_ms for s in incremental):.0f} ms, commit_transaction "
        f"{statistics.median(s.commit_transaction_ms for s in incremental):.0f} ms"
    )
    print(
        f"   loading the keys through the job (no output): {many.fill_s:.1f} s, "
        f"{many.keys / many.fill_s:,.0f} records/s"
    )
    restore = many.restore
    if restore is None:
        return
    other = restore.open_ms - restore.state_restore_ms - restore.recover_ms
    print(
        f"\n3. restore: {restore.keys:,} keys ({restore.snapshot_bytes / MiB:.1f} MiB of snapshot files), "
        f"open() until ready: {restore.open_ms:,.0f} ms"
    )
    print(
        f"   = state restore {restore.state_restore_ms:,.0f} ms (verify checksums, hard-link, open) "
        f"+ commit-point recovery {restore.recover_ms:,.0f} ms\n"
        f"     (init_transactions {restore.init_transactions_ms:,.0f} ms, read committed checkpoint "
        f"{restore.read_committed_ms:,.0f} ms) + other {other:,.0f} ms (consumer, operators)"
    )


def print_latency(runs: Sequence[LatencyResult], rate: int) -> None:
    print(f"4. end-to-end latency at {rate:,} records/s: send -> visible to a read_committed consumer (ms)")

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    rows = [
        [
            r.setup.mode,
            str(r.setup.interval_ms),
            r.setup.polling,
            f"{r.received:,}",
            number(r.p50_ms),
            number(r.p99_ms),
            number(r.max_ms),
            number(r.checkpoint_period_ms),
            number(r.checkpoint_pause_ms),
            number(r.worker_cpu),
            number(r.broker_cpu),
        ]
        for r in runs
    ]
    headers = ["mode", "interval", "polling", "records", "p50", "p99", "max"]
    table([*headers, "ckpt every", "ckpt pause", "job CPU%", "broker CPU%"], rows)
    print(
        "   interval: CheckpointConfig.interval_ms; polling: JobConfig.poll_timeout_s / the source's\n"
        "   fetch.wait.max.ms (default 0.1 s / 100 ms); ckpt every / pause: measured mean checkpoint period\n"
        "   and pause in the worker (ms); CPU%: of one core, during the load"
    )


def print_summary(
    header: str,
    args: argparse.Namespace,
    throughput: tuple[ThroughputResult, ThroughputResult] | None,
    many: ManyKeysResult | None,
    latency: list[LatencyResult] | None,
) -> None:
    """The summary table of everything measured."""
    line = "=" * 100
    print(f"\n{line}\n{header}\n{line}")
    sections: list[Callable[[], None]] = []
    if throughput is not None:
        sections.append(lambda: print_throughput(*throughput, args.interval_ms))
    if many is not None:
        sections.append(lambda: print_many_keys(many))
    if latency:
        sections.append(lambda: print_latency(latency, args.rate))
    for i, section in enumerate(sections):
        if i:
            print()
        section()
    print(line)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000, help="throughput input records")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys of the throughput input")
    parser.add_argument("--partitions", type=int, default=4, help="partitions (splits) of every topic")
    parser.add_argument("--fill-keys", type=int, default=1_000_000, help="keys in state for parts 2 and 3")
    parser.add_argument("--updates", type=int, default=10_000, help="updates between incremental checkpoints")
    parser.add_argument("--update-rounds", type=int, default=3, help="incremental checkpoints measured")
    parser.add_argument("--interval-ms", type=int, default=1_000, help="checkpoint interval of part 1")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each side of part 1 (best is kept)")
    parser.add_argument("--rate", type=int, default=2_000, help="records/s of the latency load")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="duration of each latency run")
    parser.add_argument(
        "--parts", default="throughput,checkpoint,latency", help="comma-separated parts to run"
    )
    parser.add_argument("--quick", action="store_true", help="a small run: ~10x less of everything")
    parser.add_argument("--profile", action="store_true", help="only profile the eventapp throughput job")
    parser.add_argument("--profile-top", type=int, default=25, help="functions listed by --profile")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.keys, args.fill_keys = 20_000, 2_000, 100_000
        args.updates, args.rate, args.latency_seconds, args.repeat = 2_000, 1_000, 3.0, 1
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"throughput", "checkpoint", "latency"}
    if unknown:
        parser.error(f"unknown --parts {sorted(unknown)}; use throughput, checkpoint, latency")
    configure_logging(level="WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="eventapp-bench-kafka-"))
    began = time.perf_counter()
    try:
        with broker() as broker_:
            bootstrap = broker_.bootstrap
            topics = Topics(bootstrap)
            header = (
                f"eventapp Kafka benchmark: {broker_.description}, {args.partitions} partitions, Python "
                f"{platform.python_version()}, {os.cpu_count()} CPUs"
            )
            print(header)
            if args.profile:
                profile_eventapp(bootstrap, topics, args, tmp)
                return
            throughput = bench_throughput(bootstrap, topics, args, tmp) if "throughput" in parts else None
            many = bench_many_keys(bootstrap, topics, args, tmp) if "checkpoint" in parts else None
            latency = bench_latency(broker_, topics, args, tmp) if "latency" in parts else None
            print_summary(f"{header}; {time.perf_counter() - began:.0f} s", args, throughput, many, latency)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
