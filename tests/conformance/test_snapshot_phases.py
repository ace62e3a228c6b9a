"""The two parts of a store snapshot (KeyedStateStore.begin_snapshot / StateSnapshot.write): the
synchronous part fixes the state, the asynchronous part writes it from another thread while the
store keeps serving reads and writes. Every backend must pass this."""

from __future__ import annotations

import threading

from eventapp.state.store import KeyedStateStore, StateSnapshot
from tests.conformance.conftest import BackendFactory, DirFactory
from tests.conformance.test_store_conformance import fill, random_entries, restore


def write_in_thread(
    snapshot: StateSnapshot, directory: object
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            snapshot.write(directory)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_writes_after_begin_are_not_in_the_snapshot_but_are_in_the_store(
    store: KeyedStateStore, make_backend: BackendFactory, snapshot_dir: DirFactory
) -> None:
    entries = random_entries(seed=11, count=3_000)
    fill(store, entries)
    snapshot = store.begin_snapshot()
    assert isinstance(snapshot, StateSnapshot)
    # The store is used while the snapshot is written in another thread.
    directory = snapshot_dir()
    thread, errors = write_in_thread(snapshot, directory)
    changed = dict(entries)
    for i, key in enumerate(list(entries)[:1_000]):
        if i % 3 == 0:
            store.delete(key)
            del changed[key]
        else:
            store.put(key, b"after-" + key)
            changed[key] = b"after-" + key
    for i in range(500):
        store.put(b"\x01new-%04d" % i, b"n")
        changed[b"\x01new-%04d" % i] = b"n"
    for key in list(changed)[:50]:
        assert store.get(key) == changed[key]
    thread.join()
    assert not errors, errors
    assert restore(make_backend(), directory) == sorted(entries.items()), (
        "the snapshot is of begin_snapshot()"
    )
    assert list(store.scan(b"")) == sorted(changed.items()), "the store has every write"


def test_ordered_reads_during_a_snapshot_see_the_latest_writes(
    store: KeyedStateStore, make_backend: BackendFactory, snapshot_dir: DirFactory
) -> None:
    fill(store, {b"t\x00%03d" % i: b"" for i in range(0, 100, 10)})
    snapshot = store.begin_snapshot()
    directory = snapshot_dir()
    # Written by another thread: a store may make ordered reads wait for it.
    thread, errors = write_in_thread(snapshot, directory)
    store.put(b"t\x00005", b"")
    store.delete(b"t\x00000")
    store.delete_prefix(b"t\x0009")
    assert store.first(b"t\x00") == (b"t\x00005", b"")
    assert [k for k, _ in store.scan(b"t\x00")] == [
        b"t\x00%03d" % i for i in (5, 10, 20, 30, 40, 50, 60, 70, 80)
    ]
    thread.join()
    assert not errors, errors
    assert [k for k, _ in restore(make_backend(), directory)] == [b"t\x00%03d" % i for i in range(0, 100, 10)]


def test_a_released_snapshot_lets_the_next_one_begin(
    store: KeyedStateStore, make_backend: BackendFactory, snapshot_dir: DirFactory
) -> None:
    store.put(b"a", b"1")
    store.begin_snapshot().release()
    store.put(b"b", b"2")
    snapshot = store.begin_snapshot()
    store.put(b"c", b"3")
    directory = snapshot_dir()
    snapshot.write(directory)
    snapshot.release()  # after writing: does nothing
    assert restore(make_backend(), directory) == [(b"a", b"1"), (b"b", b"2")]
    assert store.get(b"c") == b"3"


def test_snapshots_in_turn_each_hold_their_moment(
    store: KeyedStateStore, make_backend: BackendFactory, snapshot_dir: DirFactory
) -> None:
    moments = []
    for round_ in range(4):
        store.put(b"k", b"%d" % round_)
        store.put(b"r%d" % round_, b"x")
        snapshot = store.begin_snapshot()
        store.put(b"k", b"later")
        directory = snapshot_dir()
        thread, errors = write_in_thread(snapshot, directory)
        thread.join()
        assert not errors, errors
        moments.append(directory)
    for round_, directory in enumerate(moments):
        expected = sorted([(b"k", b"%d" % round_)] + [(b"r%d" % i, b"x") for i in range(round_ + 1)])
        assert restore(make_backend(), directory) == expected
