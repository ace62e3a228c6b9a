"""Conformance: every state type, scoped per key, on every backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eventapp import (
    AggregateFunction,
    AggregatingStateDescriptor,
    ListStateDescriptor,
    ManualClock,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateError,
    ValueStateDescriptor,
)
from eventapp.state.context import KeyContext
from eventapp.state.keys import encode_key
from eventapp.state.registry import StateRegistry
from eventapp.state.store import KeyedStateStore


class Keyed:
    """State handles over a real store, with a settable current key."""

    def __init__(self, store: KeyedStateStore, uid: str = "op") -> None:
        self.clock = ManualClock(1_000)
        self.store = store
        #: The key context state handles read (tests set its timestamp and watermark).
        self.execution = KeyContext(self.clock)
        self.registry = StateRegistry(uid, self.execution)

    def key(self, key: Any) -> Keyed:
        timestamp = self.execution.timestamp
        self.execution.enter(self.store, "orders-0", key, encode_key(key), timestamp)
        return self

    def get(self, descriptor: Any) -> Any:
        return self.registry.get(descriptor)


@pytest.fixture
def keyed(store: KeyedStateStore) -> Iterator[Keyed]:
    yield Keyed(store)


def test_value_state_default_update_and_clear(keyed: Keyed) -> None:
    state = keyed.key("a").get(ValueStateDescriptor[int]("count", default=0))
    assert state.value() == 0
    state.update(5)
    assert state.value() == 5
    keyed.key("b")
    assert state.value() == 0, "state must be scoped to the current key"
    state.update(7)
    keyed.key("a")
    assert state.value() == 5
    state.clear()
    assert state.value() == 0
    keyed.key("b")
    assert state.value() == 7


def test_value_state_update_none_clears(keyed: Keyed) -> None:
    state = keyed.key(1).get(ValueStateDescriptor[str]("name"))
    state.update("x")
    state.update(None)
    assert state.value() is None


def test_value_state_keeps_rich_values(keyed: Keyed) -> None:
    state = keyed.key(("acct", 7)).get(ValueStateDescriptor[Any]("v"))
    value = {"a": [1, 2.5, None, True], "b": b"\x00\xff", "nested": {"k": "v"}}
    state.update(value)
    assert state.value() == value


def test_keys_of_different_types_do_not_collide(keyed: Keyed) -> None:
    state = keyed.get(ValueStateDescriptor[str]("v"))
    for key in (1, "1", b"1", (1,), True, 1.5, None):
        keyed.key(key)
        state.update(repr(key))
    for key in (1, "1", b"1", (1,), True, 1.5, None):
        keyed.key(key)
        assert state.value() == repr(key)


def test_states_with_different_names_and_operators_are_isolated(store: KeyedStateStore) -> None:
    one = Keyed(store, uid="op-1").key("k")
    two = Keyed(store, uid="op-2").key("k")
    a = one.get(ValueStateDescriptor[int]("a"))
    b = one.get(ValueStateDescriptor[int]("b"))
    a_other_op = two.get(ValueStateDescriptor[int]("a"))
    a.update(1)
    b.update(2)
    a_other_op.update(3)
    assert (a.value(), b.value(), a_other_op.value()) == (1, 2, 3)


def test_list_state(keyed: Keyed) -> None:
    state = keyed.key("a").get(ListStateDescriptor[int]("items"))
    assert state.get() == []
    state.add(1)
    state.add_all([2, 3])
    assert state.get() == [1, 2, 3]
    keyed.key("b")
    assert state.get() == []
    state.update([9])
    keyed.key("a")
    assert state.get() == [1, 2, 3]
    state.update([])
    assert state.get() == []
    keyed.key("b")
    state.clear()
    assert state.get() == []


def test_map_state(keyed: Keyed) -> None:
    state = keyed.key("a").get(MapStateDescriptor[Any, int]("m"))
    assert state.is_empty()
    state.put("x", 1)
    state.put(("t", 2), 2)
    state.put_all({"y": 3, "z": 4})
    assert state.get("x") == 1 and state.get(("t", 2)) == 2
    assert state.contains("y") and not state.contains("nope")
    assert dict(state.items()) == {"x": 1, ("t", 2): 2, "y": 3, "z": 4}
    assert sorted(map(str, state.keys())) == sorted(map(str, ["x", ("t", 2), "y", "z"]))
    assert sorted(state.values()) == [1, 2, 3, 4]
    for k, _ in state.items():  # mutation while iterating is allowed (items() is a snapshot)
        state.remove(k)
    assert state.is_empty()
    state.put("x", 1)
    keyed.key("b")
    state.put("x", 100)
    keyed.key("a")
    state.clear()
    assert state.is_empty()
    keyed.key("b")
    assert dict(state.items()) == {"x": 100}, "clear() must only clear the current key"


def test_map_state_keys_that_prefix_each_other(keyed: Keyed) -> None:
    state = keyed.key("ab").get(MapStateDescriptor[str, int]("m"))
    state.put("c", 1)
    keyed.key("a")
    state.put("bc", 2)
    assert dict(state.items()) == {"bc": 2}
    keyed.key("ab")
    assert dict(state.items()) == {"c": 1}


def test_reducing_state(keyed: Keyed) -> None:
    state = keyed.key("a").get(ReducingStateDescriptor[int]("sum", reduce_function=lambda x, y: x + y))
    assert state.get() is None
    for v in (1, 2, 3):
        state.add(v)
    assert state.get() == 6
    keyed.key("b")
    state.add(10)
    assert state.get() == 10
    state.clear()
    assert state.get() is None
    keyed.key("a")
    assert state.get() == 6


class Average(AggregateFunction[float, list[float], float]):
    def create_accumulator(self) -> list[float]:
        return [0.0, 0.0]

    def add(self, value: float, accumulator: list[float]) -> list[float]:
        return [accumulator[0] + value, accumulator[1] + 1]

    def get_result(self, accumulator: list[float]) -> float:
        return accumulator[0] / accumulator[1]


def test_aggregating_state(keyed: Keyed) -> None:
    state = keyed.key("a").get(AggregatingStateDescriptor("avg", aggregate_function=Average()))
    assert state.get() is None
    state.add(1.0)
    state.add(3.0)
    assert state.get() == 2.0
    state.clear()
    assert state.get() is None


def test_state_outside_keyed_context_is_an_error(store: KeyedStateStore) -> None:
    keyed = Keyed(store)
    state = keyed.get(ValueStateDescriptor[int]("v"))
    with pytest.raises(StateError, match="outside of a keyed context"):
        state.value()


def test_same_name_with_another_descriptor_is_rejected(keyed: Keyed) -> None:
    from eventapp import ConfigurationError

    keyed.get(ValueStateDescriptor[int]("v"))
    with pytest.raises(ConfigurationError, match="two different descriptors"):
        keyed.get(ListStateDescriptor[int]("v"))


def test_custom_serializer(keyed: Keyed) -> None:
    class Upper:
        def dumps(self, value: str) -> bytes:
            return value.upper().encode()

        def loads(self, data: bytes) -> str:
            return data.decode()

    state = keyed.key("a").get(ValueStateDescriptor[str]("v", serializer=Upper()))
    state.update("hello")
    assert state.value() == "HELLO"


StateCheck = Callable[[Keyed], None]


def test_state_inspector_reads_values_keys_and_timers_without_writing(store: KeyedStateStore) -> None:
    from eventapp import StateTtlConfig, TimeDomain
    from eventapp.state.inspect import StateInspector
    from eventapp.state.keys import EVENT_TIME, encode_timestamp, timer_prefix

    keyed = Keyed(store)
    counts = ValueStateDescriptor[int]("count")
    items = MapStateDescriptor[str, int]("items")
    short = ValueStateDescriptor[int]("short", ttl=StateTtlConfig(ttl_ms=10))
    for key in ("b", "a", ("t", 1)):
        keyed.key(key).get(counts).update(len(str(key)))
        keyed.get(items).put("x", 1)
        keyed.get(items).put("y", 2)
    keyed.key("a").get(short).update(5)
    store.put(timer_prefix("op", EVENT_TIME) + encode_timestamp(7) + encode_key("b"), b"")

    inspector = StateInspector(store, "op", clock=ManualClock(10_000))
    assert sorted(map(str, inspector.keys(counts))) == sorted(map(str, ["a", "b", ("t", 1)]))
    assert len(list(inspector.keys(items))) == 3, "map entries of one key count once"
    assert inspector.get(counts, ("t", 1)) == len(str(("t", 1)))
    assert inspector.get(items, "a") == {"x": 1, "y": 2}
    assert inspector.get(short, "a") is None, "expired"
    assert list(store.scan(keyed.get(short).prefix)), "but not removed: the inspector never writes"
    assert inspector.timers(TimeDomain.EVENT_TIME) == [(7, "b")]
    assert inspector.timers(TimeDomain.PROCESSING_TIME) == []
