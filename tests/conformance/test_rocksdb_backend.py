"""RocksDB-specific behaviour beyond the shared conformance suite: configuration, working directories,
write-ahead log, hard-linked (incremental) snapshots and restores."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rocksdict

from eventapp.errors import CheckpointError, ConfigurationError, SnapshotCorruptError
from eventapp.statebackends import RocksDBConfig, RocksDBStateBackend, RocksDBStateStore
from eventapp.statebackends.rocksdb import SNAPSHOT_DB, SNAPSHOT_META, scope_dirname

MiB = 1 << 20


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[RocksDBStateBackend]:
    made = RocksDBStateBackend(tmp_path / "work", block_cache_bytes=8 * MiB, write_buffer_bytes=4 * MiB)
    yield made
    made.close()


def open_store(
    backend: RocksDBStateBackend, scope: str = "orders-0", restore_from: Path | None = None
) -> RocksDBStateStore:
    store = backend.open(scope, restore_from)
    assert isinstance(store, RocksDBStateStore)
    return store


@pytest.mark.parametrize(
    "settings,mentions",
    [
        ({"block_cache_bytes": 1000}, "block_cache_bytes"),
        ({"block_cache_bytes": "64MB"}, "block_cache_bytes"),
        ({"write_buffer_bytes": 0}, "write_buffer_bytes"),
        ({"max_write_buffers": 1}, "max_write_buffers"),
        ({"max_background_jobs": 0}, "max_background_jobs"),
        ({"max_open_files": 3}, "max_open_files"),
        ({"bloom_bits_per_key": -1}, "bloom_bits_per_key"),
        ({"compression": "gzip"}, "compression"),
        ({"verify_restore_checksums": "yes"}, "verify_restore_checksums"),
        ({"cache_entries": -1}, "cache_entries"),
        ({"changelog_snapshots": -1}, "changelog_snapshots"),
        ({"changelog_entries": 0}, "changelog_entries"),
        ({"write_buffer_bytes": 128 * MiB}, "total_write_buffer_bytes"),
    ],
)
def test_invalid_configuration_is_rejected_with_a_useful_message(
    tmp_path: Path, settings: dict[str, Any], mentions: str
) -> None:
    with pytest.raises(ConfigurationError, match=mentions):
        RocksDBStateBackend(tmp_path, **settings)


def test_directory_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "state"
    file.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="not a directory"):
        RocksDBStateBackend(file)


def test_defaults() -> None:
    config = RocksDBConfig()
    assert config.block_cache_bytes == 64 * MiB
    assert config.max_open_files > 0
    with pytest.raises(AttributeError):
        config.block_cache_bytes = 1  # type: ignore[misc]


def test_private_temporary_directory_is_removed_on_close() -> None:
    backend = RocksDBStateBackend()
    store = backend.open("orders-0")
    store.put(b"k", b"v")
    directory = backend.directory
    assert directory.is_dir()
    backend.close()
    assert not directory.exists()


def test_scope_directory_names_are_safe_and_distinct() -> None:
    assert scope_dirname("orders-3") == "orders-3"
    names = {scope_dirname(s) for s in ["a/b", "a_b", "a:b", "..", ".", "", "../../etc", "ü"]}
    assert len(names) == 8
    for name in names:
        assert "/" not in name and name not in {"", ".", ".."}


def test_leftover_working_data_of_an_earlier_process_is_discarded(tmp_path: Path) -> None:
    first = RocksDBStateBackend(tmp_path / "work")
    store = open_store(first)
    store.put(b"k", b"v")
    store._db.flush()  # the data is on disk, as a crashed process would leave it
    leftover = tmp_path / "leftover"
    shutil.copytree(store.working_dir, leftover)
    working_dir = store.working_dir
    first.close()
    shutil.copytree(leftover, working_dir)  # "the earlier process crashed and left its DB behind"

    second = RocksDBStateBackend(tmp_path / "work")
    try:
        reopened = open_store(second)
        assert reopened.get(b"k") is None
        assert list(reopened.scan(b"")) == []
    finally:
        second.close()


def test_writes_skip_the_write_ahead_log(backend: RocksDBStateBackend) -> None:
    store = open_store(backend)
    for i in range(5000):
        store.put(b"k%05d" % i, b"v" * 100)
    store.delete(b"k00001")
    store.delete_prefix(b"k001")
    store.delete_prefix(b"")
    logs = [p for p in store.working_dir.iterdir() if p.suffix == ".log"]
    assert logs
    assert all(p.stat().st_size == 0 for p in logs)


def test_opening_an_open_scope_closes_the_old_store(backend: RocksDBStateBackend) -> None:
    old = open_store(backend)
    old.put(b"k", b"old")
    new = open_store(backend)
    assert new.get(b"k") is None
    with pytest.raises(Exception, match="closed"):
        old.get(b"k")


def test_close_removes_the_working_directory(backend: RocksDBStateBackend) -> None:
    store = open_store(backend)
    store.put(b"k", b"v")
    assert store.working_dir.is_dir()
    store.close()
    assert not store.working_dir.exists()


def test_snapshot_layout_and_metadata(backend: RocksDBStateBackend, tmp_path: Path) -> None:
    store = open_store(backend)
    store.put(b"k", b"v")
    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    store.snapshot(snapshot)
    meta = json.loads((snapshot / SNAPSHOT_META).read_text())
    assert meta["backend"] == "rocksdb"
    listed = set(meta["files"])
    assert listed == {p.name for p in (snapshot / SNAPSHOT_DB).iterdir()}
    assert any(name.endswith(".sst") for name in listed)


def test_snapshot_on_a_full_disk_says_to_free_space_or_move_the_directories(
    backend: RocksDBStateBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FullDisk:
        def __init__(self, db: object) -> None:
            pass

        def create_checkpoint(self, path: str) -> None:
            raise Exception(f"IO error: No space left on device: While appending to file: {path}/000009.sst")

    store = open_store(backend)
    store.put(b"k", b"v")
    monkeypatch.setattr(rocksdict, "Checkpoint", FullDisk)
    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    with pytest.raises(CheckpointError) as info:
        store.snapshot(snapshot)
    message = str(info.value)
    assert f"to {snapshot}: IO error: No space left on device" in message
    assert f"working database in {store.working_dir}" in message
    assert "Free space (a full disk is the usual cause)" in message
    assert "CheckpointConfig(storage=...) or RocksDBStateBackend(directory=...)" in message
    assert "must" not in message and "empty" not in message
    monkeypatch.undo()
    store.snapshot(snapshot)  # the store stays usable once there is room
    assert (snapshot / SNAPSHOT_META).exists()


def test_snapshots_share_unchanged_files_and_restore_links_them(tmp_path: Path) -> None:
    backend = RocksDBStateBackend(tmp_path / "full", changelog_snapshots=0)  # every snapshot is full
    store = open_store(backend)
    for i in range(20000):
        store.put(b"k%06d" % i, b"v" * 50)
    first, second = tmp_path / "s1", tmp_path / "s2"
    first.mkdir()
    second.mkdir()
    store.snapshot(first)
    store.put(b"later", b"x")
    store.snapshot(second)
    first_ssts = {p.name: p.stat().st_ino for p in (first / SNAPSHOT_DB).glob("*.sst")}
    second_ssts = {p.name: p.stat().st_ino for p in (second / SNAPSHOT_DB).glob("*.sst")}
    assert first_ssts and set(first_ssts) < set(second_ssts)
    assert all(second_ssts[name] == inode for name, inode in first_ssts.items())

    restored = open_store(backend, "restored", restore_from=second)
    restored_ssts = {p.name: p.stat().st_ino for p in restored.working_dir.glob("*.sst")}
    assert restored_ssts == second_ssts  # hard links, not copies
    assert restored.get(b"later") == b"x"
    restored.put(b"k000000", b"changed")
    third = tmp_path / "s3"
    third.mkdir()
    restored.snapshot(third)
    restored.close()
    again = open_store(backend, "again", restore_from=second)  # the restored store did not touch it
    assert again.get(b"k000000") == b"v" * 50


def test_checksums_are_verified_on_restore_unless_disabled(tmp_path: Path) -> None:
    writer = RocksDBStateBackend(tmp_path / "w")
    store = open_store(writer)
    for i in range(20000):
        store.put(b"k%06d" % i, os.urandom(50))
    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    store.snapshot(snapshot)
    writer.close()
    sst = max((snapshot / SNAPSHOT_DB).glob("*.sst"), key=lambda p: p.stat().st_size)
    data = bytearray(sst.read_bytes())
    data[len(data) // 3] ^= 0x01  # one flipped bit inside a data block: RocksDB only notices on read
    tmp = sst.with_suffix(".tmp")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, sst)

    checking = RocksDBStateBackend(tmp_path / "c")
    with pytest.raises(SnapshotCorruptError, match="checksum"):
        checking.open("orders-0", restore_from=snapshot)
    checking.close()
    trusting = RocksDBStateBackend(tmp_path / "t", verify_restore_checksums=False)
    trusting.open("orders-0", restore_from=snapshot).close()  # opens: the damage is found later, on read
    trusting.close()
