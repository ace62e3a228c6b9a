"""State schemas: what a state's stored bytes mean, recorded with every snapshot and checked at restore.

A :class:`StateSchema` names a state's kind (value, list, map, reducing, aggregating), whether it
has a TTL (which changes the stored layout) and its serializers as :class:`SerializerSchema`:
the serializer's name and version, and for :class:`~eventapp.DataclassSerializer` its fields.
Checkpoints (``split.json``) and savepoints (``_metadata``) record the schema of every state they
hold; when a restored job registers a state, :func:`plan_migration` compares the two (Flink's
``TypeSerializerSnapshot.resolveSchemaCompatibility``):

* *compatible as is*: same serializer and version; dataclass fields removed or added with defaults;
* *compatible after migration*: the serializer's version was raised and it can read the old one
  (``loads_version``; ``DataclassSerializer(upgrade=...)``): every stored value is rewritten once;
* *incompatible*: anything else, refused with a :class:`~eventapp.errors.StateSchemaError` naming the
  operator, state and field, before the state is used.

Schemas are plain JSON: nothing in them is imported or executed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eventapp.errors import StateSchemaError
from eventapp.serialization import (
    DataclassSerializer,
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
)
from eventapp.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)

__all__ = ["FieldSchema", "Migration", "SerializerSchema", "StateSchema", "plan_migration", "schema_of"]

#: Rewrites one stored payload (a serialized value, without its TTL stamp).
Migration = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class FieldSchema:
    """One field of a dataclass value."""

    name: str
    type: str
    has_default: bool


@dataclass(frozen=True, slots=True)
class SerializerSchema:
    """A serializer as recorded in a snapshot: its name, its version, and a dataclass's fields."""

    name: str
    version: int = 1
    fields: tuple[FieldSchema, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.fields is not None:
            data["fields"] = [[f.name, f.type, f.has_default] for f in self.fields]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SerializerSchema:
        fields = data.get("fields")
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            fields=None
            if fields is None
            else tuple(FieldSchema(str(n), str(t), bool(d)) for n, t, d in fields),
        )


@dataclass(frozen=True, slots=True)
class StateSchema:
    """What one state's entries hold."""

    kind: str
    ttl: bool
    value: SerializerSchema
    #: The map key's serializer (map state only).
    key: SerializerSchema | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "ttl": self.ttl, "value": self.value.to_json()}
        if self.key is not None:
            data["key"] = self.key.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StateSchema:
        key = data.get("key")
        return cls(
            kind=str(data["kind"]),
            ttl=bool(data["ttl"]),
            value=SerializerSchema.from_json(data["value"]),
            key=None if key is None else SerializerSchema.from_json(key),
        )


_KINDS: tuple[tuple[type[StateDescriptor[Any]], str], ...] = (
    (ValueStateDescriptor, "value"),
    (ListStateDescriptor, "list"),
    (MapStateDescriptor, "map"),
    (ReducingStateDescriptor, "reducing"),
    (AggregatingStateDescriptor, "aggregating"),
)


def schema_of(descriptor: StateDescriptor[Any]) -> StateSchema:
    """The schema of the state ``descriptor`` declares."""
    kind = next((name for cls, name in _KINDS if isinstance(descriptor, cls)), None)
    if kind is None:
        raise StateSchemaError(f"unknown state descriptor type {type(descriptor).__name__}")
    if isinstance(descriptor, MapStateDescriptor):
        return StateSchema(
            kind,
            descriptor.ttl is not None,
            serializer_schema(descriptor.value_serializer),
            serializer_schema(descriptor.key_serializer),
        )
    return StateSchema(kind, descriptor.ttl is not None, serializer_schema(value_serializer(descriptor)))


def value_serializer(descriptor: StateDescriptor[Any]) -> Serializer[Any]:
    """The serializer of a state's values (a map's values, a list's elements, an accumulator)."""
    if isinstance(descriptor, MapStateDescriptor):
        return descriptor.value_serializer
    serializer: Serializer[Any] = descriptor.serializer  # type: ignore[attr-defined]
    return serializer


def serializer_schema(serializer: Serializer[Any]) -> SerializerSchema:
    """How ``serializer`` is recorded. Custom serializers are named by their class and may carry a
    ``version`` attribute (default 1)."""
    if isinstance(serializer, DataclassSerializer):
        fields = tuple(
            FieldSchema(
                f.name,
                _type_name(f.type),
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
            )
            for f in dataclasses.fields(serializer.cls)
        )
        return SerializerSchema("dataclass", serializer.version, fields)
    if isinstance(serializer, MsgpackSerializer):
        return SerializerSchema("msgpack")
    if isinstance(serializer, JsonSerializer):
        return SerializerSchema("json")
    if isinstance(serializer, PickleSerializer):
        return SerializerSchema("pickle")
    cls = type(serializer)
    version = getattr(serializer, "version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StateSchemaError(
            f"serializer {cls.__qualname__} has version {version!r}; a serializer's version must be an "
            f"int >= 1"
        )
    return SerializerSchema(f"{cls.__module__}.{cls.__qualname__}", version)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__qualname__
    return str(annotation).replace("typing.", "")


def plan_migration(
    uid: str, name: str, old: StateSchema, new_descriptor: StateDescriptor[Any]
) -> Migration | None:
    """How state ``name`` of operator ``uid``, stored with schema ``old``, is read by
    ``new_descriptor``: ``None`` when as is, else the rewrite of each stored payload.

    :raises StateSchemaError: the change is incompatible (the message names operator, state, field).
    """
    new = schema_of(new_descriptor)
    where = f"operator {uid!r}, state {name!r}"
    if old.kind != new.kind:
        raise StateSchemaError(
            f"{where} was a {old.kind} state and is declared as a {new.kind} state; a state cannot "
            f"change kind: give the new state another name, or rewrite it with SavepointTransform"
        )
    if old.ttl != new.ttl:
        was, now = ("without", "with") if new.ttl else ("with", "without")
        raise StateSchemaError(
            f"{where} was written {was} a TTL and is now declared {now} one; as in Flink the stored "
            f"layout differs: keep the TTL setting, give the state another name, or rewrite it with "
            f"SavepointTransform"
        )
    if old.key is not None and new.key is not None and old.key != new.key:
        raise StateSchemaError(
            f"{where}: its map keys were written by {_describe(old.key)} and are now read by "
            f"{_describe(new.key)}; map keys are part of the stored entry keys and cannot be migrated: "
            f"keep the key serializer"
        )
    return _value_migration(where, old.value, new.value, value_serializer(new_descriptor))


def _value_migration(
    where: str, old: SerializerSchema, new: SerializerSchema, serializer: Serializer[Any]
) -> Migration | None:
    if old.name != new.name:
        raise StateSchemaError(
            f"{where}: its values were written by {_describe(old)} and are now read by {_describe(new)}; "
            f"keep the serializer, or rewrite the state with SavepointTransform"
        )
    if new.version < old.version:
        raise StateSchemaError(
            f"{where}: its values were written by version {old.version} of {_describe(old, version=False)}, "
            f"newer than this code's version {new.version}; run the newer code"
        )
    if new.version == old.version:
        if old.fields is not None and new.fields is not None:
            _check_fields(where, old.fields, new.fields)
        return None
    loads_version = getattr(serializer, "loads_version", None)
    if loads_version is None or (isinstance(serializer, DataclassSerializer) and serializer.upgrade is None):
        hint = (
            "pass upgrade=function(fields, from_version) -> fields to the DataclassSerializer"
            if isinstance(serializer, DataclassSerializer)
            else "give the serializer a loads_version(data, version) method"
        )
        raise StateSchemaError(
            f"{where}: its values were written by version {old.version} of {_describe(old, version=False)} "
            f"and this code has version {new.version}, which cannot read them: {hint}"
        )
    from_version = old.version

    def migrate(payload: bytes) -> bytes:
        return serializer.dumps(loads_version(payload, from_version))

    return migrate


def _check_fields(where: str, old: tuple[FieldSchema, ...], new: tuple[FieldSchema, ...]) -> None:
    stored = {f.name: f for f in old}
    for field in new:
        before = stored.get(field.name)
        if before is None and not field.has_default:
            raise StateSchemaError(
                f"{where}: field {field.name!r} was added without a default, and values stored before "
                f"have none; give it a default, or raise the DataclassSerializer's version with an "
                f"upgrade= function that fills it in"
            )
        if before is not None and before.type != field.type:
            raise StateSchemaError(
                f"{where}: field {field.name!r} changed type from {before.type} to {field.type}; raise the "
                f"DataclassSerializer's version with an upgrade= function that converts it"
            )


def _describe(schema: SerializerSchema, *, version: bool = True) -> str:
    name = {"msgpack": "MsgpackSerializer", "json": "JsonSerializer", "pickle": "PickleSerializer"}.get(
        schema.name, "DataclassSerializer" if schema.name == "dataclass" else schema.name
    )
    return f"{name} (version {schema.version})" if version else name
