"""Restart time of an exactly-once Kafka job against the length of its checkpoint topic.

    .venv/bin/python -m benchmarks.bench_restart            # 0, 10k, 100k, 200k markers (~5 min)
    .venv/bin/python -m benchmarks.bench_restart --quick    # 0 and 10k markers only, a smoke run
    .venv/bin/python -m benchmarks.bench_restart --sizes 0,50000 --repeat 5

Runs against the embedded Tansu broker (started here; it sets ``EVENTAPP_KAFKA_BROKER_QUIRKS=tansu``,
which makes recovery scan the tail of the checkpoint topic for each split's last committed marker) or
``$EVENTAPP_BENCH_BOOTSTRAP_SERVERS``.

The job is the keyed running count of ``bench_kafka`` (KafkaSource -> key_by -> KeyedProcessFunction
counting in RocksDB -> KafkaSink, exactly-once) over an input topic of 8 partitions (8 splits,
8,000 records), run in this process until a few checkpoints committed, then closed. Its checkpoint
topic (``KafkaSourceConfig.checkpoint_topic``, one per measurement) holds N *foreign* checkpoint
markers (another consumer group's: they never match the job's splits), written in committed Kafka
transactions of 1,000 markers each, in one of two layouts:

* **before**: the N markers are written before the job first runs, so the job's own markers lie at the
  tail of the topic, as in a running job's own topic with a long history (or another job sharing it);
* **after**: the job runs first, then the N markers are appended after its last marker (a shared
  topic whose other jobs kept writing while this one was down): the recovery scan has to widen its
  window (x8 from 4,096 offsets) until it reaches the job's markers.

The restart is a new runner of the same job (same checkpoint directory, new RocksDB state directory)
timed from ``open()`` until it returns, ready to process: for each of the 8 splits, in parallel, the
commit point writes an ownership claim, fences the previous producer (``init_transactions``) and reads
the committed checkpoint (the scan), then the snapshot is restored. The process-wide caches of the Kafka
connector (checkpoint topic known, consumer-group metadata, ownership claims and their producer) are
cleared before each restart, so that it costs what a restart in a new process costs. Each restart is
checked (every split resumes at the checkpoint id it had committed, all keys are in state) before its
figures are kept; a restart that fails (e.g. a scan exceeding ``operation_timeout_s``) is reported in
the table. For reference it also times one ``scan_committed_markers`` call for all 8 splits at once
(recovery coalesces the splits' concurrent scans, so it reads the tail once or a few times), and the old
recovery read: the whole checkpoint topic read from offset 0 with ``txnlog.audit_topic``.

A benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from benchmarks.bench_kafka import (
    UID,
    Broker,
    RecordingKafkaSource,
    RunningCount,
    TimedRocksDBStateBackend,
    Topics,
    broker,
    count_state_entries,
    key_of,
    produce,
    table,
)
from eventapp import (
    CheckpointConfig,
    CheckpointingMode,
    DataStream,
    Job,
    JobConfig,
    LocalRunner,
    configure_logging,
)
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSourceConfig,
)
from eventapp.connectors.kafka import commit as kafka_commit
from eventapp.connectors.kafka import offsets as kafka_offsets
from eventapp.connectors.kafka import ownership as kafka_ownership
from eventapp.connectors.kafka.metadata import CheckpointMarker
from eventapp.connectors.kafka.offsets import SCAN_FIRST_WINDOW, SCAN_WINDOW_GROWTH, scan_committed_markers
from eventapp.connectors.kafka.txnlog import audit_topic, high_watermark
from eventapp.errors import EventAppError

SIZES = (0, 10_000, 100_000, 200_000)
QUICK_SIZES = (0, 10_000)
PARTITIONS = 8
RECORDS = 8_000
KEYS = 800
INTERVAL_MS = 200
#: Checkpoints the job commits (periodic ones while it reads its input, then one more) before it stops.
MIN_CHECKPOINTS = 3
MARKERS_PER_TRANSACTION = 1_000
LAYOUTS = ("before", "after")


# -- the job ------------------------------------------------------------------------------------------


@dataclass
class RestartSpec:
    """One job of the benchmark: its topics and directories."""

    name: str
    bootstrap: str
    input_topic: str
    output_topic: str
    checkpoint_topic: str
    state_dir: Path
    checkpoint_dir: Path
    operation_timeout_s: float = 30.0


def build_job(spec: RestartSpec) -> tuple[Job, TimedRocksDBStateBackend, RecordingKafkaSource]:
    """``bench_kafka``'s running count with an explicit checkpoint topic: KafkaSource -> key_by(k) ->
    RunningCount (RocksDB) -> KafkaSink, exactly-once, a checkpoint every :data:`INTERVAL_MS`."""
    source = RecordingKafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=spec.bootstrap,
            topics=[spec.input_topic],
            group_id=f"{spec.name}-group",
            value_deserializer="json",
            checkpoint_topic=spec.checkpoint_topic,
            operation_timeout_s=spec.operation_timeout_s,
        )
    )
    sink: KafkaSink[dict[str, Any]] = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=spec.bootstrap,
            topic=spec.output_topic,
            key_selector=key_of,
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
        )
    )
    backend = TimedRocksDBStateBackend(spec.state_dir)
    config = JobConfig(
        state_backend=backend,
        checkpoint=CheckpointConfig(
            storage=spec.checkpoint_dir, interval_ms=INTERVAL_MS, mode=CheckpointingMode.EXACTLY_ONCE
        ),
    )
    job = Job(spec.name, config)
    stream: DataStream[dict[str, Any]] = job.from_source(source)
    stream.key_by(key_of, partitioned_by_source=True).process(RunningCount(), uid=UID).sink_to(sink)
    return job, backend, source


def run_job(spec: RestartSpec, timeout_s: float = 300) -> dict[str, int]:
    """Run the job until it has read the whole input and committed :data:`MIN_CHECKPOINTS`
    checkpoints (one more at the end), then close it; returns each split's committed checkpoint id."""
    job, _, _ = build_job(spec)
    runner = LocalRunner(job)
    runner.open()
    try:
        deadline = time.monotonic() + timeout_s
        while runner.result().records_read < RECORDS or runner.result().checkpoints < MIN_CHECKPOINTS:
            runner.step()
            if time.monotonic() > deadline:
                result = runner.result()
                raise TimeoutError(
                    f"{spec.name}: read {result.records_read}/{RECORDS} records, "
                    f"{result.checkpoints} checkpoints in {timeout_s} s"
                )
        runner.checkpoint()
        return {split: runner.committed_checkpoint_id(split) for split in runner.splits}
    finally:
        runner.close()


def forget_process_caches() -> None:
    """Clear the Kafka connector's per-process caches, so that a restart in this process costs what
    one in a new process does: the checkpoint topic's existence (a metadata request), consumer-group
    metadata (a consumer per group), this process's last ownership claims (with them, a recovery reads
    every claim written since, up to 65,536 offsets of the checkpoint topic) and the claim producer
    (a new process creates one: a connection and a producer id)."""
    caches: list[Any] = [
        getattr(kafka_offsets, "_known_topics", None),
        getattr(kafka_commit, "_group_metadata_cache", None),
        getattr(kafka_ownership, "_last_claims", None),
        getattr(kafka_ownership, "_producers", None),
    ]
    for cache in caches:
        if cache is not None:
            cache.clear()


# -- filling the checkpoint topic ---------------------------------------------------------------------


def foreign_markers(count: int, group: str) -> Iterator[CheckpointMarker]:
    """Markers of another job (group ``group``, 8 splits), as it would commit them checkpoint after
    checkpoint: realistic content and size (~250 bytes), a key that never matches our job's splits."""
    now_ms = int(time.time() * 1000)
    job = group.removesuffix("-group")
    for i in range(count):
        partition = i % PARTITIONS
        checkpoint_id = i // PARTITIONS + 1
        split = f"{job}-input-{partition}"
        yield CheckpointMarker(
            group_id=group,
            split=split,
            checkpoint_id=checkpoint_id,
            snapshot=f"chk-{checkpoint_id}-1f2e3d4c",
            position=checkpoint_id * 1_000,
            job=job,
            transactional_id=f"{job}-{split}",
            written_at_ms=now_ms + i,
        )


def write_markers(bootstrap: str, topic: str, count: int, group: str) -> float:
    """Write ``count`` foreign markers to partition 0 of ``topic`` in committed transactions of
    :data:`MARKERS_PER_TRANSACTION`; returns the seconds it took."""
    if count == 0:
        return 0.0
    began = time.perf_counter()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"bench-restart-filler-{uuid.uuid4().hex[:8]}",
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 100_000,
        }
    )
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    producer.init_transactions(30)
    in_transaction = 0
    for marker in foreign_markers(count, group):
        if in_transaction == 0:
            producer.begin_transaction()
        while True:
            try:
                producer.produce(
                    topic, marker.to_bytes(), key=marker.key, partition=0, on_delivery=on_delivery
                )
                break
            except BufferError:
                producer.poll(0.01)
        in_transaction += 1
        if in_transaction == MARKERS_PER_TRANSACTION:
            producer.commit_transaction(60)
            in_transaction = 0
    if in_transaction:
        producer.commit_transaction(60)
    if failures:
        raise RuntimeError(f"writing markers to {topic}: {len(failures)} failed, e.g. {failures[0]}")
    return time.perf_counter() - began


# -- measuring a restart ------------------------------------------------------------------------------


@dataclass
class RestartSample:
    """One restart: ``open()`` wall time and the slowest split's recovery steps (ms)."""

    open_s: float
    read_committed_ms: float
    init_transactions_ms: float
    claim_ms: float
    state_restore_ms: float
    #: Offsets from the lowest of the splits' committed markers to the end of the checkpoint topic
    #: (-1 if the restart failed).
    marker_depth: int
    #: Why ``open()`` failed (then ``open_s`` is the time until it raised), or ``None``.
    error: str | None = None


def slowest(points: Sequence[Any], name: str) -> float:
    """The largest ``timings[name]`` (ms) over the commit points (the splits recover in parallel)."""
    return max((float(getattr(p, "timings", {}).get(name, 0.0)) for p in points), default=0.0)


def restart(spec: RestartSpec, attempt: int, expected: dict[str, int]) -> RestartSample:
    """Open a new runner of the job (same checkpoints, new state directory), check it, close it."""
    forget_process_caches()
    restarted = dataclasses.replace(
        spec, state_dir=spec.state_dir.with_name(f"{spec.state_dir.name}-r{attempt}")
    )
    job, backend, source = build_job(restarted)
    runner = LocalRunner(job)
    points = source.commit_points
    began = time.perf_counter()
    try:
        runner.open()
    except EventAppError as exc:
        # Reported, not raised: e.g. a scan that does not finish within operation_timeout_s.
        shutil.rmtree(restarted.state_dir, ignore_errors=True)
        return RestartSample(
            open_s=time.perf_counter() - began,
            read_committed_ms=slowest(points, "read_committed_ms"),
            init_transactions_ms=slowest(points, "init_transactions_ms"),
            claim_ms=slowest(points, "claim_ms"),
            state_restore_ms=max(backend.restore_ms.values(), default=0.0),
            marker_depth=-1,
            error=f"{type(exc).__name__}: {exc}",
        )
    open_s = time.perf_counter() - began
    try:
        resumed = {split: runner.committed_checkpoint_id(split) for split in runner.splits}
        if resumed != expected:
            raise RuntimeError(f"{spec.name}: restart resumed at checkpoints {resumed}, expected {expected}")
        entries = count_state_entries(runner)
        if entries != KEYS:
            raise RuntimeError(f"{spec.name}: restart restored {entries} state entries, expected {KEYS}")
    finally:
        runner.close()
    shutil.rmtree(restarted.state_dir, ignore_errors=True)
    end = high_watermark(spec.bootstrap, spec.checkpoint_topic, 0)
    marker_offsets = [
        getattr(getattr(p, "recovered_state", None), "marker_offset", None) for p in source.commit_points
    ]
    if any(offset is None for offset in marker_offsets):
        raise RuntimeError(f"{spec.name}: a split recovered without a checkpoint marker: {marker_offsets}")
    return RestartSample(
        open_s=open_s,
        read_committed_ms=slowest(points, "read_committed_ms"),
        init_transactions_ms=slowest(points, "init_transactions_ms"),
        claim_ms=slowest(points, "claim_ms"),
        state_restore_ms=max(backend.restore_ms.values(), default=0.0),
        marker_depth=end - min(o for o in marker_offsets if o is not None),
    )


def shared_scan(spec: RestartSpec, expected: dict[str, int]) -> float:
    """One ``scan_committed_markers`` call for all splits of the job (what recovery would cost if a
    worker scanned once for all its splits instead of once per split); returns ms."""
    _, _, source = build_job(spec)
    config = source.commit_config(spec.name)
    began = time.perf_counter()
    found = scan_committed_markers(config, dict.fromkeys(expected), wait_for_pending=False)
    elapsed = (time.perf_counter() - began) * 1000
    got = {split: marker.checkpoint_id for split, (_, marker) in found.items()}
    if got != expected:
        raise RuntimeError(f"{spec.name}: the shared scan found checkpoints {got}, expected {expected}")
    return elapsed


def scan_window(depth: int, end: int) -> tuple[int, int]:
    """The window the recovery scan ends with for a marker ``depth`` offsets below the end, and the
    offsets it reads in all (every window tried, each from its start to the end)."""
    window, read = SCAN_FIRST_WINDOW, 0
    while True:
        read += min(window, end)
        if window >= depth or window >= end:
            return min(window, end), read
        window *= SCAN_WINDOW_GROWTH


@dataclass
class Row:
    """One line of the table: N markers in one layout."""

    markers: int
    layout: str
    samples: list[RestartSample]
    topic_end: int
    fill_s: float
    load: float
    full_read_s: list[float] = field(default_factory=list)
    shared_scan_ms: list[float] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(s.error is not None for s in self.samples)

    def median(self, name: str) -> float:
        """Median of ``name`` over all restarts (failed ones count with their time until failure)."""
        return statistics.median(float(getattr(s, name)) for s in self.samples)

    def median_ms(self, name: str) -> str:
        """Median of a recovery step (ms) over the successful restarts, formatted; ``-`` if none."""
        values = [float(getattr(s, name)) for s in self.samples if s.error is None]
        return f"{statistics.median(values):,.0f}" if values else "-"


def measure(
    broker_: Broker,
    topics: Topics,
    tmp: Path,
    input_topic: str,
    output_topic: str,
    markers: int,
    layout: str,
    args: argparse.Namespace,
) -> Row:
    """Fill a fresh checkpoint topic in ``layout`` with ``markers`` foreign markers around one run of
    the job, then restart the job ``repeat`` times."""
    bootstrap = broker_.bootstrap
    tag = f"{layout}-{markers}"
    spec = RestartSpec(
        name=f"bench-restart-{tag}-{topics.run_id}",
        bootstrap=bootstrap,
        input_topic=input_topic,
        output_topic=output_topic,
        checkpoint_topic=topics.create(f"restart-checkpoints-{tag}", 1),
        state_dir=tmp / f"{tag}-state",
        checkpoint_dir=tmp / f"{tag}-checkpoints",
        operation_timeout_s=args.operation_timeout_s,
    )
    repeat: int = args.repeat
    foreign_group = f"bench-other-{tag}-{topics.run_id}-group"
    fill_s = 0.0
    if layout == "before":
        fill_s = write_markers(bootstrap, spec.checkpoint_topic, markers, foreign_group)
    began = time.perf_counter()
    expected = run_job(spec)
    run_s = time.perf_counter() - began
    if layout == "after":
        fill_s = write_markers(bootstrap, spec.checkpoint_topic, markers, foreign_group)
    shutil.rmtree(spec.state_dir, ignore_errors=True)
    end = high_watermark(bootstrap, spec.checkpoint_topic, 0)
    fill = f"{markers:,} markers written {layout} the job in {fill_s:.1f} s; " if markers else ""
    print(
        f"  {tag}: {fill}job ran {run_s:.1f} s (checkpoints {min(expected.values())}-"
        f"{max(expected.values())}); checkpoint topic ends at offset {end:,}"
    )
    load = os.getloadavg()[0]
    samples: list[RestartSample] = []
    for attempt in range(1, repeat + 1):
        sample = restart(spec, attempt, expected)
        samples.append(sample)
        if sample.error is not None:
            print(f"    restart {attempt}: FAILED after {sample.open_s:.2f} s: {sample.error[:300]}")
            continue
        print(
            f"    restart {attempt}: open() {sample.open_s:.2f} s; slowest split: read_committed "
            f"{sample.read_committed_ms:,.0f} ms, init_transactions {sample.init_transactions_ms:,.0f} ms, "
            f"claim {sample.claim_ms:,.0f} ms, state restore {sample.state_restore_ms:,.0f} ms; "
            f"markers {sample.marker_depth:,} offsets below the end"
        )
    row = Row(markers, layout if markers else "-", samples, end, fill_s, (load + os.getloadavg()[0]) / 2)
    for _ in range(repeat):
        row.shared_scan_ms.append(shared_scan(spec, expected))
    print(
        f"    one scan for all {PARTITIONS} splits: {statistics.median(row.shared_scan_ms):,.0f} ms (median)"
    )
    if layout == "before" or not markers:
        # The old recovery read: the whole checkpoint topic from offset 0, for a key that is not there.
        for _ in range(repeat):
            began = time.perf_counter()
            audit_topic(
                bootstrap,
                spec.checkpoint_topic,
                partitions=[0],
                start_offsets={0: 0},
                keys=frozenset({b"x"}),
                timeout=300,
            )
            row.full_read_s.append(time.perf_counter() - began)
        print(f"    whole topic read from offset 0: {statistics.median(row.full_read_s):.2f} s (median)")
    shutil.rmtree(spec.checkpoint_dir, ignore_errors=True)
    return row


# -- report -------------------------------------------------------------------------------------------


def print_table(header: str, rows: Sequence[Row], repeat: int) -> None:
    line = "=" * 100
    one, five, fifteen = os.getloadavg()
    print(f"\n{line}\n{header}\n{line}")
    print(
        f"restart of an exactly-once job ({PARTITIONS} splits) vs foreign markers in its checkpoint topic; "
        f"{repeat} restarts each"
    )
    cells: list[list[str]] = []
    for row in rows:
        depth = max(s.marker_depth for s in row.samples)
        window, scanned = scan_window(depth, row.topic_end) if depth >= 0 else (-1, -1)
        cells.append(
            [
                f"{row.markers:,}",
                row.layout,
                f"{row.median('open_s'):.2f}",
                f"{max(s.open_s for s in row.samples):.2f}",
                row.median_ms("read_committed_ms"),
                f"{statistics.median(row.shared_scan_ms):,.0f}",
                row.median_ms("init_transactions_ms"),
                row.median_ms("claim_ms"),
                row.median_ms("state_restore_ms"),
                f"{window:,}" if window >= 0 else "-",
                f"{scanned:,}" if scanned >= 0 else "-",
                f"{row.load:.2f}",
                f"{row.failures}/{len(row.samples)}",
            ]
        )
    table(
        [
            "markers",
            "layout",
            "restart median s",
            "max s",
            "read_committed median ms",
            "shared scan ms",
            "init_txn ms",
            "claim ms",
            "restore ms",
            "scan window",
            "offsets scanned",
            "load 1m",
            "failed",
        ],
        cells,
    )
    print(
        "   restart: runner.open() until ready (or until it failed). ms columns: slowest of the 8 splits\n"
        "   (they recover in parallel), median over the successful restarts. shared scan: one\n"
        "   scan_committed_markers call for all 8 splits, measured alone (recovery coalesces the splits'\n"
        f"   concurrent scans into one or a few such reads). scan window (first {SCAN_FIRST_WINDOW:,}, "
        f"x{SCAN_WINDOW_GROWTH}) and offsets\n"
        "   scanned per split: computed from where the splits' committed markers lie. load 1m: mean of\n"
        "   os.getloadavg()[0] before and after the restarts."
    )
    for row in rows:
        for i, sample in enumerate(row.samples, 1):
            if sample.error is not None:
                print(
                    f"   FAILED: {row.markers:,} {row.layout}, restart {i}, after {sample.open_s:.1f} s: "
                    f"{sample.error[:400]}"
                )
    print("\nfor reference, the old recovery read: the whole checkpoint topic from offset 0 (audit_topic)")
    table(
        ["markers", "topic offsets", "read s (median)"],
        [
            [f"{row.markers:,}", f"{row.topic_end:,}", f"{statistics.median(row.full_read_s):.2f}"]
            for row in rows
            if row.full_read_s
        ],
    )
    print(f"\nload average (1/5/15 min) at the end: {one:.2f} / {five:.2f} / {fifteen:.2f}")
    print(line)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="sizes 0 and 10,000 only (smoke run)")
    parser.add_argument(
        "--sizes", default=None, help=f"comma-separated marker counts (default {','.join(map(str, SIZES))})"
    )
    parser.add_argument("--repeat", type=int, default=3, help="restarts measured per size and layout")
    parser.add_argument(
        "--operation-timeout-s",
        type=float,
        default=30.0,
        help="KafkaSourceConfig.operation_timeout_s of the job (eventapp's default 30): bounds each scan",
    )
    args = parser.parse_args(argv)
    if args.sizes is not None:
        sizes = tuple(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
    else:
        sizes = QUICK_SIZES if args.quick else SIZES
    if args.repeat < 1 or any(n < 0 for n in sizes):
        parser.error("--repeat must be >= 1 and sizes >= 0")
    configure_logging(level="WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="eventapp-bench-restart-"))
    began = time.perf_counter()
    try:
        with broker() as broker_:
            topics = Topics(broker_.bootstrap)
            header = (
                f"eventapp restart benchmark: {broker_.description}, Python {platform.python_version()}, "
                f"{os.cpu_count()} CPUs"
            )
            print(header)
            print(f"  load average at start: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
            input_topic = topics.create("restart-in", PARTITIONS)
            output_topic = topics.create("restart-out", PARTITIONS)
            produce(
                broker_.bootstrap,
                input_topic,
                ((f"key-{i % KEYS}", orjson.dumps({"k": f"key-{i % KEYS}", "v": i})) for i in range(RECORDS)),
            )
            rows: list[Row] = []
            for markers in sizes:
                for layout in LAYOUTS if markers else LAYOUTS[:1]:
                    rows.append(
                        measure(broker_, topics, tmp, input_topic, output_topic, markers, layout, args)
                    )
            print_table(f"{header}; {time.perf_counter() - began:.0f} s", rows, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
