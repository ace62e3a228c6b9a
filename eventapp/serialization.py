"""Serializers for state values, keys and records.

The default is :class:`MsgpackSerializer`: fast, compact and safe to load from files written by
another version of your code. It handles ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
``list``/``tuple`` (read back as ``list``) and ``dict``. For your own classes use
:class:`DataclassSerializer` or write a :class:`Serializer`. :class:`PickleSerializer` exists only as
an explicit opt-in: pickle runs code when it loads and breaks when classes move.

A serializer's name and ``version`` (an optional ``int`` attribute, default 1) are recorded with
every snapshot; a serializer whose version was raised reads values of older versions with
``loads_version(data, version)``. See :mod:`eventapp.state.schema` and docs/savepoints.md.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import msgpack
import orjson

from eventapp.errors import SerializationError

__all__ = [
    "DataclassSerializer",
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
]

T = TypeVar("T")
D = TypeVar("D")


@runtime_checkable
class Serializer(Protocol[T]):
    """Turns values into bytes and back. Implementations must be deterministic for keys."""

    def dumps(self, value: T) -> bytes: ...

    def loads(self, data: bytes) -> T: ...


class MsgpackSerializer(Generic[T]):
    """The default serializer: msgpack, no code execution on load.

    With ``tuples=True`` arrays load as tuples (hashable), which is what map-state keys need.
    """

    __slots__ = ("_packer", "_use_list")

    def __init__(self, *, tuples: bool = False) -> None:
        self._use_list = not tuples
        # One Packer per serializer: msgpack.packb builds a new one per call (~6x slower). Packing
        # the supported types runs in C without releasing the GIL, so sharing it is safe.
        self._packer = msgpack.Packer(use_bin_type=True)

    def dumps(self, value: T) -> bytes:
        try:
            return self._packer.pack(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(
                f"cannot serialize {type(value).__name__} value with the default msgpack serializer "
                f"({exc}); use DataclassSerializer for dataclasses or pass a custom serializer in the "
                f"state descriptor"
            ) from exc

    def loads(self, data: bytes) -> T:
        try:
            return msgpack.unpackb(  # type: ignore[no-any-return]
                data, raw=False, strict_map_key=False, use_list=self._use_list
            )
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise SerializationError(f"cannot deserialize msgpack data ({exc})") from exc

    def __repr__(self) -> str:
        return "MsgpackSerializer()" if self._use_list else "MsgpackSerializer(tuples=True)"

    # Serializers compare by what they write, so descriptors built anew on every call (a state
    # name per window, say) are the same descriptor.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, MsgpackSerializer) and other._use_list == self._use_list

    def __hash__(self) -> int:
        return hash((MsgpackSerializer, self._use_list))


class JsonSerializer(Generic[T]):
    """JSON via orjson. Useful for records; for state prefer msgpack (it keeps bytes)."""

    __slots__ = ()

    def dumps(self, value: T) -> bytes:
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            raise SerializationError(f"cannot serialize {type(value).__name__} as JSON ({exc})") from exc

    def loads(self, data: bytes) -> T:
        try:
            return orjson.loads(data)  # type: ignore[no-any-return]
        except orjson.JSONDecodeError as exc:
            raise SerializationError(f"invalid JSON ({exc})") from exc

    def __repr__(self) -> str:
        return "JsonSerializer()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonSerializer)

    def __hash__(self) -> int:
        return hash(JsonSerializer)


class DataclassSerializer(Generic[D]):
    """Stores a dataclass as a msgpack map of its fields and rebuilds it on load.

    Fields must themselves be msgpack-serializable. The state's schema (its fields, their types and
    whether they have defaults) is recorded in every checkpoint and savepoint, and checked when a
    job restores (see docs/savepoints.md, "State schema evolution"):

    * adding a field **with a default**, or removing a field, restores as is;
    * adding a field without a default, or changing a field's type, is refused at restore, naming
      the operator, state and field, unless the serializer's ``version`` was raised and ``upgrade``
      converts the stored fields: ``upgrade(fields, from_version) -> fields`` is called for every
      stored value written by an older version, and the state is rewritten once, at restore.
    """

    __slots__ = ("_cls", "_fields", "upgrade", "version")

    def __init__(
        self,
        cls: type[D],
        *,
        version: int = 1,
        upgrade: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
    ) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"DataclassSerializer needs a dataclass type, got {cls!r}")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"DataclassSerializer version must be an int >= 1, got {version!r}")
        self._cls = cls
        self._fields = frozenset(f.name for f in dataclasses.fields(cls))
        self.version = version
        self.upgrade = upgrade

    @property
    def cls(self) -> type[D]:
        return self._cls

    def dumps(self, value: D) -> bytes:
        if not isinstance(value, self._cls):
            raise SerializationError(f"expected {self._cls.__name__}, got {type(value).__name__}")
        data = {f: getattr(value, f) for f in self._fields}
        return _MAP.dumps(data)

    def loads(self, data: bytes) -> D:
        return self._build(_MAP.loads(data))

    def loads_version(self, data: bytes, version: int) -> D:
        """Load a value written by serializer version ``version`` (through ``upgrade`` when older)."""
        raw = _MAP.loads(data)
        if version != self.version:
            if self.upgrade is None or version > self.version:
                raise SerializationError(
                    f"DataclassSerializer({self._cls.__name__}, version={self.version}) cannot read "
                    f"values of version {version}"
                )
            raw = self.upgrade(raw, version)
        return self._build(raw)

    def _build(self, raw: dict[str, Any]) -> D:
        try:
            return self._cls(**{k: v for k, v in raw.items() if k in self._fields})
        except TypeError as exc:
            raise SerializationError(
                f"stored value does not fit {self._cls.__name__} ({exc}); give new fields defaults, "
                f"or raise the serializer's version and convert old values with upgrade="
            ) from exc

    def __repr__(self) -> str:
        return f"DataclassSerializer({self._cls.__name__}, version={self.version})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DataclassSerializer)
            and other._cls is self._cls
            and other.version == self.version
            and other.upgrade == self.upgrade
        )

    def __hash__(self) -> int:
        return hash((DataclassSerializer, self._cls, self.version))


_MAP: MsgpackSerializer[dict[str, Any]] = MsgpackSerializer()


class PickleSerializer(Generic[T]):
    """Explicit opt-in only. Pickle executes code on load: never load snapshots you do not trust."""

    __slots__ = ()

    def dumps(self, value: T) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> T:
        return pickle.loads(data)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return "PickleSerializer()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PickleSerializer)

    def __hash__(self) -> int:
        return hash(PickleSerializer)
