"""The cache a closed RocksDB store swaps in: every use raises :class:`StateError`."""

from __future__ import annotations

from eventapp.errors import StateError

__all__ = ["ClosedCache"]


class ClosedCache(dict[bytes, bytes | None]):
    """The cache of a closed store: every use raises (no check on the hot path of an open one)."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self._scope = scope

    def _closed(self) -> StateError:
        return StateError(f"the RocksDB store of scope {self._scope!r} is closed")

    def get(self, key: bytes, default: object = None) -> bytes | None:
        raise self._closed()

    def __setitem__(self, key: bytes, value: bytes | None) -> None:
        raise self._closed()
