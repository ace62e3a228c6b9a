"""The refusal rules, explicit restores and lineages of the runtime (eventapp.checkpoint.restore),
on the file commit point of in-memory sources; the Kafka versions run in tests/crash."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eventapp import LocalCheckpointStorage, ManualClock, RestoreError
from eventapp.checkpoint.restore import RestoreRequest
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.errors import ConfigurationError
from eventapp.statebackends import MemoryStateBackend
from tests.runtime.test_checkpoints import make_job

JOB, SPLIT = "checkpointed", "collection-0"


def run_checkpoints(storage: Path, records: list[str], checkpoints: int, **runner_args: object) -> list[str]:
    """Run the counting job over ``records`` with ``checkpoints`` checkpoints; returns its outputs."""
    source: CollectionSource[str] = CollectionSource(bounded=False)
    sink: CollectionSink[str] = CollectionSink()
    runner = make_job(source, sink, ManualClock(), storage, MemoryStateBackend()).runner(**runner_args)  # type: ignore[arg-type]
    runner.run_until_idle()
    per = max(1, len(records) // checkpoints)
    for i in range(checkpoints):
        for r in records[i * per : (i + 1) * per] if i < checkpoints - 1 else records[i * per :]:
            source.add(r)
        runner.run_until_idle()
        runner.checkpoint()
    runner.close()
    return list(sink.values)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_snapshots_without_a_committed_checkpoint_refuse_and_change_nothing(tmp_path: Path) -> None:
    storage = tmp_path / "checkpoints"
    run_checkpoints(storage, ["a", "b", "a"], checkpoints=3)
    (storage / JOB / SPLIT / "_committed.json").unlink()  # the commit point lost its record
    before = files(storage)
    job = make_job(CollectionSource(["a"]), CollectionSink(), ManualClock(), storage, MemoryStateBackend())
    with pytest.raises(RestoreError) as refused:
        job.run()
    message = str(refused.value)
    assert f"holds committed snapshots of splits ['{SPLIT}']" in message
    assert "has no committed checkpoint for them" in message and "FileCommitPoint(" in message
    assert "--from-checkpoint PATH" in message and "--start-fresh" in message
    assert re.search(r"newest 'chk-000000003-[0-9a-f]+'", message)
    assert files(storage) == before, "a refused start writes, moves and deletes nothing"


def test_uncommitted_snapshots_alone_do_not_refuse(tmp_path: Path) -> None:
    """A crash between the first snapshot and its commit leaves a snapshot nobody committed: that is a
    first start, not lost state."""
    storage = tmp_path / "checkpoints"
    run_checkpoints(storage, ["a"], checkpoints=1)
    (storage / JOB / SPLIT / "_committed.json").unlink()
    for mark in (storage / JOB / SPLIT / "_committed").iterdir():
        mark.unlink()
    sink: CollectionSink[str] = CollectionSink()
    make_job(CollectionSource(["a"]), sink, ManualClock(), storage, MemoryStateBackend()).run()
    assert sink.values == ["a=1"]


def test_start_fresh_archives_and_starts_empty(tmp_path: Path) -> None:
    storage = tmp_path / "checkpoints"
    run_checkpoints(storage, ["a", "b", "a"], checkpoints=3)
    (storage / JOB / SPLIT / "_committed.json").unlink()
    old = {i.name for i in LocalCheckpointStorage(storage).list_snapshots(JOB, SPLIT)}
    sink: CollectionSink[str] = CollectionSink()
    job = make_job(CollectionSource(["a"]), sink, ManualClock(), storage, MemoryStateBackend())
    job.runner(restore=RestoreRequest(start_fresh=True)).run()
    assert sink.values == ["a=1"], "empty state"
    (archive,) = (storage / JOB / SPLIT).glob("archive-*")
    assert {p.name for p in archive.iterdir() if p.name.startswith("chk-")} == old
    assert {p.name for p in (archive / "_committed").iterdir()} == old, "the commit marks moved along"
    assert not old & {i.name for i in LocalCheckpointStorage(storage).list_snapshots(JOB, SPLIT)}


def test_from_checkpoint_restores_a_snapshot_and_never_prunes_it(tmp_path: Path) -> None:
    storage = tmp_path / "checkpoints"
    run_checkpoints(storage, ["a", "b", "a"], checkpoints=3)
    snapshots = LocalCheckpointStorage(storage).list_snapshots(JOB, SPLIT)
    chosen = storage / JOB / SPLIT / snapshots[0].name  # checkpoint 2: a=1, b=1, position 2
    chosen_files = files(chosen)
    source: CollectionSource[str] = CollectionSource(["a", "b", "a", "c"], bounded=False)
    sink: CollectionSink[str] = CollectionSink()
    job = make_job(source, sink, ManualClock(), storage, MemoryStateBackend())
    runner = job.runner(restore=RestoreRequest(from_checkpoint=chosen))
    runner.run_until_idle()
    # Resumed at checkpoint 2's position with its state (the committed checkpoint 3 is overridden).
    assert sink.values == ["a=2", "c=1"]
    for _ in range(4):
        runner.checkpoint()
    runner.close()
    assert files(chosen) == chosen_files, "the restored snapshot is never modified or deleted"
    names = LocalCheckpointStorage(storage).list_snapshots(JOB, SPLIT)
    lineage = {
        i.name: json.loads((storage / JOB / SPLIT / i.name / "split.json").read_text())["lineage"]
        for i in names
    }
    assert lineage[chosen.name] != lineage[names[-1].name], "the explicit restore started its own lineage"
    assert len([n for n in names if lineage[n.name] == lineage[names[-1].name]]) == 2
    assert names[-1].checkpoint_id == 3 + 4, "checkpoint ids continue above the committed one"


def test_pruning_keeps_snapshots_of_another_lineage(tmp_path: Path) -> None:
    """Two jobs with the same name and checkpoint directory but different commit points (here: the
    second started fresh after the first one's record was lost) never prune each other's snapshots."""
    storage = tmp_path / "checkpoints"
    run_checkpoints(storage, ["a", "b"], checkpoints=2)
    first = {i.name for i in LocalCheckpointStorage(storage).list_snapshots(JOB, SPLIT)}
    (storage / JOB / SPLIT / "_committed.json").unlink()
    for mark in (storage / JOB / SPLIT / "_committed").iterdir():
        mark.unlink()  # as if the first lineage's commits were never marked: no refusal
    run_checkpoints(storage, ["x", "y", "z", "w", "v"], checkpoints=5)
    left = {i.name for i in LocalCheckpointStorage(storage).list_snapshots(JOB, SPLIT)}
    assert first <= left, "the other lineage's snapshots are kept"
    assert len(left - first) == 2, "the job's own lineage keeps its two newest"


def test_restore_request_options_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="exclude each other"):
        RestoreRequest(from_checkpoint=tmp_path, start_fresh=True)
    job = make_job(
        CollectionSource(["a"]), CollectionSink(), ManualClock(), tmp_path / "c", MemoryStateBackend()
    )
    with pytest.raises(RestoreError, match="does not exist or is not a directory"):
        job.runner(restore=RestoreRequest(from_checkpoint=tmp_path / "nope")).run()
    other = tmp_path / "other"
    run_checkpoints(other, ["a"], checkpoints=1)
    snapshot = next((other / JOB / SPLIT).glob("chk-*"))
    meta = json.loads((snapshot / "split.json").read_text())
    meta["job"] = "someone-else"
    (snapshot / "split.json").write_text(json.dumps(meta))
    with pytest.raises(RestoreError, match="is a snapshot of job 'someone-else', not of 'checkpointed'"):
        job.runner(restore=RestoreRequest(from_checkpoint=snapshot)).run()
