"""Checkpoint pause and restore with many keys in RocksDB (``bench_kafka --parts many-keys,restore``).

``--fill-keys`` records with distinct keys (``{"k": "u0000042", "q": 1}``: the running count is updated,
nothing is emitted) are run through an exactly-once job in this process (``job.runner()``, no periodic
checkpoint during the load). Then ``runner.checkpoint()`` is timed: once right after the load (a full
snapshot), then after each of ``--update-rounds`` batches of ``--updates`` updates of existing keys
(incremental: unchanged SST files are hard links shared with the previous snapshot). The updates' outputs
are audited. The restore part opens a new runner of the same job (same checkpoint directory, empty
state directory) and times ``open()`` until it is ready.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from eventapp import (
    CheckpointConfig,
    CheckpointingMode,
    DataStream,
    Job,
    JobConfig,
    LocalCheckpointStorage,
    LocalRunner,
)
from eventapp.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSinkConfig, KafkaSourceConfig
from eventapp.connectors.kafka.txnlog import audit_topic

from .kafka_common import (
    UID,
    Broker,
    RecordingKafkaSource,
    RunningCount,
    TimedRocksDBStateBackend,
    Topics,
    count_state_entries,
    key_of,
    produce,
)
from .kafka_events import CheckpointCapture


@dataclass(frozen=True)
class CountJobSpec:
    name: str
    bootstrap: str
    input_topic: str
    output_topic: str
    state_dir: Path
    checkpoint_dir: Path


def build_count_job(spec: CountJobSpec) -> tuple[Job, TimedRocksDBStateBackend, RecordingKafkaSource]:
    """KafkaSource -> key_by(k) -> RunningCount (RocksDB) -> KafkaSink, exactly-once; checkpoints only
    when ``runner.checkpoint()`` is called (the interval is 5 minutes)."""
    source = RecordingKafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=spec.bootstrap,
            topics=[spec.input_topic],
            group_id=f"{spec.name}-group",
            value_deserializer="json",
            transaction_timeout_ms=900_000,  # transactions must outlive 3 intervals
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
    checkpoint = CheckpointConfig(
        storage=spec.checkpoint_dir, interval_ms=300_000, mode=CheckpointingMode.EXACTLY_ONCE
    )
    job = Job(spec.name, JobConfig(state_backend=backend, checkpoint=checkpoint))
    stream: DataStream[dict[str, Any]] = job.from_source(source)
    stream.key_by(key_of, partitioned_by_source=True).process(RunningCount(), uid=UID).sink_to(sink)
    return job, backend, source


@dataclass
class SnapshotFiles:
    """SST files (counts) and all files (bytes) of the newest snapshots, new vs shared with each
    split's previous snapshot (RocksDB copies MANIFEST/OPTIONS/CURRENT: always new)."""

    new_sst: int = 0
    shared_sst: int = 0
    new_bytes: int = 0
    shared_bytes: int = 0


@dataclass
class CheckpointRow:
    label: str
    #: Wall time of ``runner.checkpoint()`` (processing stops for it), and the event's pause.
    call_ms: float
    event_pause_ms: float | None
    #: Summed over splits (they are checkpointed concurrently, so these can exceed the pause).
    snapshot_ms: float
    commit_ms: float
    files: SnapshotFiles


@dataclass
class RestoreResult:
    open_ms: float
    state_restore_ms: float
    recover_ms: float
    init_transactions_ms: float
    read_committed_ms: float
    keys: int
    snapshot_bytes: int


@dataclass
class ManyKeysResult:
    keys: int
    partitions: int
    fill_s: float
    rows: list[CheckpointRow] = field(default_factory=list)
    restore: RestoreResult | None = None


def snapshot_files(storage: LocalCheckpointStorage, job: str, splits: Sequence[str]) -> SnapshotFiles:
    """New vs shared files of each split's newest snapshot: RocksDB checkpoints hard-link SST files,
    so a file is shared when it is the same inode as one of the previous snapshot's."""
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
    deadline = time.monotonic() + timeout_s
    while runner.result().records_read < records:
        runner.step()
        if time.monotonic() > deadline:
            raise TimeoutError(f"read {runner.result().records_read} of {records} records")


def timed_checkpoint(
    label: str,
    job_name: str,
    runner: LocalRunner,
    backend: TimedRocksDBStateBackend,
    source: RecordingKafkaSource,
    capture: CheckpointCapture,
    storage: LocalCheckpointStorage,
) -> CheckpointRow:
    snapshots_before = len(backend.snapshot_ms)
    wall = time.time()
    began = time.perf_counter()
    runner.checkpoint()
    call_ms = (time.perf_counter() - began) * 1000
    events = capture.since(wall)
    return CheckpointRow(
        label,
        call_ms,
        max((e.pause_ms for e in events), default=None),
        sum(backend.snapshot_ms[snapshots_before:]),
        source.timing("commit_ms"),
        snapshot_files(storage, job_name, runner.splits),
    )


def bench_many_keys(
    broker: Broker, topics: Topics, args: argparse.Namespace, tmp: Path, capture: CheckpointCapture
) -> ManyKeysResult:
    keys, partitions, updates = args.fill_keys, args.partitions, args.updates
    print(f"\n[4] checkpoint pause with {keys:,} keys in RocksDB ({partitions} splits), exactly-once")
    topic = topics.create("many-keys", partitions)
    produce(
        broker.bootstrap,
        topic,
        ((f"u{i:07d}", orjson.dumps({"k": f"u{i:07d}", "q": 1})) for i in range(keys)),
    )
    spec = CountJobSpec(
        f"bench-keys-{topics.run_id}",
        broker.bootstrap,
        topic,
        topics.create("many-keys-out", partitions),
        tmp / "keys-state",
        tmp / "keys-checkpoints",
    )
    storage = LocalCheckpointStorage(spec.checkpoint_dir)
    updated: dict[str, int] = {}
    job, backend, source = build_count_job(spec)
    runner = job.runner()
    runner.open()
    began = time.perf_counter()
    result = ManyKeysResult(keys, partitions, 0.0)
    try:
        step_until(runner, keys)
        result.fill_s = time.perf_counter() - began
        print(f"    filled through the job in {result.fill_s:.1f} s ({keys / result.fill_s:,.0f} records/s)")
        result.rows.append(
            timed_checkpoint("first, after the load", job.name, runner, backend, source, capture, storage)
        )
        read = keys
        for round_ in range(args.update_rounds):
            update_keys = [f"u{(i * 97 + round_) % keys:07d}" for i in range(min(updates, keys))]
            for key in update_keys:
                updated[key] = updated.get(key, 1) + 1
            produce(broker.bootstrap, topic, ((k, orjson.dumps({"k": k, "v": round_})) for k in update_keys))
            read += len(update_keys)
            step_until(runner, read)
            label = f"after {len(update_keys):,} updates #{round_ + 1}"
            result.rows.append(timed_checkpoint(label, job.name, runner, backend, source, capture, storage))
        for row in result.rows:
            print(f"    checkpoint {row.label}: {row.call_ms:,.0f} ms")
    finally:
        runner.close()
    audit_counts(broker.bootstrap, spec.output_topic, updated)
    result.restore = bench_restore(spec, storage, tmp, keys)
    return result


def audit_counts(bootstrap: str, topic: str, updated: dict[str, int]) -> None:
    """Each updated key's outputs are its counts 2..n, each once (fill records emit nothing)."""
    result = audit_topic(bootstrap, topic, verify_crc=False, timeout=300)
    if result.pending_count:
        raise RuntimeError(f"many-keys job: {result.pending_count} records of open transactions")
    counts: dict[str, list[int]] = {}
    for value in result.committed_values():
        record = orjson.loads(value or b"{}")
        counts.setdefault(record["k"], []).append(record["n"])
    wrong = [
        k
        for k in updated.keys() | counts.keys()
        if sorted(counts.get(k, [])) != list(range(2, updated.get(k, 1) + 1))
    ]
    if wrong:
        raise RuntimeError(f"many-keys job: wrong outputs for {len(wrong)} keys, e.g. {wrong[:3]}")
    print(f"    outputs of the updates audited ({sum(map(len, counts.values())):,}, exactly once)")


def bench_restore(spec: CountJobSpec, storage: LocalCheckpointStorage, tmp: Path, keys: int) -> RestoreResult:
    print(f"\n[5] restore of {keys:,} keys: new runner, same checkpoints, empty state directory")
    job, backend, source = build_count_job(dataclasses.replace(spec, state_dir=tmp / "keys-state-restored"))
    runner = job.runner()
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
    print(f"    open() until ready: {open_ms:,.0f} ms; {entries:,} state entries verified")
    return RestoreResult(
        open_ms=open_ms,
        state_restore_ms=sum(backend.restore_ms.values()),
        recover_ms=source.timing("recover_ms"),
        init_transactions_ms=source.timing("init_transactions_ms"),
        read_committed_ms=source.timing("read_committed_ms"),
        keys=entries,
        snapshot_bytes=snapshot_bytes,
    )
