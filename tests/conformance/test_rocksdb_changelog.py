"""RocksDB changelog snapshots (eventapp.statebackends.rocksdb_snapshot): a snapshot after a full one
hard-links its files and adds the entries changed since; every ``changelog_snapshots + 1``-th is full
again; anything the changelog cannot describe (a range deletion, too many changes, a snapshot that
was not written) makes the next one full; restoring applies the changelog on the checkpoint."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from eventapp.errors import SnapshotCorruptError
from eventapp.statebackends import RocksDBStateBackend, RocksDBStateStore
from eventapp.statebackends.rocksdb_snapshot import SNAPSHOT_CHANGELOG, SNAPSHOT_DB, SNAPSHOT_META


def backend(tmp_path: Path, name: str = "work", **settings: int) -> RocksDBStateBackend:
    return RocksDBStateBackend(
        tmp_path / name, block_cache_bytes=8 << 20, write_buffer_bytes=4 << 20, **settings
    )


def open_store(made: RocksDBStateBackend, restore_from: Path | None = None) -> RocksDBStateStore:
    store = made.open("orders-0", restore_from)
    assert isinstance(store, RocksDBStateStore)
    return store


def snapshot(store: RocksDBStateStore, tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    store.snapshot(directory)
    return directory


def meta(directory: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((directory / SNAPSHOT_META).read_text())
    return loaded


def changelog_of(directory: Path) -> list[str]:
    return [item["name"] for item in meta(directory)["changelog"]]  # type: ignore[attr-defined,index]


def contents(made: RocksDBStateBackend, directory: Path) -> dict[bytes, bytes]:
    store = made.open("restored", directory)
    try:
        return dict(store.scan(b""))
    finally:
        store.close()


def test_snapshots_after_a_full_one_write_only_the_changes_and_restore_exactly(tmp_path: Path) -> None:
    made = backend(tmp_path, changelog_snapshots=3)
    store = open_store(made)
    expected = {b"k%05d" % i: b"v" for i in range(5_000)}
    for key, value in expected.items():
        store.put(key, value)
    snapshots = [snapshot(store, tmp_path, "s0")]
    for round_ in range(1, 10):
        store.put(b"k%05d" % round_, b"round-%d" % round_)
        store.delete(b"k%05d" % (100 + round_))
        store.put(b"new-%d" % round_, b"n")
        expected[b"k%05d" % round_] = b"round-%d" % round_
        del expected[b"k%05d" % (100 + round_)]
        expected[b"new-%d" % round_] = b"n"
        snapshots.append(snapshot(store, tmp_path, f"s{round_}"))
        assert contents(backend(tmp_path, f"r{round_}"), snapshots[-1]) == expected, f"snapshot {round_}"
    lengths = [len(changelog_of(s)) for s in snapshots]
    # Full, then changelog snapshots (the first chain may be shorter), full again, 3 changelog ones.
    assert lengths[0] == 0 and max(lengths) <= 3
    assert all(b in (a + 1, 0) for a, b in itertools.pairwise(lengths)), lengths
    second_full = lengths.index(0, 1)
    assert lengths[second_full : second_full + 5] == [0, 1, 2, 3, 0], lengths
    full, first, second = snapshots[second_full : second_full + 3]
    full_db = {p.name: p.stat().st_ino for p in (full / SNAPSHOT_DB).iterdir()}
    first_db = {p.name: p.stat().st_ino for p in (first / SNAPSHOT_DB).iterdir()}
    assert first_db == full_db, "a changelog snapshot hard-links the full one's files"
    second_changes = {p.name: p.stat().st_ino for p in (second / SNAPSHOT_CHANGELOG).iterdir()}
    assert (first / SNAPSHOT_CHANGELOG / "000001.changes").stat().st_ino == second_changes["000001.changes"]
    store.close()


@pytest.mark.parametrize("cause", ["delete_prefix", "too many changes", "a snapshot released unwritten"])
def test_what_a_changelog_cannot_describe_makes_the_next_snapshot_full(tmp_path: Path, cause: str) -> None:
    made = backend(tmp_path, changelog_snapshots=5, changelog_entries=100)
    store = open_store(made)
    for i in range(50):
        store.put(b"a%03d" % i, b"1")
        store.put(b"b%03d" % i, b"2")
    snapshot(store, tmp_path, "s0")
    store.put(b"a000", b"changed")
    assert changelog_of(snapshot(store, tmp_path, "s1")) == ["000001.changes"]
    if cause == "delete_prefix":
        store.delete_prefix(b"b")
    elif cause == "too many changes":
        for i in range(101):
            store.put(b"c%03d" % i, b"3")
    else:
        store.begin_snapshot().release()
    store.put(b"a001", b"changed")
    after = snapshot(store, tmp_path, "s2")
    assert changelog_of(after) == [], f"after {cause} the snapshot is full"
    restored = contents(backend(tmp_path, "check"), after)
    assert restored[b"a001"] == b"changed" and restored[b"a000"] == b"changed"
    assert (b"b000" in restored) is (cause != "delete_prefix")
    store.close()


def test_the_splits_of_a_worker_do_not_all_take_their_full_snapshots_together(tmp_path: Path) -> None:
    made = backend(tmp_path, changelog_snapshots=9)
    first_full_again = set()
    for split in range(8):
        store = made.open(f"orders-{split}")
        assert isinstance(store, RocksDBStateStore)
        for n in range(11):
            store.put(b"k", b"%d" % n)
            if n and not changelog_of(snapshot(store, tmp_path, f"p{split}-{n}")):
                first_full_again.add(n)
                break
            if not n:
                snapshot(store, tmp_path, f"p{split}-{n}")
        store.close()
    assert len(first_full_again) > 1, "every split took its second full snapshot at the same checkpoint"


def test_a_restored_store_continues_the_chain_of_the_snapshot_it_came_from(tmp_path: Path) -> None:
    writer = backend(tmp_path, "writer", changelog_snapshots=4)
    store = open_store(writer)
    store.put(b"a", b"1")
    snapshot(store, tmp_path, "s0")
    store.put(b"b", b"2")
    s1 = snapshot(store, tmp_path, "s1")
    store.close()

    reader = backend(tmp_path, "reader", changelog_snapshots=4)
    again = open_store(reader, restore_from=s1)
    assert dict(again.scan(b"")) == {b"a": b"1", b"b": b"2"}
    again.put(b"c", b"3")
    s2 = snapshot(again, tmp_path, "s2")
    assert changelog_of(s2) == ["000001.changes", "000002.changes"]
    assert contents(backend(tmp_path, "check"), s2) == {b"a": b"1", b"b": b"2", b"c": b"3"}
    again.close()


def test_a_damaged_changelog_file_refuses_the_restore(tmp_path: Path) -> None:
    made = backend(tmp_path, changelog_snapshots=2)
    store = open_store(made)
    store.put(b"a", b"1")
    snapshot(store, tmp_path, "s0")
    store.put(b"a", b"2")
    s1 = snapshot(store, tmp_path, "s1")
    store.close()
    changes = s1 / SNAPSHOT_CHANGELOG / "000001.changes"
    data = bytearray(changes.read_bytes())
    data[-5] ^= 0x01
    changes.unlink()  # a hard link: replace it, do not write through it
    changes.write_bytes(bytes(data))
    with pytest.raises(SnapshotCorruptError, match="checksum"):
        backend(tmp_path, "check").open("orders-0", s1)
