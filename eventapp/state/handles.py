"""Keyed state types, implemented once on top of :class:`~eventapp.state.store.KeyedStateStore`.

Every access resolves the current split's store and the current key from a :class:`KeyContext`,
so a handle obtained in ``open()`` is valid for every key and every split the operator sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import msgpack

from eventapp.errors import StateError
from eventapp.serialization import Serializer
from eventapp.state.context import KeyContext
from eventapp.state.descriptors import (
    AggregateFunction,
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    StateTtlConfig,
    StateVisibility,
    TtlTimeDomain,
    TtlUpdateType,
    ValueStateDescriptor,
)
from eventapp.state.keys import decode_timestamp, encode_timestamp, state_prefix
from eventapp.state.store import KeyedStateStore

__all__ = [
    "AggregatingState",
    "KeyedState",
    "ListState",
    "MapState",
    "ReducingState",
    "ValueState",
    "rewrite_payloads",
]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")


_LIST_PACKER = msgpack.Packer(use_bin_type=True)


class _TtlClock:
    """Reads and writes the 8-byte access timestamp that prefixes TTL'd values."""

    __slots__ = ("_cfg", "_ctx", "_event_time")

    def __init__(self, cfg: StateTtlConfig, context: KeyContext) -> None:
        self._cfg = cfg
        self._ctx = context
        self._event_time = cfg.time_domain is TtlTimeDomain.EVENT_TIME

    def access_time(self) -> int:
        ex = self._ctx
        if self._event_time:
            return ex.timestamp if ex.timestamp is not None else ex.watermark
        return ex.clock.now_ms()

    def now(self) -> int:
        ex = self._ctx
        return ex.watermark if self._event_time else ex.clock.now_ms()

    def stamp(self, payload: bytes) -> bytes:
        return encode_timestamp(self.access_time()) + payload

    def is_expired(self, data: bytes) -> bool:
        return decode_timestamp(data[:8]) + self._cfg.ttl_ms <= self.now()

    @property
    def returns_expired(self) -> bool:
        return self._cfg.visibility is StateVisibility.RETURN_EXPIRED_IF_NOT_CLEANED_UP

    @property
    def update_on_read(self) -> bool:
        return self._cfg.update_type is TtlUpdateType.ON_READ_AND_WRITE


class KeyedState:
    """Base of every state handle: resolves the entry key of the current key."""

    __slots__ = ("_ctx", "_prefix", "_ttl", "descriptor")

    def __init__(self, uid: str, descriptor: StateDescriptor[Any], context: KeyContext) -> None:
        self.descriptor = descriptor
        self._prefix = state_prefix(uid, descriptor.name)
        self._ctx = context
        self._ttl = _TtlClock(descriptor.ttl, context) if descriptor.ttl is not None else None

    @property
    def prefix(self) -> bytes:
        """Common prefix of every entry of this state (all keys) in the store."""
        return self._prefix

    def _outside_keyed_context(self) -> StateError:
        return StateError(
            f"state {self.descriptor.name!r} was used outside of a keyed context; use it only in "
            f"process_element() or on_timer() of a KeyedProcessFunction"
        )

    def _store(self) -> KeyedStateStore:
        store = self._ctx.store
        if store is None or self._ctx.key_part is None:
            raise self._outside_keyed_context()
        return store

    def _entry(self) -> bytes:
        key_part = self._ctx.key_part
        if key_part is None:
            raise self._outside_keyed_context()
        return self._prefix + key_part

    # --- single-value entries (value, reducing, aggregating, map entries) -------------------------
    def _read(self, store: KeyedStateStore, entry: bytes) -> bytes | None:
        data = store.get(entry)
        if data is None or self._ttl is None:
            return data
        ttl = self._ttl
        if ttl.is_expired(data):
            if not ttl.returns_expired:
                store.delete(entry)
                return None
        elif ttl.update_on_read:
            store.put(entry, ttl.stamp(data[8:]))
        return data[8:]

    def _write(self, store: KeyedStateStore, entry: bytes, payload: bytes) -> None:
        store.put(entry, payload if self._ttl is None else self._ttl.stamp(payload))

    def clear(self) -> None:
        """Remove the current key's value."""
        self._store().delete(self._entry())

    # --- TTL cleanup ---------------------------------------------------------------------------------
    def cleanup_expired(self, store: KeyedStateStore, entry: bytes, data: bytes) -> None:
        """Remove ``entry`` (or its expired parts) if it has expired. Called by incremental cleanup."""
        if self._ttl is not None and self._ttl.is_expired(data):
            store.delete(entry)


class ValueState(KeyedState, Generic[T]):
    """One value per key (Flink's ValueState)."""

    __slots__ = ("_default", "_ser")

    def __init__(self, uid: str, descriptor: ValueStateDescriptor[T], context: KeyContext) -> None:
        super().__init__(uid, descriptor, context)
        self._ser: Serializer[T] = descriptor.serializer
        self._default = descriptor.default

    # value() and update() are on every record's path: they inline _store/_entry/_read/_write.
    def value(self) -> T | None:
        """The current key's value, or the descriptor's default when there is none."""
        ctx = self._ctx
        store, part = ctx.store, ctx.key_part
        if store is None or part is None:
            raise self._outside_keyed_context()
        entry = self._prefix + part
        data = store.get(entry) if self._ttl is None else self._read(store, entry)
        return self._default if data is None else self._ser.loads(data)

    def update(self, value: T | None) -> None:
        """Set the current key's value; ``None`` clears it."""
        ctx = self._ctx
        store, part = ctx.store, ctx.key_part
        if store is None or part is None:
            raise self._outside_keyed_context()
        entry = self._prefix + part
        if value is None:
            store.delete(entry)
        elif self._ttl is None:
            store.put(entry, self._ser.dumps(value))
        else:
            self._write(store, entry, self._ser.dumps(value))


class ReducingState(KeyedState, Generic[T]):
    """A value per key that :meth:`add` folds new values into with the reduce function."""

    __slots__ = ("_reduce", "_ser")

    def __init__(self, uid: str, descriptor: ReducingStateDescriptor[T], context: KeyContext) -> None:
        super().__init__(uid, descriptor, context)
        self._ser: Serializer[T] = descriptor.serializer
        assert descriptor.reduce_function is not None
        self._reduce: Callable[[T, T], T] = descriptor.reduce_function

    def get(self) -> T | None:
        store = self._store()
        data = self._read(store, self._entry())
        return None if data is None else self._ser.loads(data)

    def add(self, value: T) -> None:
        store = self._store()
        entry = self._entry()
        data = self._read(store, entry)
        new = value if data is None else self._reduce(self._ser.loads(data), value)
        self._write(store, entry, self._ser.dumps(new))


class AggregatingState(KeyedState, Generic[IN, ACC, OUT]):
    """A per-key accumulator of an :class:`~eventapp.AggregateFunction`."""

    __slots__ = ("_agg", "_ser")

    def __init__(
        self, uid: str, descriptor: AggregatingStateDescriptor[IN, ACC, OUT], context: KeyContext
    ) -> None:
        super().__init__(uid, descriptor, context)
        assert descriptor.aggregate_function is not None
        self._agg: AggregateFunction[IN, ACC, OUT] = descriptor.aggregate_function
        self._ser: Serializer[ACC] = descriptor.serializer

    def get(self) -> OUT | None:
        """The aggregate's result, or ``None`` when nothing was added for the key."""
        store = self._store()
        data = self._read(store, self._entry())
        return None if data is None else self._agg.get_result(self._ser.loads(data))

    def add(self, value: IN) -> None:
        store = self._store()
        entry = self._entry()
        data = self._read(store, entry)
        acc = self._agg.create_accumulator() if data is None else self._ser.loads(data)
        self._write(store, entry, self._ser.dumps(self._agg.add(value, acc)))


class ListState(KeyedState, Generic[T]):
    """A list per key. Stored as one entry; with TTL each element carries its own timestamp."""

    __slots__ = ("_ser",)

    def __init__(self, uid: str, descriptor: ListStateDescriptor[T], context: KeyContext) -> None:
        super().__init__(uid, descriptor, context)
        self._ser: Serializer[T] = descriptor.serializer

    def _load_raw(self, store: KeyedStateStore, entry: bytes) -> list[Any]:
        data = store.get(entry)
        return [] if data is None else list(msgpack.unpackb(data, raw=False))

    def _visible(self, store: KeyedStateStore, entry: bytes) -> list[bytes]:
        raw = self._load_raw(store, entry)
        ttl = self._ttl
        if ttl is None:
            return raw
        now = ttl.now()
        limit = descriptor_ttl_ms(self)
        alive = [item for item in raw if decode_timestamp(item[0]) + limit > now]
        shown = raw if ttl.returns_expired else alive
        if ttl.update_on_read and shown:
            stamp = encode_timestamp(ttl.access_time())
            self._store_raw(store, entry, [[stamp, item[1]] for item in shown])
        elif len(alive) != len(raw) and not ttl.returns_expired:
            self._store_raw(store, entry, alive)
        return [item[1] for item in shown]

    def _store_raw(self, store: KeyedStateStore, entry: bytes, items: list[Any]) -> None:
        if items:
            store.put(entry, _LIST_PACKER.pack(items))
        else:
            store.delete(entry)

    def _wrap(self, values: Iterable[T]) -> list[Any]:
        dumps = self._ser.dumps
        if self._ttl is None:
            return [dumps(v) for v in values]
        stamp = encode_timestamp(self._ttl.access_time())
        return [[stamp, dumps(v)] for v in values]

    def get(self) -> list[T]:
        """The current key's elements (an empty list when there are none)."""
        store = self._store()
        loads = self._ser.loads
        return [loads(b) for b in self._visible(store, self._entry())]

    def add(self, value: T) -> None:
        self.add_all((value,))

    def add_all(self, values: Iterable[T]) -> None:
        store = self._store()
        entry = self._entry()
        items = self._load_raw(store, entry)
        items.extend(self._wrap(values))
        self._store_raw(store, entry, items)

    def update(self, values: Iterable[T]) -> None:
        """Replace the current key's elements."""
        store = self._store()
        self._store_raw(store, self._entry(), self._wrap(values))

    def cleanup_expired(self, store: KeyedStateStore, entry: bytes, data: bytes) -> None:
        if self._ttl is None:
            return
        now = self._ttl.now()
        limit = descriptor_ttl_ms(self)
        raw = list(msgpack.unpackb(data, raw=False))
        alive = [item for item in raw if decode_timestamp(item[0]) + limit > now]
        if len(alive) != len(raw):
            self._store_raw(store, entry, alive)


def descriptor_ttl_ms(state: KeyedState) -> int:
    ttl = state.descriptor.ttl
    assert ttl is not None
    return ttl.ttl_ms


class MapState(KeyedState, Generic[K, V]):
    """A map per key; each entry is stored (and expires) on its own."""

    __slots__ = ("_kser", "_vser")

    def __init__(self, uid: str, descriptor: MapStateDescriptor[K, V], context: KeyContext) -> None:
        super().__init__(uid, descriptor, context)
        self._kser: Serializer[K] = descriptor.key_serializer
        self._vser: Serializer[V] = descriptor.value_serializer

    def get(self, key: K) -> V | None:
        store = self._store()
        data = self._read(store, self._entry() + self._kser.dumps(key))
        return None if data is None else self._vser.loads(data)

    def put(self, key: K, value: V) -> None:
        store = self._store()
        self._write(store, self._entry() + self._kser.dumps(key), self._vser.dumps(value))

    def put_all(self, entries: Iterable[tuple[K, V]] | dict[K, V]) -> None:
        pairs = entries.items() if isinstance(entries, dict) else entries
        for k, v in pairs:
            self.put(k, v)

    def remove(self, key: K) -> None:
        self._store().delete(self._entry() + self._kser.dumps(key))

    def contains(self, key: K) -> bool:
        return self.get(key) is not None

    def _entries(self) -> list[tuple[bytes, bytes]]:
        store = self._store()
        entry = self._entry()
        raw = list(store.scan(entry))
        if self._ttl is None:
            return [(k[len(entry) :], v) for k, v in raw]
        out: list[tuple[bytes, bytes]] = []
        for k, _ in raw:
            data = self._read(store, k)
            if data is not None:
                out.append((k[len(entry) :], data))
        return out

    def items(self) -> Iterator[tuple[K, V]]:
        """A snapshot of the current key's entries; the map may be changed while iterating."""
        kl, vl = self._kser.loads, self._vser.loads
        return iter([(kl(k), vl(v)) for k, v in self._entries()])

    def keys(self) -> Iterator[K]:
        kl = self._kser.loads
        return iter([kl(k) for k, _ in self._entries()])

    def values(self) -> Iterator[V]:
        vl = self._vser.loads
        return iter([vl(v) for _, v in self._entries()])

    def is_empty(self) -> bool:
        return not self._entries()

    def clear(self) -> None:
        self._store().delete_prefix(self._entry())


def rewrite_payloads(kind: str, ttl: bool, data: bytes, rewrite: Callable[[bytes], bytes]) -> bytes:
    """``data`` (one stored entry of a state of ``kind``) with each serialized value in it passed
    through ``rewrite``; TTL stamps are kept. For schema migrations."""
    if kind == "list":
        items = list(msgpack.unpackb(data, raw=False))
        if ttl:
            return _LIST_PACKER.pack([[stamp, rewrite(payload)] for stamp, payload in items])
        return _LIST_PACKER.pack([rewrite(payload) for payload in items])
    if ttl:
        return data[:8] + rewrite(data[8:])
    return rewrite(data)
