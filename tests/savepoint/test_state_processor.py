"""The state processor API on both backends: bootstrap a savepoint from Python values, transform one
(drop, rename, rewrite a state, add a TTL), read it as a DataFrame, and restore each result into a
running job whose outputs show the state it started from."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from eventapp import (
    RestoreRequest,
    Savepoint,
    SavepointBuilder,
    SavepointError,
    SavepointTransform,
    StateTtlConfig,
    TimeDomain,
    ValueStateDescriptor,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.partitioning import murmur2
from eventapp.savepoint.entries import parse_entry
from eventapp.state.keys import decode_key
from tests.savepoint.test_savepoints import (
    JOB,
    KEYS,
    PHASE1,
    Count,
    Record,
    backend,
    make_job,
    partition_of,
    run_phase1,
    take_savepoint,
    tree_digest,
)

SPLITS = [f"collection-{i}" for i in range(4)]


def run_from(path: Path, tmp_path: Path, kind: str, records: list[Record], **kwargs: Any) -> list[str]:
    source = CollectionSource(records, splits=4, partitioner=partition_of(4, 4), bounded=False)
    sink: CollectionSink[str] = CollectionSink()
    job = make_job(
        source, sink, tmp_path / f"chk-{path.name}", backend(kind, tmp_path / f"rocks-{path.name}"), **kwargs
    )
    runner = job.runner(restore=RestoreRequest(from_savepoint=path))
    try:
        runner.run_until_idle()
    finally:
        runner.close()
    return sink.values


def test_bootstrapped_state_is_where_the_job_reads_each_key(tmp_path: Path, kind: str) -> None:
    start = {k: 100 + i for i, k in enumerate(KEYS)}
    path = (
        SavepointBuilder(JOB, SPLITS)
        .add_state("count", Count.count, start.items())
        .add_timer("count", "card-1", 5_000, TimeDomain.PROCESSING_TIME)
        .write(tmp_path / "sp")
    )
    savepoint = Savepoint.open(path)
    assert dict(savepoint.read_state("count", Count.count)) == start
    assert savepoint.timers("count", TimeDomain.PROCESSING_TIME) == [(5_000, "card-1")]
    for split in SPLITS:  # each key's entries are in the split its records come from
        stored = {decode_key(parse_entry(key, split).key) for key, _ in savepoint.entries(split)}
        assert stored == {k for k in KEYS if f"collection-{murmur2(k.encode()) % 4}" == split}
    meta = savepoint.metadata
    assert sum(meta.splits[s].entries for s in SPLITS) == len(KEYS) + 1
    assert all(meta.splits[s].position is None for s in SPLITS)
    assert meta.operators["count"].schemas["count"]["value"]["name"] == "msgpack"
    # Positions are None: the job reads every record from the start, on top of the bootstrapped counts.
    out = run_from(path, tmp_path, kind, [(k, 1) for k in KEYS])
    assert sorted(out) == sorted(f"{k}={start[k] + 1}" for k in KEYS)


def test_keys_outside_the_splits_or_unroutable_splits_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SavepointError, match=r"pass split_of=function\(key\) -> split"):
        SavepointBuilder(JOB, ["a", "b"])
    builder = SavepointBuilder(JOB, ["x", "y"], split_of=lambda key: "z")
    with pytest.raises(SavepointError, match=r"maps to split 'z'"):
        builder.add_state("count", Count.count, [("card-1", 1)])


def test_transform_drops_renames_and_rewrites_without_touching_its_input(tmp_path: Path, kind: str) -> None:
    storage, counts = run_phase1(tmp_path, kind)
    savepoint = take_savepoint(storage, tmp_path)
    before = tree_digest(savepoint.path)
    path = (
        SavepointTransform(savepoint)
        .rename_uid("count", "count-v2")
        .rewrite_state("count-v2", Count.count, lambda key, n: None if key == "card-0" else n * 10)
        .write(tmp_path / "sp-2")
    )
    assert tree_digest(savepoint.path) == before
    result = Savepoint.open(path)
    assert result.operators() == ["count-v2"]
    expected = {k: n * 10 for k, n in counts.items() if k != "card-0"}
    assert dict(result.read_state("count-v2", Count.count)) == expected
    # Timers moved with the uid; positions and checkpoint ids are the input's.
    assert len(result.timers("count-v2", TimeDomain.PROCESSING_TIME)) == len(counts)
    assert {s: v.position for s, v in result.metadata.splits.items()} == {
        s: v.position for s, v in savepoint.metadata.splits.items()
    }
    out = run_from(path, tmp_path, kind, PHASE1 + [(k, 1) for k in KEYS], uid="count-v2")
    assert sorted(out) == sorted(f"{k}={expected.get(k, 0) + 1}" for k in KEYS)

    dropped = SavepointTransform(path).drop_operator("count-v2").write(tmp_path / "sp-3")
    assert Savepoint.open(dropped).operators() == []
    assert run_from(dropped, tmp_path, kind, [*PHASE1, ("card-5", 1)]) == ["card-5=1"]


def test_rewrite_into_a_ttl_descriptor_records_the_new_schema(tmp_path: Path) -> None:
    storage, counts = run_phase1(tmp_path, "memory")
    with_ttl = ValueStateDescriptor[int]("count", default=0, ttl=StateTtlConfig(ttl_ms=10**12))
    path = (
        SavepointTransform(take_savepoint(storage, tmp_path))
        .rewrite_state("count", Count.count, lambda key, n: n, new_descriptor=with_ttl)
        .write(tmp_path / "sp-ttl")
    )
    result = Savepoint.open(path)
    assert result.metadata.operators["count"].schemas["count"]["ttl"] is True
    assert dict(result.read_state("count", with_ttl)) == dict(counts)


def test_unknown_operators_are_refused(tmp_path: Path) -> None:
    storage, _ = run_phase1(tmp_path, "memory")
    transform = SavepointTransform(take_savepoint(storage, tmp_path))
    with pytest.raises(SavepointError, match=r"has no operator 'nope'; it has \['count'\]"):
        transform.drop_operator("nope")
    with pytest.raises(SavepointError, match=r"'count' already has state"):
        SavepointTransform(take_savepoint(storage, tmp_path)).rename_uid("count", "count")


def test_to_dataframe(tmp_path: Path) -> None:
    pytest.importorskip("pandas", reason="pandas is in the dev extra")
    storage, counts = run_phase1(tmp_path, "memory")
    frame = take_savepoint(storage, tmp_path).to_dataframe("count", Count.count)
    assert list(frame.columns) == ["key", "value"]
    assert dict(zip(frame["key"], frame["value"], strict=True)) == dict(counts)
    assert Counter(frame["value"]) == Counter(counts.values())
