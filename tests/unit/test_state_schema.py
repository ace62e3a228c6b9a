"""State schemas and their compatibility rules (pure logic: no store)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from eventapp import (
    DataclassSerializer,
    JsonSerializer,
    ListStateDescriptor,
    MapStateDescriptor,
    MsgpackSerializer,
    StateSchemaError,
    StateTtlConfig,
    ValueStateDescriptor,
)
from eventapp.state.schema import StateSchema, plan_migration, schema_of


@dataclass
class V1:
    count: int
    note: str = ""


@dataclass
class Added:
    count: int
    note: str = ""
    label: str = "none"
    tags: list[str] = field(default_factory=list)


@dataclass
class Removed:
    count: int


@dataclass
class Required:
    count: int
    label: str


@dataclass
class Retyped:
    count: float
    note: str = ""


@dataclass
class Renamed:
    total: float


def old(serializer: object, **kwargs: object) -> StateSchema:
    return schema_of(ValueStateDescriptor("s", serializer=serializer, **kwargs))  # type: ignore[arg-type]


def plan(before: StateSchema, descriptor: object) -> object:
    return plan_migration("op", "s", before, descriptor)  # type: ignore[arg-type]


def test_schema_round_trips_through_json() -> None:
    schema = schema_of(
        MapStateDescriptor("m", value_serializer=DataclassSerializer(V1), ttl=StateTtlConfig(ttl_ms=5))
    )
    assert StateSchema.from_json(schema.to_json()) == schema
    assert schema.kind == "map" and schema.ttl and schema.key is not None
    assert schema.value.fields is not None
    assert [(f.name, f.type, f.has_default) for f in schema.value.fields] == [
        ("count", "int", False),
        ("note", "str", True),
    ]


def test_fields_added_with_defaults_or_removed_restore_as_is() -> None:
    before = old(DataclassSerializer(V1))
    assert plan(before, ValueStateDescriptor("s", serializer=DataclassSerializer(Added))) is None
    assert plan(before, ValueStateDescriptor("s", serializer=DataclassSerializer(Removed))) is None
    assert plan(before, ValueStateDescriptor("s", serializer=DataclassSerializer(V1))) is None


def test_a_field_added_without_default_is_refused_naming_operator_state_and_field() -> None:
    with pytest.raises(
        StateSchemaError, match=r"operator 'op', state 's': field 'label' was added without a default"
    ):
        plan(
            old(DataclassSerializer(V1)), ValueStateDescriptor("s", serializer=DataclassSerializer(Required))
        )


def test_a_field_that_changed_type_is_refused() -> None:
    with pytest.raises(StateSchemaError, match=r"field 'count' changed type from int to float"):
        plan(old(DataclassSerializer(V1)), ValueStateDescriptor("s", serializer=DataclassSerializer(Retyped)))


def test_a_raised_version_with_upgrade_migrates_each_value() -> None:
    def upgrade(fields: dict[str, object], version: int) -> dict[str, object]:
        assert version == 1
        return {"total": float(fields["count"]) * 2}  # type: ignore[arg-type]

    new = DataclassSerializer(Renamed, version=2, upgrade=upgrade)
    migrate = plan(old(DataclassSerializer(V1)), ValueStateDescriptor("s", serializer=new))
    assert callable(migrate)
    stored = DataclassSerializer(V1).dumps(V1(21))
    assert new.loads(migrate(stored)) == Renamed(42.0)


def test_a_raised_version_without_upgrade_is_refused() -> None:
    with pytest.raises(StateSchemaError, match=r"pass upgrade=function\(fields, from_version\)"):
        plan(
            old(DataclassSerializer(V1)),
            ValueStateDescriptor("s", serializer=DataclassSerializer(Renamed, version=2)),
        )


def test_state_written_by_a_newer_version_is_refused() -> None:
    with pytest.raises(StateSchemaError, match=r"written by version 3 .* newer than this code's version 1"):
        plan(
            old(DataclassSerializer(V1, version=3)),
            ValueStateDescriptor("s", serializer=DataclassSerializer(V1)),
        )


class Upper:
    """A custom serializer: version 2 stores upper case, and reads version 1 (lower case)."""

    version = 2

    def dumps(self, value: str) -> bytes:
        return value.upper().encode()

    def loads(self, data: bytes) -> str:
        return data.decode()

    def loads_version(self, data: bytes, version: int) -> str:
        return data.decode() if version == 2 else data.decode().lower()


class Lower:
    def dumps(self, value: str) -> bytes:
        return value.encode()

    def loads(self, data: bytes) -> str:
        return data.decode()


def test_custom_serializers_are_named_by_class_and_migrate_through_loads_version() -> None:
    before = old(Lower())
    assert before.value.name.endswith("test_state_schema.Lower") and before.value.version == 1
    # Another class is another serializer.
    with pytest.raises(
        StateSchemaError, match=r"written by .*Lower \(version 1\) and are now read by .*Upper"
    ):
        plan(before, ValueStateDescriptor("s", serializer=Upper()))
    v1 = StateSchema(
        before.kind, before.ttl, type(before.value)(before.value.name.replace("Lower", "Upper"), 1)
    )
    migrate = plan(v1, ValueStateDescriptor("s", serializer=Upper()))
    assert callable(migrate) and migrate(b"abc") == b"ABC"


def test_kind_serializer_ttl_and_map_key_changes_are_refused() -> None:
    value = old(MsgpackSerializer())
    with pytest.raises(StateSchemaError, match=r"was a value state and is declared as a list state"):
        plan(value, ListStateDescriptor("s"))
    with pytest.raises(
        StateSchemaError, match=r"MsgpackSerializer \(version 1\) and are now read by JsonSerializer"
    ):
        plan(value, ValueStateDescriptor("s", serializer=JsonSerializer()))
    with pytest.raises(StateSchemaError, match=r"written without a TTL and is now declared with one"):
        plan(value, ValueStateDescriptor("s", ttl=StateTtlConfig(ttl_ms=1000)))
    map_schema = schema_of(MapStateDescriptor("s"))
    with pytest.raises(StateSchemaError, match=r"map keys .* cannot be migrated"):
        plan(map_schema, MapStateDescriptor("s", key_serializer=JsonSerializer()))
