"""A store wrapper that can undo the writes of one record (used by the dead-letter policy)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from eventapp.state.store import KeyedStateStore, StateSnapshot

__all__ = ["JournaledStore"]


class JournaledStore:
    """Remembers the first previous value of every key written since the last :meth:`commit`,
    so that :meth:`rollback` restores the store to that point. Costs one read per first write."""

    __slots__ = ("_journal", "inner")

    def __init__(self, inner: KeyedStateStore) -> None:
        self.inner = inner
        self._journal: dict[bytes, bytes | None] = {}

    def _remember(self, key: bytes) -> None:
        if key not in self._journal:
            self._journal[key] = self.inner.get(key)

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._remember(key)
        self.inner.put(key, value)

    def put_all(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        for key, value in entries:
            self.put(key, value)

    def delete(self, key: bytes) -> None:
        self._remember(key)
        self.inner.delete(key)

    def delete_prefix(self, prefix: bytes) -> None:
        for key, value in list(self.inner.scan(prefix)):
            if key not in self._journal:
                self._journal[key] = value
        self.inner.delete_prefix(prefix)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(prefix, start)

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        return self.inner.first(prefix)

    def snapshot(self, directory: Path) -> None:
        self.inner.snapshot(directory)

    def begin_snapshot(self) -> StateSnapshot:
        return self.inner.begin_snapshot()

    def close(self) -> None:
        self.inner.close()

    def commit(self) -> None:
        self._journal.clear()

    def rollback(self) -> None:
        for key, old in self._journal.items():
            if old is None:
                self.inner.delete(key)
            else:
                self.inner.put(key, old)
        self._journal.clear()
