"""A keyed operator's timers, stored in each split's store, and the timer service functions use.

Both resolve the current split store and key through the operator's
:class:`~eventapp.state.context.KeyContext`.
"""

from __future__ import annotations

from typing import Any

from eventapp.errors import EventAppError
from eventapp.functions import TimeDomain
from eventapp.state.context import KeyContext
from eventapp.state.keys import EVENT_TIME, PROCESSING_TIME, decode_timestamp, encode_timestamp, timer_prefix
from eventapp.state.store import KeyedStateStore

__all__ = ["TimerServiceImpl", "Timers"]

_NO_TIMERS = object()


class Timers:
    """Timers of one operator, stored in each split's store, with a per-split cache of the next
    timestamp so that checking for due timers does not touch the store."""

    def __init__(self, uid: str, context: KeyContext) -> None:
        self._ctx = context
        self.prefixes = {
            TimeDomain.EVENT_TIME: timer_prefix(uid, EVENT_TIME),
            TimeDomain.PROCESSING_TIME: timer_prefix(uid, PROCESSING_TIME),
        }
        # per domain: split -> next timestamp, or _NO_TIMERS; a missing split means "unknown".
        self._next: dict[TimeDomain, dict[str, Any]] = {d: {} for d in TimeDomain}

    def _current(self) -> tuple[KeyedStateStore, str, bytes]:
        ctx = self._ctx
        if ctx.store is None or ctx.split is None or ctx.key_bytes is None:
            raise EventAppError("timers can only be used while processing a keyed record or timer")
        return ctx.store, ctx.split, ctx.key_bytes

    def key(self, domain: TimeDomain, timestamp: int, key_bytes: bytes) -> bytes:
        """The store key of a timer."""
        return self.prefixes[domain] + encode_timestamp(timestamp) + key_bytes

    def register(self, domain: TimeDomain, timestamp: int) -> None:
        store, split, kb = self._current()
        store.put(self.key(domain, timestamp, kb), b"")
        cache = self._next[domain]
        if split in cache:
            nxt = cache[split]
            if nxt is _NO_TIMERS or timestamp < nxt:
                cache[split] = timestamp

    def delete(self, domain: TimeDomain, timestamp: int) -> None:
        store, _, kb = self._current()
        store.delete(self.key(domain, timestamp, kb))

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


class TimerServiceImpl:
    __slots__ = ("_ctx", "_timers")

    def __init__(self, timers: Timers, context: KeyContext) -> None:
        self._timers = timers
        self._ctx = context

    def current_processing_time(self) -> int:
        return self._ctx.clock.now_ms()

    def current_watermark(self) -> int:
        return self._ctx.watermark

    def register_event_time_timer(self, timestamp: int) -> None:
        self._timers.register(TimeDomain.EVENT_TIME, int(timestamp))

    def register_processing_time_timer(self, timestamp: int) -> None:
        self._timers.register(TimeDomain.PROCESSING_TIME, int(timestamp))

    def delete_event_time_timer(self, timestamp: int) -> None:
        self._timers.delete(TimeDomain.EVENT_TIME, int(timestamp))

    def delete_processing_time_timer(self, timestamp: int) -> None:
        self._timers.delete(TimeDomain.PROCESSING_TIME, int(timestamp))
