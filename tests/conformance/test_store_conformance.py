"""Store-level conformance: every :class:`StateBackend` must behave exactly like this.

Runs once per backend (see ``conftest.py``). Order is bytewise (RocksDB's default comparator), so the
expected results are always computed with Python's ``sorted`` over ``bytes``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eventapp.errors import CheckpointError, SnapshotCorruptError
from eventapp.state.store import KeyedStateStore, StateBackend, prefix_successor

# Keys chosen to trip up anything that is not a plain bytewise order: empty key, NUL and 0xff bytes,
# keys that are prefixes of each other, and keys straddling an all-0xff prefix.
EDGE_KEYS = [
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x00\xff",
    b"\x01",
    b"a",
    b"a\x00",
    b"a\x00\x00",
    b"a\x01",
    b"a\x7f",
    b"a\x80",
    b"a\xfe\xff",
    b"a\xff",
    b"a\xff\x00",
    b"a\xff\xff",
    b"a\xff\xff\x00",
    b"b",
    b"b\x00",
    b"\x7f",
    b"\x80",
    b"\xfe",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\xff",
]


SCOPE = "orders-0"  # the scope of the ``store`` fixture
BackendFactory = Callable[[], StateBackend]
DirFactory = Callable[[], Path]


def fill(store: KeyedStateStore, entries: dict[bytes, bytes]) -> None:
    for key, value in entries.items():
        store.put(key, value)


def contents(store: KeyedStateStore) -> list[tuple[bytes, bytes]]:
    return list(store.scan(b""))


def expected_scan(
    entries: dict[bytes, bytes], prefix: bytes, start: bytes | None = None
) -> list[tuple[bytes, bytes]]:
    lower = prefix if start is None else start
    return sorted((k, v) for k, v in entries.items() if k.startswith(prefix) and k >= lower)


def random_entries(seed: int, count: int, *, max_key: int = 12, max_value: int = 40) -> dict[bytes, bytes]:
    rng = random.Random(seed)
    alphabet = [0x00, 0x01, 0x61, 0x62, 0x7F, 0x80, 0xFE, 0xFF]  # few symbols: many shared prefixes
    entries: dict[bytes, bytes] = {}
    while len(entries) < count:
        key = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, max_key)))
        entries[key] = rng.randbytes(rng.randint(0, max_value))
    return entries


# --- protocol -----------------------------------------------------------------------------------


def test_backend_and_store_implement_the_protocols(backend: StateBackend, store: KeyedStateStore) -> None:
    assert isinstance(backend, StateBackend)
    assert isinstance(store, KeyedStateStore)
    assert backend.name in {"memory", "rocksdb"}


# --- point operations ---------------------------------------------------------------------------


def test_get_put_overwrite_delete(store: KeyedStateStore) -> None:
    assert store.get(b"k") is None
    store.put(b"k", b"v1")
    assert store.get(b"k") == b"v1"
    store.put(b"k", b"v2")
    assert store.get(b"k") == b"v2"
    assert contents(store) == [(b"k", b"v2")]
    store.delete(b"k")
    assert store.get(b"k") is None
    assert contents(store) == []


def test_empty_value_is_not_a_missing_value(store: KeyedStateStore) -> None:
    store.put(b"k", b"")
    assert store.get(b"k") == b""
    assert store.first(b"k") == (b"k", b"")


def test_delete_of_a_missing_key_does_nothing(store: KeyedStateStore) -> None:
    store.put(b"a", b"1")
    store.delete(b"missing")
    store.delete(b"a")
    store.delete(b"a")
    assert contents(store) == []


def test_keys_and_values_with_every_byte_value_round_trip(store: KeyedStateStore) -> None:
    key = bytes(range(256))
    value = bytes(range(255, -1, -1)) * 4
    store.put(key, value)
    assert store.get(key) == value
    assert store.get(key[:-1]) is None


def test_large_values(store: KeyedStateStore) -> None:
    value = random.Random(1).randbytes(3 << 20)
    store.put(b"big", value)
    assert store.get(b"big") == value


# --- delete_prefix ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix", [b"a", b"a\x00", b"a\xff", b"a\xff\xff", b"\x00", b"\xff", b"\xff\xff", b"", b"zz"], ids=repr
)
def test_delete_prefix_removes_exactly_the_prefixed_keys(store: KeyedStateStore, prefix: bytes) -> None:
    entries = {key: b"v" + key for key in EDGE_KEYS}
    fill(store, entries)
    store.delete_prefix(prefix)
    remaining = {k: v for k, v in entries.items() if not k.startswith(prefix)}
    assert contents(store) == sorted(remaining.items())
    for key in entries:
        assert store.get(key) == remaining.get(key)


def test_keys_can_be_written_again_after_delete_prefix(store: KeyedStateStore) -> None:
    fill(store, {b"p1": b"x", b"p2": b"y"})
    store.delete_prefix(b"p")
    store.put(b"p2", b"z")
    assert contents(store) == [(b"p2", b"z")]


# --- scan and first -----------------------------------------------------------------------------


def test_scan_everything_is_bytewise_ascending(store: KeyedStateStore) -> None:
    shuffled = list(EDGE_KEYS)
    random.Random(7).shuffle(shuffled)
    for key in shuffled:
        store.put(key, key[::-1])
    assert [k for k, _ in store.scan(b"")] == sorted(EDGE_KEYS)
    assert contents(store) == [(k, k[::-1]) for k in sorted(EDGE_KEYS)]


@pytest.mark.parametrize(
    "prefix", [b"a", b"a\x00", b"a\xff", b"a\xff\xff", b"\x00", b"\xff", b"\xff\xff", b"b", b"c"], ids=repr
)
def test_scan_prefix_returns_only_prefixed_keys_in_order(store: KeyedStateStore, prefix: bytes) -> None:
    entries = {key: b"v" + key for key in EDGE_KEYS}
    fill(store, entries)
    assert list(store.scan(prefix)) == expected_scan(entries, prefix)


def test_scan_random_keys_matches_sorted(store: KeyedStateStore) -> None:
    entries = random_entries(seed=3, count=3000)
    fill(store, entries)
    assert contents(store) == sorted(entries.items())
    for prefix in [b"\x00", b"\xff", b"a\xff", b"\xff\xff", b"\x7f\x80", b"b\x00\xfe"]:
        assert list(store.scan(prefix)) == expected_scan(entries, prefix), prefix


def test_timer_shaped_keys_scan_in_timestamp_order(store: KeyedStateStore) -> None:
    prefix = b"tops\x00e"
    stamps = [0, 1, 255, 256, 65535, 2**32, 2**40 + 5, 2**63 - 1, 2**63, 2**64 - 1]
    shuffled = list(stamps)
    random.Random(11).shuffle(shuffled)
    for ts in shuffled:
        store.put(prefix + ts.to_bytes(8, "big") + b"key", b"")
    store.put(b"tops\x00f", b"")  # the next domain: must not appear in the scan
    assert [int.from_bytes(k[len(prefix) : len(prefix) + 8], "big") for k, _ in store.scan(prefix)] == stamps


@pytest.mark.parametrize(
    "prefix,start",
    [
        (b"a", b"a"),  # start == prefix
        (b"a", b"a\x00"),  # start is an existing key: inclusive
        (b"a", b"a\x02"),  # start between keys
        (b"a", b"a\xff"),
        (b"a", b"a\xff\xff\xff"),  # after every prefixed key
        (b"a\xff", b"a\xff\x00"),
        (b"\xff", b"\xff\x00"),
        (b"\xff\xff", b"\xff\xff\x00"),
        (b"", b"a\x80"),
    ],
    ids=repr,
)
def test_scan_with_start(store: KeyedStateStore, prefix: bytes, start: bytes) -> None:
    entries = {key: b"v" + key for key in EDGE_KEYS}
    fill(store, entries)
    assert list(store.scan(prefix, start)) == expected_scan(entries, prefix, start)


def test_scan_is_lazy_and_can_be_abandoned(store: KeyedStateStore) -> None:
    fill(store, {b"k%03d" % i: b"v" for i in range(100)})
    scan = store.scan(b"k")
    assert next(scan) == (b"k000", b"v")
    assert next(scan) == (b"k001", b"v")
    del scan
    assert store.get(b"k050") == b"v"


def test_first(store: KeyedStateStore) -> None:
    assert store.first(b"") is None
    assert store.first(b"a") is None
    entries = {key: b"v" + key for key in EDGE_KEYS}
    fill(store, entries)
    for prefix in [b"", b"a", b"a\x00", b"a\xff", b"a\xff\xff", b"\xff", b"\xff\xff", b"\xff\xff\xff", b"b"]:
        matching = expected_scan(entries, prefix)
        assert store.first(prefix) == matching[0], prefix
    assert store.first(b"a\x02") is None  # later keys exist, but none with the prefix
    assert store.first(b"\xff\xff\xff\xff") is None
    store.delete(b"a")
    assert store.first(b"a") == (b"a\x00", b"va\x00")


def test_first_after_deleting_the_head_of_a_prefix(store: KeyedStateStore) -> None:
    fill(store, {b"t%05d" % i: b"" for i in range(2000)})
    for i in range(1999):
        store.delete(b"t%05d" % i)
    assert store.first(b"t") == (b"t01999", b"")
    store.delete(b"t01999")
    assert store.first(b"t") is None


def test_first_and_scan_see_keys_written_below_an_earlier_first(store: KeyedStateStore) -> None:
    # The timer pattern: ask for the smallest key, delete it, ask again; meanwhile register earlier
    # keys. A backend that remembers where the prefix starts must forget it when a smaller key comes.
    fill(store, {b"t5": b"5", b"t7": b"7", b"u1": b"u"})
    assert store.first(b"t") == (b"t5", b"5")
    store.put(b"t3", b"3")
    assert store.first(b"t") == (b"t3", b"3")
    store.delete(b"t3")
    store.delete(b"t5")
    assert store.first(b"t") == (b"t7", b"7")
    store.put(b"t", b"bare prefix")
    assert list(store.scan(b"t")) == [(b"t", b"bare prefix"), (b"t7", b"7")]
    assert list(store.scan(b"t", start=b"t0")) == [(b"t7", b"7")]
    store.delete_prefix(b"t")
    assert store.first(b"t") is None
    store.put(b"t9", b"9")
    store.put(b"t8", b"8")
    assert store.first(b"t") == (b"t8", b"8")
    assert list(store.scan(b"t", start=b"t")) == [(b"t8", b"8"), (b"t9", b"9")]


def test_first_over_many_prefixes_stays_correct(store: KeyedStateStore) -> None:
    prefixes = [b"p%02d" % i for i in range(40)]
    for prefix in prefixes:
        store.put(prefix + b"5", b"")
        assert store.first(prefix) == (prefix + b"5", b"")
    for prefix in prefixes:
        store.put(prefix + b"1", b"")
    for prefix in reversed(prefixes):
        assert store.first(prefix) == (prefix + b"1", b"")
        assert [k for k, _ in store.scan(prefix)] == [prefix + b"1", prefix + b"5"]


def test_popping_the_smallest_key_repeatedly_stays_fast(store: KeyedStateStore) -> None:
    # Deleted keys must not make first() slower and slower (RocksDB tombstones at a prefix's head).
    count = 20_000
    for i in range(count):
        store.put(b"t" + i.to_bytes(8, "big"), b"")
    store.put(b"u", b"")
    started = time.perf_counter()
    for i in range(count):
        entry = store.first(b"t")
        assert entry is not None and entry[0] == b"t" + i.to_bytes(8, "big")
        store.delete(entry[0])
    elapsed = time.perf_counter() - started
    assert store.first(b"t") is None
    assert elapsed < 5.0, (
        f"{count} first()+delete() took {elapsed:.1f} s: first() must not rescan deleted keys"
    )


# --- scopes -------------------------------------------------------------------------------------


def test_scopes_are_isolated(backend: StateBackend, store: KeyedStateStore) -> None:
    other = backend.open("orders-1")
    try:
        store.put(b"k", b"zero")
        other.put(b"k", b"one")
        other.put(b"only-in-one", b"x")
        assert store.get(b"k") == b"zero"
        assert other.get(b"k") == b"one"
        assert store.get(b"only-in-one") is None
        store.delete_prefix(b"")
        assert contents(store) == []
        assert contents(other) == [(b"k", b"one"), (b"only-in-one", b"x")]
    finally:
        other.close()


@pytest.mark.parametrize("scope", ["orders-3", "a/b", "../escape", "with space", "ünïcode", "."], ids=repr)
def test_any_printable_scope_name_works_and_stays_isolated(backend: StateBackend, scope: str) -> None:
    first = backend.open(scope)
    second = backend.open(scope + "x")
    try:
        first.put(b"k", scope.encode())
        assert second.get(b"k") is None
        assert first.get(b"k") == scope.encode()
    finally:
        first.close()
        second.close()


def test_reopening_a_scope_without_restore_discards_working_data(backend: StateBackend) -> None:
    first = backend.open(SCOPE)
    fill(first, {b"k%d" % i: b"v" for i in range(100)})
    first.close()
    reopened = backend.open(SCOPE)
    try:
        assert contents(reopened) == []
        assert reopened.get(b"k1") is None
    finally:
        reopened.close()


def test_closing_with_an_unfinished_scan_allows_reopening(backend: StateBackend) -> None:
    first = backend.open(SCOPE)
    fill(first, {b"a": b"1", b"b": b"2"})
    scan = first.scan(b"")
    assert next(scan) == (b"a", b"1")
    first.close()
    reopened = backend.open(SCOPE)
    try:
        reopened.put(b"c", b"3")
        assert contents(reopened) == [(b"c", b"3")]
    finally:
        reopened.close()


# --- snapshots ----------------------------------------------------------------------------------


def restore(backend: StateBackend, directory: Path, scope: str = SCOPE) -> list[tuple[bytes, bytes]]:
    restored = backend.open(scope, restore_from=directory)
    try:
        return contents(restored)
    finally:
        restored.close()


def test_snapshot_then_mutate_then_restore_gives_the_snapshot(
    store: KeyedStateStore, make_backend: BackendFactory, snapshot_dir: DirFactory
) -> None:
    entries = random_entries(seed=5, count=5000)
    fill(store, entries)
    for key in list(entries)[:500]:  # deletions before the snapshot must stay deleted
        store.delete(key)
        del entries[key]
    store.delete_prefix(b"\xff\xff")
    entries = {k: v for k, v in entries.items() if not k.startswith(b"\xff\xff")}
    directory = snapshot_dir()
    store.snapshot(directory)

    store.put(b"after", b"snapshot")
    store.delete(next(iter(entries)))
    store.delete_prefix(b"\x00")
    store.put(next(reversed(entries)), b"changed")

    assert restore(make_backend(), directory) == sorted(entries.items())


def test_restored_store_is_fully_usable(
    store: KeyedStateStore, backend: StateBackend, snapshot_dir: DirFactory
) -> None:
    fill(store, {b"a": b"1", b"b": b"2", b"c": b"3"})
    directory = snapshot_dir()
    store.snapshot(directory)
    restored = backend.open("orders-restored", restore_from=directory)
    try:
        assert restored.get(b"b") == b"2"
        restored.put(b"d", b"4")
        restored.delete(b"a")
        restored.delete_prefix(b"c")
        assert list(restored.scan(b"")) == [(b"b", b"2"), (b"d", b"4")]
        assert restored.first(b"") == (b"b", b"2")
        again = snapshot_dir()
        restored.snapshot(again)
    finally:
        restored.close()
    assert restore(backend, again) == [(b"b", b"2"), (b"d", b"4")]


def test_store_stays_usable_after_snapshot(store: KeyedStateStore, snapshot_dir: DirFactory) -> None:
    store.put(b"a", b"1")
    store.snapshot(snapshot_dir())
    store.put(b"b", b"2")
    store.delete(b"a")
    assert contents(store) == [(b"b", b"2")]


def test_successive_snapshots_are_independent(
    store: KeyedStateStore, backend: StateBackend, make_backend: BackendFactory, snapshot_dir: DirFactory
) -> None:
    first_entries = random_entries(seed=8, count=2000)
    fill(store, first_entries)
    first = snapshot_dir()
    store.snapshot(first)

    second_entries = dict(first_entries)
    for key in list(second_entries)[::3]:
        store.delete(key)
        del second_entries[key]
    for key, value in random_entries(seed=9, count=500).items():
        store.put(key, value)
        second_entries[key] = value
    second = snapshot_dir()
    store.snapshot(second)

    store.delete_prefix(b"")  # the live store changes completely after both snapshots
    store.put(b"third", b"3")
    store.close()  # and goes away: the snapshots must not depend on its working files

    assert restore(make_backend(), second) == sorted(second_entries.items())
    assert restore(make_backend(), first) == sorted(first_entries.items())
    assert restore(backend, first, scope="other") == sorted(first_entries.items())


def test_snapshot_of_an_empty_store(
    store: KeyedStateStore, backend: StateBackend, snapshot_dir: DirFactory
) -> None:
    directory = snapshot_dir()
    store.snapshot(directory)
    assert any(directory.iterdir()), "a snapshot must write something, even for an empty store"
    restored = backend.open("orders-restored", restore_from=directory)
    try:
        assert contents(restored) == []
        assert restored.first(b"") is None
        restored.put(b"k", b"v")
        assert restored.get(b"k") == b"v"
    finally:
        restored.close()


def test_snapshot_after_everything_was_deleted(
    store: KeyedStateStore, make_backend: BackendFactory, snapshot_dir: DirFactory
) -> None:
    fill(store, random_entries(seed=10, count=1000))
    store.snapshot(snapshot_dir())
    store.delete_prefix(b"")
    directory = snapshot_dir()
    store.snapshot(directory)
    assert restore(make_backend(), directory) == []


def test_snapshot_holds_large_values(
    store: KeyedStateStore, make_backend: BackendFactory, snapshot_dir: DirFactory
) -> None:
    big = random.Random(2).randbytes(5 << 20)
    store.put(b"big", big)
    store.put(b"small", b"s")
    directory = snapshot_dir()
    store.snapshot(directory)
    assert restore(make_backend(), directory) == [(b"big", big), (b"small", b"s")]


def test_snapshot_into_a_missing_directory_raises_checkpoint_error(
    store: KeyedStateStore, tmp_path: Path
) -> None:
    store.put(b"k", b"v")
    with pytest.raises(CheckpointError, match="no-such-dir"):
        store.snapshot(tmp_path / "no-such-dir")
    assert store.get(b"k") == b"v"  # the store is still usable


# --- corrupt and missing snapshots --------------------------------------------------------------


def snapshot_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def rewrite(path: Path, data: bytes) -> None:
    """Replace ``path`` by a new file (never write in place: snapshot files may be hard links)."""
    tmp = path.with_name(path.name + ".corrupting")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def truncate_all(directory: Path) -> None:
    for path in snapshot_files(directory):
        rewrite(path, path.read_bytes()[: path.stat().st_size // 2])


def truncate_largest(directory: Path) -> None:
    path = max(snapshot_files(directory), key=lambda p: p.stat().st_size)
    rewrite(path, path.read_bytes()[:-1])


def flip_byte_in_largest(directory: Path) -> None:
    path = max(snapshot_files(directory), key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    rewrite(path, bytes(data))


def flip_byte_in_every_file(directory: Path) -> None:
    for path in snapshot_files(directory):
        data = bytearray(path.read_bytes())
        if data:
            data[len(data) // 2] ^= 0xFF
            rewrite(path, bytes(data))


def delete_all_files(directory: Path) -> None:
    for path in snapshot_files(directory):
        path.unlink()


def delete_largest(directory: Path) -> None:
    max(snapshot_files(directory), key=lambda p: p.stat().st_size).unlink()


def zero_every_file(directory: Path) -> None:
    for path in snapshot_files(directory):
        rewrite(path, bytes(path.stat().st_size))


CORRUPTIONS: list[Callable[[Path], None]] = [
    truncate_all,
    truncate_largest,
    flip_byte_in_largest,
    flip_byte_in_every_file,
    delete_all_files,
    delete_largest,
    zero_every_file,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_restoring_a_corrupt_snapshot_raises(
    store: KeyedStateStore,
    make_backend: BackendFactory,
    snapshot_dir: DirFactory,
    corrupt: Callable[[Path], None],
) -> None:
    fill(store, random_entries(seed=12, count=3000, max_value=200))
    directory = snapshot_dir()
    store.snapshot(directory)
    store.close()
    fresh = make_backend()
    assert len(restore(fresh, directory)) == 3000  # intact: restores fine

    corrupt(directory)
    with pytest.raises(SnapshotCorruptError) as raised:
        fresh.open(SCOPE, restore_from=directory)
    assert str(directory) in str(raised.value)

    # A failed restore leaves nothing behind: the scope opens empty afterwards.
    reopened = fresh.open(SCOPE)
    try:
        assert contents(reopened) == []
    finally:
        reopened.close()


def test_restoring_from_a_missing_directory_raises(backend: StateBackend, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-snapshot"
    with pytest.raises(SnapshotCorruptError, match="no-such-snapshot"):
        backend.open(SCOPE, restore_from=missing)


def test_restoring_from_an_empty_directory_raises(backend: StateBackend, snapshot_dir: DirFactory) -> None:
    with pytest.raises(SnapshotCorruptError):
        backend.open(SCOPE, restore_from=snapshot_dir())


def test_prefix_successor_bounds_the_prefix() -> None:
    # The helper both backends rely on for range bounds.
    for prefix in EDGE_KEYS:
        upper = prefix_successor(prefix)
        for key in EDGE_KEYS:
            if key.startswith(prefix):
                assert upper is None or key < upper
            elif key > prefix:
                assert upper is not None and key >= upper


def test_put_all_is_put_of_each_entry_and_survives_a_snapshot(
    store: KeyedStateStore, make_backend: BackendFactory, snapshot_dir: DirFactory
) -> None:
    store.put(b"k-cached", b"old")  # pending in a write-back cache, replaced by put_all
    store.put(b"k-kept", b"kept")
    bulk = random_entries(seed=9, count=120_000)  # more than one internal batch
    items = [*bulk.items(), (b"k-cached", b"new"), (b"k-dup", b"first"), (b"k-dup", b"second")]
    store.put_all(iter(items))  # any iterable, consumed once
    expected = {**bulk, b"k-cached": b"new", b"k-dup": b"second", b"k-kept": b"kept"}
    assert store.get(b"k-cached") == b"new" and store.get(b"k-dup") == b"second"
    assert contents(store) == sorted(expected.items())
    directory = snapshot_dir()
    store.snapshot(directory)
    assert restore(make_backend(), directory) == sorted(expected.items())
