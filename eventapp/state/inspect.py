"""Read the keyed state and timers of an operator from a store (for example a restored snapshot),
outside a running job: for tests, tools and savepoint inspection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from eventapp.clock import Clock, SystemClock
from eventapp.functions import TimeDomain
from eventapp.state.contents import read_state
from eventapp.state.context import KeyContext
from eventapp.state.descriptors import StateDescriptor
from eventapp.state.keys import (
    EVENT_TIME,
    MAX_TIMESTAMP,
    PROCESSING_TIME,
    decode_key,
    decode_timestamp,
    encode_key,
    state_prefix,
    timer_prefix,
)
from eventapp.state.registry import StateRegistry
from eventapp.state.store import KeyedStateStore

__all__ = ["StateInspector"]


class StateInspector:
    """Keyed state of operator ``uid`` in ``store``.

    TTL is evaluated against ``clock`` and a watermark of +infinity unless given, and reading never
    writes (expired values are reported as absent but not removed).
    """

    def __init__(
        self,
        store: KeyedStateStore,
        uid: str,
        *,
        clock: Clock | None = None,
        watermark: int = MAX_TIMESTAMP,
    ) -> None:
        self._store = store
        self._uid = uid
        self._ctx = KeyContext(clock or SystemClock())
        self._read_only = _ReadOnlyStore(store)
        self._ctx.watermark = watermark
        self._registry = StateRegistry(uid, self._ctx)

    def get(self, descriptor: StateDescriptor[Any], key: Any) -> Any:
        """The state's value for ``key``: a value, a list, a dict or an aggregate result."""
        self._ctx.enter(self._read_only, "", key, encode_key(key), None)
        handle = self._registry.get(descriptor)
        return read_state(handle)

    def keys(self, descriptor: StateDescriptor[Any]) -> Iterator[Any]:
        """Every key that has an entry in the state (expired or not), in storage order."""
        prefix = state_prefix(self._uid, descriptor.name)
        last: bytes | None = None
        for entry, _ in self._store.scan(prefix):
            n = int.from_bytes(entry[len(prefix) : len(prefix) + 4], "big")
            kb = entry[len(prefix) + 4 : len(prefix) + 4 + n]
            if kb != last:
                last = kb
                yield decode_key(kb)

    def items(self, descriptor: StateDescriptor[Any]) -> Iterator[tuple[Any, Any]]:
        for key in list(self.keys(descriptor)):
            yield key, self.get(descriptor, key)

    def timers(self, domain: TimeDomain) -> list[tuple[int, Any]]:
        """Pending timers of ``domain`` as ``(timestamp, key)``, in firing order."""
        prefix = timer_prefix(self._uid, EVENT_TIME if domain is TimeDomain.EVENT_TIME else PROCESSING_TIME)
        out: list[tuple[int, Any]] = []
        for entry, _ in self._store.scan(prefix):
            ts = decode_timestamp(entry[len(prefix) : len(prefix) + 8])
            out.append((ts, decode_key(entry[len(prefix) + 8 :])))
        return out


class _ReadOnlyStore:
    """Lets TTL'd reads run without removing or refreshing anything."""

    __slots__ = ("_inner",)

    def __init__(self, inner: KeyedStateStore) -> None:
        self._inner = inner

    def get(self, key: bytes) -> bytes | None:
        return self._inner.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        return None

    def put_all(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        return None

    def delete(self, key: bytes) -> None:
        return None

    def delete_prefix(self, prefix: bytes) -> None:
        return None

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self._inner.scan(prefix, start)

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        return self._inner.first(prefix)

    def snapshot(self, directory: Any) -> None:
        raise TypeError("a read-only store cannot be snapshotted")

    def begin_snapshot(self) -> Any:
        raise TypeError("a read-only store cannot be snapshotted")

    def close(self) -> None:
        return None
