"""Savepoints on the local runtime, on both backends: create from committed checkpoints, read through
the Python API, restore into the other backend, re-shard 4 -> 6 splits by key, never modify the
savepoint, and refuse bad input (damaged files, another job, max_parallelism, unknown operators)
before anything is restored."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from eventapp import (
    CheckpointConfig,
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ManualClock,
    RestoreRequest,
    Savepoint,
    SavepointError,
    TimeDomain,
    ValueStateDescriptor,
    create_savepoint,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.partitioning import murmur2
from eventapp.savepoint import restore as restore_module
from eventapp.state.store import StateBackend
from eventapp.statebackends import MemoryStateBackend, RocksDBStateBackend

JOB = "sp-job"
Record = tuple[str, int]  # (key, phase)


class Count(KeyedProcessFunction[str, Record, str]):
    """Counts per key, emits ``key=n``; registers a processing-time timer on a key's first record."""

    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: Record, ctx: Context, out: Collector[str]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect(f"{value[0]}={n}")
        if n == 1:
            ctx.timer_service.register_processing_time_timer(10**12)


def backend(kind: str, path: Path) -> StateBackend:
    return MemoryStateBackend() if kind == "memory" else RocksDBStateBackend(path)


def make_job(
    source: CollectionSource[Record],
    sink: CollectionSink[str],
    storage: Path,
    state: StateBackend,
    *,
    uid: str = "count",
    name: str = JOB,
    max_parallelism: int = 128,
) -> Job:
    job = Job(
        name,
        JobConfig(
            state_backend=state,
            clock=ManualClock(1_000),
            checkpoint=CheckpointConfig(storage=storage, interval_ms=600_000),
            max_parallelism=max_parallelism,
        ),
    )
    job.from_source(source).key_by(lambda r: r[0], partitioned_by_source=True).process(
        Count(), uid=uid
    ).sink_to(sink)
    return job


def partition_of(splits_phase1: int, splits_phase2: int) -> Any:
    """Records of phase 1 go to murmur2(key) % splits_phase1, later ones by % splits_phase2 (a topic
    whose partitions were increased between the phases)."""

    def partition(record: Record) -> int:
        n = splits_phase1 if record[1] == 1 else splits_phase2
        return murmur2(record[0].encode()) % n

    return partition


KEYS = [f"card-{i}" for i in range(40)]
PHASE1: list[Record] = [(k, 1) for _ in range(3) for k in KEYS[: 20 + _ * 10]]  # counts 3, 2 or 1


def run_phase1(tmp_path: Path, kind: str) -> tuple[Path, Counter[str]]:
    """Run phase 1 on 4 splits, checkpoint, stop; returns the checkpoint storage and the counts."""
    storage = tmp_path / "checkpoints"
    source = CollectionSource(PHASE1, splits=4, partitioner=partition_of(4, 4), bounded=False)
    runner = make_job(source, CollectionSink(), storage, backend(kind, tmp_path / "rocks1")).runner()
    runner.run_until_idle()
    runner.checkpoint()
    runner.close()
    return storage, Counter(k for k, _ in PHASE1)


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        digest.update(str(item.relative_to(path)).encode())
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()


def other(kind: str) -> str:
    return "rocksdb" if kind == "memory" else "memory"


def take_savepoint(storage: Path, tmp_path: Path, splits: int = 4) -> Savepoint:
    created = create_savepoint(
        _storage(storage),
        JOB,
        [f"collection-{i}" for i in range(splits)],
        tmp_path / "savepoints",
        max_parallelism=128,
        partitioner="murmur2",
    )
    return Savepoint.open(created.path)


def _storage(path: Path) -> Any:
    return CheckpointConfig(storage=path).resolved_storage()


def test_savepoint_holds_every_key_state_timers_and_positions(tmp_path: Path, kind: str) -> None:
    storage, counts = run_phase1(tmp_path, kind)
    savepoint = take_savepoint(storage, tmp_path)
    assert dict(savepoint.read_state("count", Count.count)) == dict(counts)
    timers = savepoint.timers("count", TimeDomain.PROCESSING_TIME)
    assert sorted(k for _, k in timers) == sorted(counts)
    meta = savepoint.metadata
    assert meta.operators["count"].states == {"count": len(counts)}
    assert meta.operators["count"].keys == len(counts)
    per_split = Counter(murmur2(k.encode()) % 4 for k, _ in PHASE1)
    assert {s: st.position for s, st in meta.splits.items()} == {
        f"collection-{i}": per_split[i] for i in range(4)
    }


def test_restore_into_the_other_backend_continues_every_count(tmp_path: Path, kind: str) -> None:
    storage, counts = run_phase1(tmp_path, kind)
    savepoint = take_savepoint(storage, tmp_path)
    before = tree_digest(savepoint.path)
    more: list[Record] = [(k, 1) for k in KEYS]
    source = CollectionSource(PHASE1 + more, splits=4, partitioner=partition_of(4, 4), bounded=False)
    sink: CollectionSink[str] = CollectionSink()
    new_storage = tmp_path / "checkpoints-2"
    job = make_job(source, sink, new_storage, backend(other(kind), tmp_path / "rocks2"))
    runner = job.runner(restore=RestoreRequest(from_savepoint=savepoint.path))
    runner.run_until_idle()
    runner.checkpoint()
    runner.close()
    # Phase 1 is not read again (positions), every count continues from the savepoint.
    assert sorted(sink.values) == sorted(f"{k}={counts[k] + 1}" for k in KEYS)
    assert tree_digest(savepoint.path) == before  # NO_CLAIM: never modified


@pytest.mark.parametrize("chunk", [4096, 5])  # 5: chunks of one state, routed as a whole
def test_rescale_from_4_to_6_splits_moves_each_key_to_its_new_split(
    tmp_path: Path, kind: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(restore_module, "_CHUNK", chunk)
    storage, counts = run_phase1(tmp_path, kind)
    savepoint = take_savepoint(storage, tmp_path)
    phase2: list[Record] = [(k, 2) for k in KEYS]
    source = CollectionSource(PHASE1 + phase2, splits=6, partitioner=partition_of(4, 6), bounded=False)
    sink: CollectionSink[str] = CollectionSink()
    job = make_job(source, sink, tmp_path / "checkpoints-2", backend(other(kind), tmp_path / "rocks2"))
    runner = job.runner(restore=RestoreRequest(from_savepoint=savepoint.path))
    runner.run_until_idle()
    runner.checkpoint()
    runner.close()
    # Each key's phase-2 record lands on murmur2 % 6 and finds the key's state there.
    assert sorted(sink.values) == sorted(f"{k}={counts[k] + 1}" for k in KEYS)
    # A savepoint of the rescaled job has every key in the split of its new partition.
    second = create_savepoint(
        _storage(tmp_path / "checkpoints-2"),
        JOB,
        [f"collection-{i}" for i in range(6)],
        tmp_path / "savepoints-2",
        max_parallelism=128,
        partitioner="murmur2",
    )
    rescaled = Savepoint.open(second.path)
    assert dict(rescaled.read_state("count", Count.count)) == {k: counts[k] + 1 for k in KEYS}
    for split in rescaled.splits():
        index = int(split.rsplit("-", 1)[1])
        store = rescaled.entries(split)
        for entry, _ in store:
            key = entry.rsplit(b"card-", 1)[1]
            assert murmur2(b"card-" + key) % 6 == index


def test_restart_with_the_same_savepoint_after_a_checkpoint_restores_the_checkpoint(tmp_path: Path) -> None:
    storage, counts = run_phase1(tmp_path, "memory")
    savepoint = take_savepoint(storage, tmp_path)
    more: list[Record] = [(k, 1) for k in KEYS]
    source = CollectionSource(PHASE1 + more, splits=4, partitioner=partition_of(4, 4), bounded=False)
    sink: CollectionSink[str] = CollectionSink()
    new_storage = tmp_path / "checkpoints-2"
    request = RestoreRequest(from_savepoint=savepoint.path)
    runner = make_job(source, sink, new_storage, MemoryStateBackend()).runner(restore=request)
    runner.run_until_idle()
    runner.checkpoint()
    runner.close()  # crash after a checkpoint; the supervisor reruns the same command
    again: CollectionSink[str] = CollectionSink()
    for k in KEYS[:5]:
        source.add((k, 1))
    rerun = make_job(source, again, new_storage, MemoryStateBackend()).runner(restore=request)
    rerun.run_until_idle()
    rerun.close()
    assert sorted(again.values) == sorted(f"{k}={counts[k] + 2}" for k in KEYS[:5])


def _created_with(storage: Path, target: Path, workers: int) -> Savepoint:
    created = create_savepoint(
        _storage(storage),
        JOB,
        [f"collection-{i}" for i in range(5)],  # collection-4 never checkpointed: empty, no position
        target,
        max_parallelism=128,
        partitioner="murmur2",
        workers=workers,
    )
    return Savepoint.open(created.path)


def test_worker_processes_write_the_same_savepoint_forked_or_spawned_from_a_thread(
    tmp_path: Path, kind: str
) -> None:
    storage, counts = run_phase1(tmp_path, kind)
    alone = _created_with(storage, tmp_path / "one", 1)
    forked = _created_with(storage, tmp_path / "forked", 2)  # this test's thread is the only one
    spawned: list[Savepoint] = []
    thread = threading.Thread(target=lambda: spawned.append(_created_with(storage, tmp_path / "spawned", 2)))
    thread.start()
    thread.join()
    assert alone.metadata.splits["collection-4"].position is None
    for savepoint in (forked, spawned[0]):
        assert savepoint.metadata.splits == alone.metadata.splits  # files, sizes, SHA-256, positions
        assert savepoint.metadata.operators == alone.metadata.operators
        assert dict(savepoint.read_state("count", Count.count)) == dict(counts)


def test_zero_workers_is_refused(tmp_path: Path) -> None:
    storage, _ = run_phase1(tmp_path, "memory")
    with pytest.raises(SavepointError, match="workers=0: write with at least 1 process"):
        _created_with(storage, tmp_path / "none", 0)


# --- bad input: refused before anything is restored ---------------------------------------------------


def restore(savepoint: Path, tmp_path: Path, **kwargs: Any) -> list[str]:
    source = CollectionSource(PHASE1, splits=4, partitioner=partition_of(4, 4), bounded=False)
    sink: CollectionSink[str] = CollectionSink()
    job_kwargs = {k: kwargs.pop(k) for k in ("uid", "name", "max_parallelism") if k in kwargs}
    job = make_job(source, sink, tmp_path / "checkpoints-r", MemoryStateBackend(), **job_kwargs)
    runner = job.runner(restore=RestoreRequest(from_savepoint=savepoint, **kwargs))
    try:
        runner.run_until_idle()
    finally:
        runner.close()
    return sink.values


def test_corrupted_state_file_is_refused_naming_it(tmp_path: Path) -> None:
    storage, _ = run_phase1(tmp_path, "memory")
    savepoint = take_savepoint(storage, tmp_path)
    victim = savepoint.path / savepoint.metadata.splits["collection-2"].file
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(SavepointError, match=r"split-0002\.entries.*SHA-256"):
        restore(savepoint.path, tmp_path)


def test_missing_truncated_or_edited_metadata_is_refused(tmp_path: Path) -> None:
    storage, _ = run_phase1(tmp_path, "memory")
    savepoint = take_savepoint(storage, tmp_path)
    meta = savepoint.path / "_metadata"
    original = meta.read_bytes()
    meta.write_bytes(original[: len(original) // 2])
    with pytest.raises(SavepointError, match="unreadable"):
        restore(savepoint.path, tmp_path)
    edited = json.loads(original)
    edited["splits"]["collection-0"]["position"] = 0
    meta.write_text(json.dumps(edited))
    with pytest.raises(SavepointError, match="checksum mismatch"):
        restore(savepoint.path, tmp_path)
    meta.unlink()
    with pytest.raises(SavepointError, match="holds no _metadata"):
        restore(savepoint.path, tmp_path)
    (savepoint.path / "state" / "split-0001.entries").unlink()
    meta.write_bytes(original)
    with pytest.raises(SavepointError, match=r"split-0001\.entries.*missing"):
        restore(savepoint.path, tmp_path)


def test_savepoint_of_another_job_or_max_parallelism_is_refused(tmp_path: Path) -> None:
    storage, _ = run_phase1(tmp_path, "memory")
    savepoint = take_savepoint(storage, tmp_path)
    with pytest.raises(SavepointError, match="savepoint of job 'sp-job', not of 'other'"):
        restore(savepoint.path, tmp_path, name="other")
    with pytest.raises(SavepointError, match=r"max_parallelism 128, this job has 256.*max_parallelism=128"):
        restore(savepoint.path, tmp_path, max_parallelism=256)


def test_unknown_operator_is_refused_dropped_with_the_flag_or_renamed(tmp_path: Path) -> None:
    storage, counts = run_phase1(tmp_path, "memory")
    savepoint = take_savepoint(storage, tmp_path)
    with pytest.raises(SavepointError, match=r"operators \['count'\] that this job does not have"):
        restore(savepoint.path, tmp_path, uid="counter")
    # Dropped: counting starts over, nothing of phase 1 is read again.
    assert restore(savepoint.path, tmp_path, uid="counter", allow_non_restored_state=True) == []
    # Renamed: the state is there under the new uid.
    source = CollectionSource([*PHASE1, ("card-0", 1)], splits=4, partitioner=partition_of(4, 4))
    sink: CollectionSink[str] = CollectionSink()
    job = make_job(source, sink, tmp_path / "checkpoints-x", MemoryStateBackend(), uid="counter")
    job.runner(restore=RestoreRequest(from_savepoint=savepoint.path, uid_renames={"count": "counter"})).run()
    assert sink.values == [f"card-0={counts['card-0'] + 1}"]


def test_savepoint_of_a_job_without_committed_checkpoints_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SavepointError, match="no committed checkpoint"):
        take_savepoint(tmp_path / "empty", tmp_path)


def test_rescale_with_a_renamed_uid_moves_and_renames_each_entry(tmp_path: Path) -> None:
    storage, counts = run_phase1(tmp_path, "rocksdb")
    savepoint = take_savepoint(storage, tmp_path)
    source = CollectionSource(
        PHASE1 + [(k, 2) for k in KEYS], splits=6, partitioner=partition_of(4, 6), bounded=False
    )
    sink: CollectionSink[str] = CollectionSink()
    job = make_job(source, sink, tmp_path / "checkpoints-2", MemoryStateBackend(), uid="count-2")
    runner = job.runner(
        restore=RestoreRequest(from_savepoint=savepoint.path, uid_renames={"count": "count-2"})
    )
    runner.run_until_idle()
    runner.close()
    assert sorted(sink.values) == sorted(f"{k}={counts[k] + 1}" for k in KEYS)
