"""Conformance of checkpoint storages: every test runs against LocalCheckpointStorage and against
ObjectCheckpointStorage on a real S3 server (SeaweedFS, see ``tests/support/seaweedfs.py``).

``reopen()`` gives another instance on the same storage (for the object store: with another local
cache directory, so it really downloads), like a restarted process.
"""

from __future__ import annotations

import base64
import itertools
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from eventapp import (
    CheckpointError,
    CheckpointStorage,
    CommittedCheckpoint,
    LocalCheckpointStorage,
    ObjectCheckpointStorage,
    SnapshotCorruptError,
    SnapshotMissingError,
)
from eventapp.checkpoint.storage import CommitPointStorage, snapshot_name
from tests.support.seaweedfs import S3Server

JOB, SPLIT = "orders", "orders-0"
Reopen = Callable[[], CheckpointStorage]


@pytest.fixture(params=["local", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def reopen(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Reopen:
    counter = itertools.count()
    if kind == "local":
        return lambda: LocalCheckpointStorage(tmp_path / "checkpoints")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")

    def make() -> CheckpointStorage:
        return ObjectCheckpointStorage(
            f"s3://{bucket}/checkpoints",
            settings=server.settings(),
            cache_dir=tmp_path / f"cache-{next(counter)}",
        )

    return make


@pytest.fixture
def storage(reopen: Reopen) -> CheckpointStorage:
    return reopen()


FILES = {"state/db/000007.sst": b"s" * 3000, "state/db/MANIFEST-000005": b"manifest", "sink.json": b"{}"}


def write(storage: CheckpointStorage, name: str, files: dict[str, bytes] = FILES, split: str = SPLIT) -> Path:
    directory = storage.begin(JOB, split, name)
    for relative, data in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(data)
    return storage.complete(JOB, split, name, {"snapshot": name, "job": JOB, "split": split})


def contents(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file() and p.name != "split.json"
    }


def test_round_trip_in_another_instance(storage: CheckpointStorage, reopen: Reopen) -> None:
    name = snapshot_name(1, "abc")
    stored = write(storage, name)
    assert contents(stored) == FILES
    path, meta = reopen().open(JOB, SPLIT, name)
    assert contents(path) == FILES
    assert meta == {"snapshot": name, "job": JOB, "split": SPLIT}
    assert storage.open(JOB, SPLIT, name)[1] == meta


def test_snapshots_are_never_overwritten(storage: CheckpointStorage) -> None:
    name = snapshot_name(1, "abc")
    write(storage, name)
    with pytest.raises(CheckpointError, match="already exists; snapshots are never overwritten"):
        storage.begin(JOB, SPLIT, name)


def test_in_progress_snapshots_are_invisible(storage: CheckpointStorage, reopen: Reopen) -> None:
    write(storage, snapshot_name(1, "abc"))
    directory = storage.begin(JOB, SPLIT, snapshot_name(2, "abc"))
    (directory / "state").mkdir()
    (directory / "state" / "000009.sst").write_bytes(b"x")
    for instance in (storage, reopen()):
        assert [s.name for s in instance.list_snapshots(JOB, SPLIT)] == [snapshot_name(1, "abc")]


def test_list_order_and_committed_marks(storage: CheckpointStorage, reopen: Reopen) -> None:
    names = [snapshot_name(i, inc) for i, inc in [(10, "b"), (2, "a"), (10, "a"), (9, "z")]]
    for name in names:
        write(storage, name, {"f": name.encode()})
    storage.mark_committed(JOB, SPLIT, snapshot_name(9, "z"))
    listed = reopen().list_snapshots(JOB, SPLIT)
    assert [(s.checkpoint_id, s.name, s.committed) for s in listed] == [
        (2, snapshot_name(2, "a"), False),
        (9, snapshot_name(9, "z"), True),
        (10, snapshot_name(10, "a"), False),
        (10, snapshot_name(10, "b"), False),
    ]
    assert storage.list_snapshots(JOB, "other-split") == []


def test_delete(storage: CheckpointStorage, reopen: Reopen) -> None:
    first, second = snapshot_name(1, "a"), snapshot_name(2, "a")
    write(storage, first)
    write(storage, second, {**FILES, "state/db/000008.sst": b"new"})
    storage.mark_committed(JOB, SPLIT, first)
    storage.delete(JOB, SPLIT, first)
    assert [s.name for s in storage.list_snapshots(JOB, SPLIT)] == [second]
    with pytest.raises(SnapshotMissingError):
        reopen().open(JOB, SPLIT, first)
    path, _ = reopen().open(JOB, SPLIT, second)  # shares 000007.sst with the deleted one
    assert contents(path) == {**FILES, "state/db/000008.sst": b"new"}


def test_archive_keeps_the_files_and_hides_them(storage: CheckpointStorage, reopen: Reopen) -> None:
    first, second = snapshot_name(1, "a"), snapshot_name(2, "a")
    write(storage, first)
    write(storage, second)
    storage.mark_committed(JOB, SPLIT, second)
    where = storage.archive(JOB, SPLIT, [first, second])
    assert "archive-" in where
    assert reopen().list_snapshots(JOB, SPLIT) == []
    write(storage, snapshot_name(3, "b"))
    storage.delete(JOB, SPLIT, snapshot_name(3, "b"))  # collects what it no longer needs
    assert archived_files(storage, where, second) == FILES


def archived_files(storage: CheckpointStorage, where: str, name: str) -> dict[str, bytes]:
    """The files of snapshot ``name`` in the archive ``where`` (read without the storage's help)."""
    if isinstance(storage, LocalCheckpointStorage):
        return contents(Path(where) / name)
    assert isinstance(storage, ObjectCheckpointStorage)
    import json

    prefix = where.removeprefix(f"s3://{storage.location.bucket}/")
    manifest = json.loads(storage.store.get_bytes(f"{prefix}/{name}/_snapshot.json"))
    return {
        relative: base64.b64decode(entry["inline"])
        if "inline" in entry
        else storage.store.get_bytes(entry["key"])
        for relative, entry in manifest["files"].items()
        if relative != "split.json"
    }


def test_splits(storage: CheckpointStorage) -> None:
    assert storage.splits(JOB) == []
    write(storage, snapshot_name(1, "a"), split="orders-1")
    write(storage, snapshot_name(1, "a"), split="orders-0")
    assert storage.splits(JOB) == ["orders-0", "orders-1"]
    assert storage.splits("another-job") == []


def test_missing_snapshot(storage: CheckpointStorage, kind: str) -> None:
    name = snapshot_name(1, "a")
    with pytest.raises(SnapshotMissingError, match="Refusing to start"):
        storage.open(JOB, SPLIT, name)


def test_corrupt_snapshot_metadata(storage: CheckpointStorage, reopen: Reopen, kind: str) -> None:
    name = snapshot_name(1, "a")
    stored = write(storage, name)
    if isinstance(storage, ObjectCheckpointStorage):
        storage.store.put_bytes(f"checkpoints/{JOB}/{SPLIT}/{name}/_snapshot.json", b"{not json")
    else:
        (stored / "split.json").write_text("{not json")
    with pytest.raises(SnapshotCorruptError, match="Refusing to start"):
        reopen().open(JOB, SPLIT, name)


def test_metadata_must_name_the_snapshot(storage: CheckpointStorage, reopen: Reopen) -> None:
    name, other = snapshot_name(1, "a"), snapshot_name(2, "a")
    write(storage, other)
    if isinstance(storage, ObjectCheckpointStorage):
        data = storage.store.get_bytes(f"checkpoints/{JOB}/{SPLIT}/{other}/_snapshot.json")
        storage.store.put_bytes(f"checkpoints/{JOB}/{SPLIT}/{name}/_snapshot.json", data)
    else:
        shutil.copytree(
            Path(str(storage.split_dir(JOB, SPLIT))) / other, storage.split_dir(JOB, SPLIT) / name
        )
    with pytest.raises(SnapshotCorruptError, match="name"):
        reopen().open(JOB, SPLIT, name)


def test_commit_point_round_trip(storage: CheckpointStorage, reopen: Reopen) -> None:
    assert isinstance(storage, CommitPointStorage)
    point = storage.create_commit_point(JOB, SPLIT)
    assert point.recover() is None
    point.commit(CommittedCheckpoint(3, snapshot_name(3, "a"), 42))
    point.commit(CommittedCheckpoint(4, snapshot_name(4, "a"), None))
    again = reopen()
    assert isinstance(again, CommitPointStorage)
    assert again.create_commit_point(JOB, SPLIT).recover() == CommittedCheckpoint(
        4, snapshot_name(4, "a"), None
    )
    assert again.create_commit_point(JOB, "orders-9").recover() is None
