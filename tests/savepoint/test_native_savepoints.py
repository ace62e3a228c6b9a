"""Native savepoints (``--type native``): the checkpoints' own backend files. Restored into the same
backend on the same splits they open from their files; into another backend, re-sharded or
transformed they are read entry by entry; damaged files are refused; the savepoint is never
modified by a restore (NO_CLAIM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventapp import RestoreRequest, Savepoint, SavepointError, SavepointTransform, create_savepoint
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.partitioning import Murmur2Partitioner
from eventapp.savepoint.restore import plan_restore
from tests.savepoint.test_savepoints import (
    JOB,
    KEYS,
    PHASE1,
    Count,
    Record,
    _storage,
    backend,
    make_job,
    other,
    partition_of,
    run_phase1,
    tree_digest,
)

SPLITS4 = [f"collection-{i}" for i in range(4)]


def native_savepoint(tmp_path: Path, kind: str) -> tuple[Savepoint, dict[str, int]]:
    storage, counts = run_phase1(tmp_path, kind)
    created = create_savepoint(
        _storage(storage),
        JOB,
        SPLITS4,
        tmp_path / "sp",
        max_parallelism=128,
        partitioner="murmur2",
        native=True,
    )
    return Savepoint.open(created.path), dict(counts)


def restore_into(savepoint: Savepoint, tmp_path: Path, state_kind: str, splits: int, name: str) -> list[str]:
    more: list[Record] = [(k, 2) for k in KEYS]
    source = CollectionSource(
        PHASE1 + more, splits=splits, partitioner=partition_of(4, splits), bounded=False
    )
    sink: CollectionSink[str] = CollectionSink()
    job = make_job(source, sink, tmp_path / f"chk-{name}", backend(state_kind, tmp_path / f"rocks-{name}"))
    runner = job.runner(restore=RestoreRequest(from_savepoint=savepoint.path))
    try:
        runner.run_until_idle()
        runner.checkpoint()
    finally:
        runner.close()
    return sink.values


def test_native_savepoint_holds_the_backend_files_and_reads_like_a_canonical_one(
    tmp_path: Path, kind: str
) -> None:
    savepoint, counts = native_savepoint(tmp_path, kind)
    meta = savepoint.metadata
    assert {s.native for s in meta.splits.values()} == {kind}
    assert all((savepoint.path / s.file).is_dir() and s.entries == -1 for s in meta.splits.values())
    assert meta.operators["count"].keys == -1  # not counted
    assert meta.operators["count"].schemas["count"]["kind"] == "value"
    assert dict(savepoint.read_state("count", Count.count)) == counts


def test_same_backend_same_splits_opens_the_files_and_continues_every_count(
    tmp_path: Path, kind: str
) -> None:
    savepoint, counts = native_savepoint(tmp_path, kind)
    before = tree_digest(savepoint.path)
    plan = plan_restore(
        savepoint,
        job=JOB,
        operators=["count"],
        source_splits=SPLITS4,
        splits=SPLITS4,
        partitioner=Murmur2Partitioner(),
        max_parallelism=128,
        backend=kind,
    )
    assert sorted(plan.native) == SPLITS4 and all(not e for e in plan.entries.values())
    out = restore_into(savepoint, tmp_path, kind, 4, "same")
    assert sorted(out) == sorted(f"{k}={counts[k] + 1}" for k in KEYS)
    assert tree_digest(savepoint.path) == before  # the job's compactions never touch the savepoint


def test_other_backend_and_resharding_read_the_native_files_entry_by_entry(tmp_path: Path, kind: str) -> None:
    savepoint, counts = native_savepoint(tmp_path, kind)
    expected = sorted(f"{k}={counts[k] + 1}" for k in KEYS)
    assert sorted(restore_into(savepoint, tmp_path, other(kind), 4, "other")) == expected
    assert sorted(restore_into(savepoint, tmp_path, kind, 6, "resharded")) == expected


def test_transform_of_a_native_savepoint_writes_a_canonical_one(tmp_path: Path) -> None:
    savepoint, counts = native_savepoint(tmp_path, "rocksdb")
    path = SavepointTransform(savepoint).rename_uid("count", "count-2").write(tmp_path / "sp-2")
    result = Savepoint.open(path)
    assert {s.native for s in result.metadata.splits.values()} == {None}
    assert dict(result.read_state("count-2", Count.count)) == counts


def test_a_damaged_or_missing_native_file_is_refused_naming_the_split(tmp_path: Path) -> None:
    savepoint, _ = native_savepoint(tmp_path, "rocksdb")
    state = savepoint.metadata.splits["collection-2"]
    files = sorted(p for p in (savepoint.path / state.file).rglob("*") if p.is_file())
    victim = next(p for p in files if p.suffix == ".sst")
    victim.unlink()  # a hard link: the checkpoint's own file is untouched
    victim.write_bytes(b"not an sst")
    with pytest.raises(SavepointError, match=r"split 'collection-2', native rocksdb snapshot\) fail"):
        Savepoint.open(savepoint.path)
    victim.unlink()
    with pytest.raises(SavepointError, match=r"split 'collection-2'"):
        Savepoint.open(savepoint.path)
