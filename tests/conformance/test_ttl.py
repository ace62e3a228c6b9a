"""Conformance: state time-to-live, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from eventapp import (
    ConfigurationError,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    StateVisibility,
    TtlTimeDomain,
    TtlUpdateType,
    ValueStateDescriptor,
)
from eventapp.state.store import KeyedStateStore

from .test_state_types import Keyed

TTL = 100


def ttl(**kw: Any) -> StateTtlConfig:
    return StateTtlConfig(ttl_ms=TTL, **kw)


def test_ttl_config_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="positive number of milliseconds"):
        StateTtlConfig(ttl_ms=0)
    with pytest.raises(ConfigurationError, match="cleanup_batch"):
        StateTtlConfig(ttl_ms=1, cleanup_batch=-1)


def test_value_expires_after_ttl_on_processing_time(store: KeyedStateStore) -> None:
    keyed = Keyed(store).key("a")
    state = keyed.get(ValueStateDescriptor[int]("v", ttl=ttl()))
    state.update(1)
    keyed.clock.advance(TTL - 1)
    assert state.value() == 1
    keyed.clock.advance(1)
    assert state.value() is None
    assert store.get(state.prefix + keyed.execution.key_part) is None, "expired value is cleaned on read"


def test_on_create_and_write_does_not_refresh_on_read(store: KeyedStateStore) -> None:
    keyed = Keyed(store).key("a")
    state = keyed.get(ValueStateDescriptor[int]("v", ttl=ttl(update_type=TtlUpdateType.ON_CREATE_AND_WRITE)))
    state.update(1)
    keyed.clock.advance(60)
    assert state.value() == 1
    keyed.clock.advance(60)
    assert state.value() is None


def test_on_read_and_write_refreshes_on_read(store: KeyedStateStore) -> None:
    keyed = Keyed(store).key("a")
    state = keyed.get(ValueStateDescriptor[int]("v", ttl=ttl(update_type=TtlUpdateType.ON_READ_AND_WRITE)))
    state.update(1)
    keyed.clock.advance(60)
    assert state.value() == 1
    keyed.clock.advance(60)
    assert state.value() == 1, "the read at +60 refreshed the access time"
    keyed.clock.advance(TTL)
    assert state.value() is None


def test_write_refreshes(store: KeyedStateStore) -> None:
    keyed = Keyed(store).key("a")
    state = keyed.get(ValueStateDescriptor[int]("v", ttl=ttl()))
    state.update(1)
    keyed.clock.advance(60)
    state.update(2)
    keyed.clock.advance(60)
    assert state.value() == 2


def test_return_expired_if_not_cleaned_up(store: KeyedStateStore) -> None:
    keyed = Keyed(store).key("a")
    desc = ValueStateDescriptor[int](
        "v", ttl=ttl(visibility=StateVisibility.RETURN_EXPIRED_IF_NOT_CLEANED_UP)
    )
    state = keyed.get(desc)
    state.update(1)
    keyed.clock.advance(TTL * 2)
    assert state.value() == 1, "expired but not cleaned up yet: returned"


def test_event_time_ttl_uses_record_time_and_watermark(store: KeyedStateStore) -> None:
    keyed = Keyed(store).key("a")
    state = keyed.get(ValueStateDescriptor[int]("v", ttl=ttl(time_domain=TtlTimeDomain.EVENT_TIME)))
    keyed.execution.timestamp = 5_000
    state.update(1)
    keyed.clock.advance(10_000_000)  # processing time is irrelevant
    keyed.execution.watermark = 5_000 + TTL - 1
    assert state.value() == 1
    keyed.execution.watermark = 5_000 + TTL
    assert state.value() is None


def test_list_elements_expire_individually(store: KeyedStateStore) -> None:
    keyed = Keyed(store).key("a")
    state = keyed.get(ListStateDescriptor[int]("l", ttl=ttl()))
    state.add(1)
    keyed.clock.advance(60)
    state.add(2)
    keyed.clock.advance(60)
    assert state.get() == [2]
    keyed.clock.advance(60)
    assert state.get() == []


def test_map_entries_expire_individually(store: KeyedStateStore) -> None:
    keyed = Keyed(store).key("a")
    state = keyed.get(MapStateDescriptor[str, int]("m", ttl=ttl()))
    state.put("old", 1)
    keyed.clock.advance(60)
    state.put("new", 2)
    keyed.clock.advance(60)
    assert dict(state.items()) == {"new": 2}
    assert state.get("old") is None


def test_reducing_state_restarts_after_expiry(store: KeyedStateStore) -> None:
    keyed = Keyed(store).key("a")
    state = keyed.get(ReducingStateDescriptor[int]("s", reduce_function=lambda a, b: a + b, ttl=ttl()))
    state.add(5)
    keyed.clock.advance(TTL)
    state.add(1)
    assert state.get() == 1


def test_incremental_cleanup_removes_expired_entries_without_reads(store: KeyedStateStore) -> None:
    from eventapp.functions import KeyedProcessFunction
    from eventapp.runtime.keyed_process import KeyedProcessOperator
    from eventapp.runtime.operators import OperatorRuntime
    from eventapp.state.keys import encode_key

    class _Split:
        id = "orders-0"

        def __init__(self, store: KeyedStateStore) -> None:
            self.store = store
            self.schemas: dict[str, dict[str, object]] = {}

        def write(self, sink: int, value: object, timestamp: int | None) -> None:
            raise AssertionError("no sinks")

        def fire_timer(self, action: object, timestamp: int, timer_key: bytes) -> None:
            raise AssertionError("no timers")

    desc = ValueStateDescriptor[int]("v", ttl=StateTtlConfig(ttl_ms=TTL, cleanup_batch=3))
    keyed = Keyed(store)
    op = KeyedProcessOperator(name="op", uid="op", function=KeyedProcessFunction(), key_selector=lambda v: v)
    split = _Split(store)
    op.open(OperatorRuntime("j", keyed.clock, {split.id: split}))
    state = op.states.get(desc)
    for i in range(10):
        op.key_context.enter(store, split.id, i, encode_key(i), None)
        state.update(i)
    keyed.clock.advance(TTL)
    visits = 0
    while list(store.scan(state.prefix)):
        visits += 1
        op.cleanup_expired_state(split)
        assert visits < 20, "cleanup must make progress"
    assert visits >= 3, "cleanup is incremental: a few entries per step"
