"""Serializers (pure logic): the default is msgpack, never pickle; custom and dataclass serializers."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import pytest

from eventapp import (
    DataclassSerializer,
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    SerializationError,
    ValueStateDescriptor,
)


def test_default_state_serializer_is_msgpack_not_pickle() -> None:
    desc = ValueStateDescriptor[int]("v")
    assert isinstance(desc.serializer, MsgpackSerializer)
    data = desc.serializer.dumps({"a": [1, 2]})  # type: ignore[arg-type]
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(data)


def test_msgpack_round_trip_and_tuple_mode() -> None:
    ser = MsgpackSerializer[object]()
    value = {"s": "x", "b": b"\x00", "i": -(2**40), "f": 1.5, "n": None, "l": [1, (2, 3)]}
    assert ser.loads(ser.dumps(value)) == {**value, "l": [1, [2, 3]]}
    assert MsgpackSerializer[object](tuples=True).loads(ser.dumps((1, (2, 3)))) == (1, (2, 3))


def test_msgpack_refuses_unknown_types_with_a_hint() -> None:
    class Custom:
        pass

    with pytest.raises(SerializationError, match="use DataclassSerializer for dataclasses"):
        MsgpackSerializer[object]().dumps(Custom())
    with pytest.raises(SerializationError, match="cannot deserialize"):
        MsgpackSerializer[object]().loads(b"\xc1")


@dataclass
class Order:
    id: str
    amount: float
    tags: list[str] = field(default_factory=list)


@dataclass
class OrderV2:
    id: str
    amount: float
    tags: list[str] = field(default_factory=list)
    currency: str = "EUR"


def test_dataclass_serializer_round_trip_and_evolution() -> None:
    v1 = DataclassSerializer(Order)
    data = v1.dumps(Order("o-1", 9.5, ["x"]))
    assert v1.loads(data) == Order("o-1", 9.5, ["x"])
    # a field added with a default reads old data; unknown stored fields are ignored
    assert DataclassSerializer(OrderV2).loads(data) == OrderV2("o-1", 9.5, ["x"], "EUR")
    assert v1.loads(DataclassSerializer(OrderV2).dumps(OrderV2("o-2", 1.0))) == Order("o-2", 1.0)
    with pytest.raises(SerializationError, match="expected Order"):
        v1.dumps(OrderV2("o", 1.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a dataclass"):
        DataclassSerializer(int)


def test_json_and_pickle_are_available_explicitly() -> None:
    assert JsonSerializer[object]().loads(JsonSerializer[object]().dumps({"a": 1})) == {"a": 1}
    with pytest.raises(SerializationError, match="invalid JSON"):
        JsonSerializer[object]().loads(b"{")
    assert PickleSerializer[object]().loads(PickleSerializer[object]().dumps({1, 2})) == {1, 2}
