"""The state backend seam: an ordered byte key-value store per scope.

eventapp implements every state type (value, list, map, reducing, aggregating), TTL and timers once,
on top of :class:`KeyedStateStore`. A backend only has to provide an ordered byte store per *scope*
(one scope per input split, for example one Kafka partition), a durable snapshot of it, and a way to
open a store from such a snapshot. Every backend must pass ``tests/conformance``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["KeyedStateStore", "StateBackend", "StateSnapshot", "default_state_backend", "prefix_successor"]


@runtime_checkable
class StateSnapshot(Protocol):
    """The asynchronous part of a store's snapshot (Flink's split of a snapshot into a synchronous
    and an asynchronous part): the state as it was when :meth:`KeyedStateStore.begin_snapshot`
    returned, written to disk by :meth:`write` while the store goes on being used."""

    def write(self, directory: Path) -> None:
        """Write the snapshot, durably, into the existing empty ``directory`` (as
        :meth:`KeyedStateStore.snapshot` would have at the moment the snapshot began). May run in
        another thread than the one using the store. Called at most once."""
        ...

    def release(self) -> None:
        """Give the snapshot up without writing it (its checkpoint failed). Writing releases too;
        releasing twice does nothing."""
        ...

    def stored_at(self, directory: Path) -> None:
        """The written snapshot now lives at ``directory`` (checkpoint storage moved it into place):
        a backend that builds its next snapshot from this one's files finds them there."""
        ...


@runtime_checkable
class KeyedStateStore(Protocol):
    """An ordered ``bytes -> bytes`` store holding one scope's keyed state and timers.

    Keys compare bytewise (like RocksDB's default comparator). A store is used by one thread.
    Callers never mutate the store while iterating over :meth:`scan`.
    """

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or ``None``."""
        ...

    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        ...

    def put_all(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """:meth:`put` of every ``(key, value)``, in bulk (restoring a savepoint loads this way)."""
        ...

    def delete(self, key: bytes) -> None:
        """Remove ``key``; removing a missing key does nothing."""
        ...

    def delete_prefix(self, prefix: bytes) -> None:
        """Remove every key that starts with ``prefix``."""
        ...

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with ``prefix``, in ascending key order.

        With ``start`` (which must itself start with ``prefix``), begin at the first key ``>= start``.
        """
        ...

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        """The entry with the smallest key starting with ``prefix``, or ``None``."""
        ...

    def snapshot(self, directory: Path) -> None:
        """Write a durable, self-contained snapshot of the whole store into ``directory``.

        ``directory`` exists and is empty. When this returns, the snapshot is on disk (fsynced) and
        :meth:`StateBackend.open` can restore from it, even after the process is killed. The store
        stays usable. Backends may share unchanged files between snapshots (hard links).
        Equivalent to ``begin_snapshot().write(directory)``.
        """
        ...

    def begin_snapshot(self) -> StateSnapshot:
        """Fix the store's current contents for a snapshot and return it, to be written later
        (from any thread) while this store keeps serving reads and writes; writes made after this
        returns are not in the snapshot. This is the part a checkpoint waits for, so it must be
        quick (RocksDB: write the cached entries back; memory: copy the entries). At most one
        snapshot is in progress per store: beginning another waits for the previous one. While one
        is in progress, a store may make ordered reads or writes that must reach its files wait
        for it (RocksDB does)."""
        ...

    def close(self) -> None:
        """Release resources. The store is not used after this."""
        ...


@runtime_checkable
class StateBackend(Protocol):
    """Opens one :class:`KeyedStateStore` per scope."""

    @property
    def name(self) -> str:
        """Short name for logs and metadata, for example ``"memory"`` or ``"rocksdb"``."""
        ...

    def open(self, scope: str, restore_from: Path | None = None) -> KeyedStateStore:
        """Open the store for ``scope``, empty or restored from a snapshot directory.

        ``scope`` is a printable identifier such as ``"orders-3"``. Opening replaces whatever working
        data an earlier process left for the same scope: the only durable state is a snapshot.
        Raises :class:`eventapp.errors.SnapshotCorruptError` when ``restore_from`` cannot be read.
        """
        ...


def prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (``None``: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def default_state_backend() -> StateBackend:
    """A new :class:`MemoryStateBackend`, the default of jobs and the test harness.

    Loaded by name: the core depends on the :class:`StateBackend` protocol only, never on the
    ``statebackends`` folder (which is mapped into ``eventapp.statebackends`` at install time).
    """
    backend = importlib.import_module("eventapp.statebackends.memory").MemoryStateBackend()
    assert isinstance(backend, StateBackend)
    return backend
