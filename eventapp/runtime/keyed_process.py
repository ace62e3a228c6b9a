"""The keyed process operator: runs a KeyedProcessFunction with its state, timers and outputs.

One operator instance serves every split of a task. The task sets the execution scope (split
store, record timestamp, watermark) before calling in; the operator sets the current key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from eventapp.errors import ConfigurationError, EventAppError, RecordProcessingError
from eventapp.functions import (
    Collector,
    KeyedProcessFunction,
    OnTimerContext,
    OutputTag,
    RuntimeContext,
    TimeDomain,
)
from eventapp.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from eventapp.state.handles import (
    AggregatingState,
    KeyedState,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)
from eventapp.state.keys import (
    EVENT_TIME,
    PROCESSING_TIME,
    decode_key,
    decode_timestamp,
    encode_key,
    encode_timestamp,
    key_part,
    timer_prefix,
)
from eventapp.state.scope import ExecutionScope, KeyedScope
from eventapp.state.store import KeyedStateStore

__all__ = ["Emit", "KeyedProcessOperator"]

Emit = Callable[[Any, "int | None"], None]
_NO_TIMERS = object()


class _StateRegistry:
    """Creates state handles on first use and checks that a name is used with one descriptor."""

    def __init__(self, uid: str, scope: KeyedScope) -> None:
        self._uid = uid
        self._scope = scope
        self._states: dict[str, KeyedState] = {}

    def get(self, descriptor: StateDescriptor[Any]) -> KeyedState:
        existing = self._states.get(descriptor.name)
        if existing is not None:
            if existing.descriptor != descriptor:
                raise ConfigurationError(
                    f"operator '{self._uid}' asked for state {descriptor.name!r} with two different "
                    f"descriptors ({existing.descriptor!r} and {descriptor!r}); give each state its "
                    f"own name"
                )
            return existing
        handle: KeyedState
        if isinstance(descriptor, ValueStateDescriptor):
            handle = ValueState(self._uid, descriptor, self._scope)
        elif isinstance(descriptor, ListStateDescriptor):
            handle = ListState(self._uid, descriptor, self._scope)
        elif isinstance(descriptor, MapStateDescriptor):
            handle = MapState(self._uid, descriptor, self._scope)
        elif isinstance(descriptor, ReducingStateDescriptor):
            handle = ReducingState(self._uid, descriptor, self._scope)
        elif isinstance(descriptor, AggregatingStateDescriptor):
            handle = AggregatingState(self._uid, descriptor, self._scope)
        else:
            raise ConfigurationError(f"unknown state descriptor type {type(descriptor).__name__}")
        self._states[descriptor.name] = handle
        return handle

    def ttl_states(self) -> list[KeyedState]:
        return [s for s in self._states.values() if s.descriptor.ttl is not None]


class _Timers:
    """Timers of one operator, stored in each split's store, with a per-split cache of the next
    timestamp so that checking for due timers does not touch the store."""

    def __init__(self, uid: str, scope: KeyedScope) -> None:
        self._scope = scope
        self.prefixes = {
            TimeDomain.EVENT_TIME: timer_prefix(uid, EVENT_TIME),
            TimeDomain.PROCESSING_TIME: timer_prefix(uid, PROCESSING_TIME),
        }
        # per domain: split -> next timestamp, or _NO_TIMERS; a missing split means "unknown".
        self._next: dict[TimeDomain, dict[str, Any]] = {d: {} for d in TimeDomain}

    def _current(self) -> tuple[KeyedStateStore, str, bytes]:
        ex = self._scope.execution
        if ex.store is None or ex.split is None or self._scope.key_bytes is None:
            raise EventAppError("timers can only be used while processing a keyed record or timer")
        return ex.store, ex.split, self._scope.key_bytes

    def register(self, domain: TimeDomain, timestamp: int) -> None:
        store, split, kb = self._current()
        store.put(self.prefixes[domain] + encode_timestamp(timestamp) + kb, b"")
        cache = self._next[domain]
        if split in cache:
            nxt = cache[split]
            if nxt is _NO_TIMERS or timestamp < nxt:
                cache[split] = timestamp

    def delete(self, domain: TimeDomain, timestamp: int) -> None:
        store, _, kb = self._current()
        store.delete(self.prefixes[domain] + encode_timestamp(timestamp) + kb)

    def forget(self, split: str) -> None:
        """Drop the cached next timestamps of a split (after restore or when it is unassigned)."""
        for cache in self._next.values():
            cache.pop(split, None)

    def pop_due(
        self, domain: TimeDomain, split: str, store: KeyedStateStore, limit: int
    ) -> tuple[int, bytes] | None:
        """Remove and return the earliest timer of ``split`` with timestamp ``<= limit``."""
        cache = self._next[domain]
        nxt = cache.get(split)
        if nxt is _NO_TIMERS or (nxt is not None and nxt > limit):
            return None
        prefix = self.prefixes[domain]
        first = store.first(prefix)
        if first is None:
            cache[split] = _NO_TIMERS
            return None
        entry = first[0]
        n = len(prefix)
        ts = decode_timestamp(entry[n : n + 8])
        if ts > limit:
            cache[split] = ts
            return None
        cache.pop(split, None)
        store.delete(entry)
        return ts, entry[n + 8 :]

    def count(self, domain: TimeDomain, store: KeyedStateStore) -> int:
        return sum(1 for _ in store.scan(self.prefixes[domain]))


class _TimerServiceImpl:
    __slots__ = ("_scope", "_timers")

    def __init__(self, timers: _Timers, scope: KeyedScope) -> None:
        self._timers = timers
        self._scope = scope

    def current_processing_time(self) -> int:
        return self._scope.execution.clock.now_ms()

    def current_watermark(self) -> int:
        return self._scope.execution.watermark

    def register_event_time_timer(self, timestamp: int) -> None:
        self._timers.register(TimeDomain.EVENT_TIME, int(timestamp))

    def register_processing_time_timer(self, timestamp: int) -> None:
        self._timers.register(TimeDomain.PROCESSING_TIME, int(timestamp))

    def delete_event_time_timer(self, timestamp: int) -> None:
        self._timers.delete(TimeDomain.EVENT_TIME, int(timestamp))

    def delete_processing_time_timer(self, timestamp: int) -> None:
        self._timers.delete(TimeDomain.PROCESSING_TIME, int(timestamp))


class _ContextImpl(OnTimerContext, RuntimeContext):
    """One object serves as runtime, element and timer context (they differ only in what is valid)."""

    __slots__ = ("_op", "domain")

    def __init__(self, op: KeyedProcessOperator) -> None:
        self._op = op
        self.domain: TimeDomain | None = None

    def get_state(self, descriptor: Any) -> Any:
        return self._op.states.get(descriptor)

    @property
    def job_name(self) -> str:
        return self._op.job_name

    @property
    def operator_uid(self) -> str:
        return self._op.uid

    @property
    def timestamp(self) -> int | None:
        return self._op.scope.execution.timestamp

    @property
    def current_key(self) -> Any:
        return self._op.scope.key

    @property
    def timer_service(self) -> _TimerServiceImpl:
        return self._op.timer_service

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        emit = self._op.side_outputs.get(tag)
        if emit is not None:
            emit(value, self._op.scope.execution.timestamp)

    @property
    def time_domain(self) -> TimeDomain:
        if self.domain is None:
            raise EventAppError("time_domain is only defined in on_timer()")
        return self.domain


class _CollectorImpl:
    __slots__ = ("_emit", "_execution")

    def __init__(self, emit: Emit, execution: ExecutionScope) -> None:
        self._emit = emit
        self._execution = execution

    def collect(self, value: Any) -> None:
        self._emit(value, self._execution.timestamp)


class KeyedProcessOperator:
    """Runs one :class:`KeyedProcessFunction` for every split of a task."""

    def __init__(
        self,
        *,
        job_name: str,
        uid: str,
        function: KeyedProcessFunction[Any, Any, Any],
        key_selector: Callable[[Any], Any],
        execution: ExecutionScope,
        emit: Emit,
        side_outputs: Mapping[OutputTag[Any], Emit],
    ) -> None:
        self.job_name = job_name
        self.uid = uid
        self.function = function
        self.key_selector = key_selector
        self.scope = KeyedScope(execution)
        self.states = _StateRegistry(uid, self.scope)
        self.timers = _Timers(uid, self.scope)
        self.timer_service = _TimerServiceImpl(self.timers, self.scope)
        self.side_outputs = side_outputs
        self._ctx = _ContextImpl(self)
        self._out: Collector[Any] = _CollectorImpl(emit, execution)
        self._cleanup_cursor: dict[tuple[str, str], bytes] = {}

    # --- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> None:
        try:
            self.function.open(self._ctx)
        except EventAppError:
            raise
        except Exception as exc:
            raise RecordProcessingError(
                operator=self.uid, key=None, record="<open>", split=None, position=None, cause=exc
            ) from exc

    def close(self) -> None:
        self.function.close()

    # --- records -----------------------------------------------------------------------------------
    def set_key(self, key: Any, key_bytes: bytes) -> None:
        scope = self.scope
        scope.key = key
        scope.key_bytes = key_bytes
        scope.key_part = key_part(key_bytes)

    def process(self, value: Any, timestamp: int | None) -> None:
        ex = self.scope.execution
        ex.timestamp = timestamp
        self.scope.key = None
        try:
            key = self.key_selector(value)
            self.set_key(key, encode_key(key))
            self._ctx.domain = None
            self.function.process_element(value, self._ctx, self._out)
        except RecordProcessingError:
            raise
        except Exception as exc:
            raise RecordProcessingError(
                operator=self.uid,
                key=self.scope.key,
                record=value,
                split=ex.split,
                position=ex.position,
                cause=exc,
            ) from exc

    # --- timers ------------------------------------------------------------------------------------
    def fire_timers(
        self,
        domain: TimeDomain,
        limit: int,
        stores: Mapping[str, KeyedStateStore],
        guard: Callable[[Callable[[], None], str, bytes], None] | None = None,
    ) -> int:
        """Fire every timer of ``domain`` with timestamp ``<= limit``, split by split, in timestamp
        order. ``guard(action, split, timer_key)`` wraps each firing (used by the dead-letter policy,
        which must consume the timer again after rolling back a failed firing)."""
        fired = 0
        ex = self.scope.execution
        for split, store in stores.items():
            while True:
                ex.store = store
                ex.split = split
                ex.position = None
                due = self.timers.pop_due(domain, split, store, limit)
                if due is None:
                    break
                ts, kb = due
                fired += 1
                if guard is None:
                    self._fire_one(domain, ts, kb)
                else:
                    guard(
                        functools.partial(self._fire_one, domain, ts, kb),
                        split,
                        self.restore_timer_key(domain, ts, kb),
                    )
        return fired

    def _fire_one(self, domain: TimeDomain, ts: int, kb: bytes) -> None:
        ex = self.scope.execution
        ex.timestamp = ts if domain is TimeDomain.EVENT_TIME else None
        key = decode_key(kb)
        self.set_key(key, kb)
        self._ctx.domain = domain
        try:
            self.function.on_timer(ts, self._ctx, self._out)
        except RecordProcessingError:
            raise
        except Exception as exc:
            raise RecordProcessingError(
                operator=self.uid,
                key=key,
                record=f"<{domain.value} timer @ {ts}>",
                split=ex.split,
                position=None,
                cause=exc,
            ) from exc
        finally:
            self._ctx.domain = None

    def restore_timer_key(self, domain: TimeDomain, ts: int, kb: bytes) -> bytes:
        """The store key of a timer (used to consume a failed timer after a rollback)."""
        return self.timers.prefixes[domain] + encode_timestamp(ts) + kb

    def forget_split(self, split: str) -> None:
        self.timers.forget(split)
        for k in [k for k in self._cleanup_cursor if k[0] == split]:
            del self._cleanup_cursor[k]

    # --- TTL cleanup -------------------------------------------------------------------------------
    def cleanup_expired_state(self, split: str, store: KeyedStateStore) -> int:
        """Visit up to ``cleanup_batch`` entries of each TTL state of ``split`` and drop the expired.
        Returns the number of entries visited."""
        visited = 0
        ex = self.scope.execution
        for state in self.states.ttl_states():
            ttl = state.descriptor.ttl
            assert ttl is not None
            if ttl.cleanup_batch == 0:
                continue
            cursor_key = (split, state.descriptor.name)
            start = self._cleanup_cursor.get(cursor_key)
            batch: list[tuple[bytes, bytes]] = []
            for item in store.scan(state.prefix, start):
                batch.append(item)
                if len(batch) > ttl.cleanup_batch:
                    break
            if len(batch) > ttl.cleanup_batch:
                self._cleanup_cursor[cursor_key] = batch.pop()[0]
            else:
                self._cleanup_cursor.pop(cursor_key, None)
            saved_ts = ex.timestamp
            ex.timestamp = None
            for entry, data in batch:
                state.cleanup_expired(store, entry, data)
            ex.timestamp = saved_ts
            visited += len(batch)
        return visited
