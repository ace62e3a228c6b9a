"""Fixtures of the state backend conformance suite: every test here runs against every backend.

* ``backend``: a fresh :class:`~eventapp.state.store.StateBackend`, parametrized over
  :data:`BACKENDS` (test ids ``[memory]`` and ``[rocksdb]``). RocksDB works in ``tmp_path``.
* ``store``: ``backend.open("orders-0")``, closed after the test (do not close it in the test).
* ``make_backend``: ``make_backend() -> StateBackend``, another fresh instance of the same kind, with
  its own working directory: use it to restore "in another process".
* ``snapshot_dir``: ``snapshot_dir() -> Path``, a new empty directory for ``store.snapshot``.

Add backend-agnostic tests (state types, TTL, timers, ...) as ``test_*.py`` files in this folder and
request ``backend`` or ``store``; a new backend only needs a branch in :func:`new_backend`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventapp.state.store import KeyedStateStore, StateBackend
from eventapp.statebackends import MemoryStateBackend, RocksDBStateBackend

#: ``rocksdb`` has its default write-back cache; ``rocksdb-tiny-cache`` (3 entries: writes go back to
#: RocksDB and the cache starts over all the time) and ``rocksdb-no-cache`` run the same suite through
#: the other paths of the store.
BACKENDS = ["memory", "rocksdb", "rocksdb-tiny-cache", "rocksdb-no-cache"]
SCOPE = "orders-0"

BackendFactory = Callable[[], StateBackend]
DirFactory = Callable[[], Path]


def new_backend(kind: str, work_dir: Path) -> StateBackend:
    """A fresh backend of ``kind``; ``work_dir`` is an empty directory it may use."""
    if kind == "memory":
        return MemoryStateBackend()
    if kind.startswith("rocksdb"):
        cache = {
            "rocksdb": {},
            "rocksdb-tiny-cache": {"cache_entries": 3},
            "rocksdb-no-cache": {"cache_entries": 0},
        }
        # Small memory settings keep many parallel test backends cheap.
        return RocksDBStateBackend(
            work_dir,
            block_cache_bytes=8 << 20,
            write_buffer_bytes=4 << 20,
            total_write_buffer_bytes=16 << 20,
            **cache[kind],
        )
    raise AssertionError(f"unknown backend kind {kind!r}")


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test (one of :data:`BACKENDS`)."""
    kind: str = request.param
    return kind


@pytest.fixture
def make_backend(backend_kind: str, tmp_path: Path) -> Iterator[BackendFactory]:
    """``make_backend()``: a new backend of the kind under test, closed (if closable) after the test."""
    made: list[StateBackend] = []
    counter = itertools.count()

    def make() -> StateBackend:
        work_dir = tmp_path / f"{backend_kind}-work-{next(counter)}"
        work_dir.mkdir()
        made.append(new_backend(backend_kind, work_dir))
        return made[-1]

    yield make
    for instance in reversed(made):
        close = getattr(instance, "close", None)
        if close is not None:
            close()


@pytest.fixture
def backend(make_backend: BackendFactory) -> StateBackend:
    """A fresh :class:`StateBackend` of the kind under test."""
    return make_backend()


@pytest.fixture
def store(backend: StateBackend) -> Iterator[KeyedStateStore]:
    """An empty store for scope ``"orders-0"`` of ``backend``, closed after the test."""
    opened = backend.open(SCOPE)
    yield opened
    opened.close()


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> DirFactory:
    """``snapshot_dir()``: a new, empty directory to pass to :meth:`KeyedStateStore.snapshot`."""
    counter = itertools.count()

    def make() -> Path:
        path = tmp_path / f"snapshot-{next(counter)}"
        path.mkdir()
        return path

    return make
