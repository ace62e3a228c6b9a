"""Record formats: turning Kafka payloads into values and back.

A *deserializer spec* is one of

* ``"bytes"``: the payload as is (``bytes``);
* ``"str"``: UTF-8 text;
* ``"json"``: JSON decoded with orjson (about 4x faster than the standard library);
* an object with ``loads(bytes)`` (any :class:`eventapp.serialization.Serializer`);
* a callable ``f(bytes) -> value``.

A *serializer spec* is the same, with ``dumps(value) -> bytes`` / ``f(value) -> bytes``; ``"bytes"``
accepts ``bytes`` (and ``bytearray``/``memoryview``), ``"str"`` accepts ``str``.

Null payloads (tombstones) are never passed to a deserializer: they read as ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import orjson

from eventapp.errors import ConfigurationError

__all__ = [
    "Decoder",
    "DeserializerSpec",
    "Encoder",
    "SerializerSpec",
    "resolve_deserializer",
    "resolve_serializer",
]


@runtime_checkable
class _Loads(Protocol):
    def loads(self, data: bytes) -> Any: ...


@runtime_checkable
class _Dumps(Protocol):
    def dumps(self, value: Any) -> bytes: ...


DeserializerSpec: TypeAlias = Literal["bytes", "str", "json"] | _Loads | Callable[[bytes], Any]
SerializerSpec: TypeAlias = Literal["bytes", "str", "json"] | _Dumps | Callable[[Any], bytes]

_BUILTIN = ("bytes", "str", "json")


@dataclass(frozen=True, slots=True)
class Decoder:
    """A resolved deserializer: ``decode(payload)`` plus a printable ``description`` for errors."""

    decode: Callable[[bytes], Any]
    description: str


@dataclass(frozen=True, slots=True)
class Encoder:
    """A resolved serializer: ``encode(value) -> bytes`` plus a printable ``description``."""

    encode: Callable[[Any], bytes]
    description: str


def _identity(data: bytes) -> bytes:
    return data


def _utf8(data: bytes) -> str:
    return data.decode("utf-8")


def _encode_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"expected bytes, got {type(value).__name__} (choose value_serializer='json' or 'str')")


def _encode_str(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"expected str, got {type(value).__name__} (choose value_serializer='json' or 'bytes')")


def resolve_deserializer(spec: object, what: str) -> Decoder:
    """Resolve a deserializer spec (see the module docstring); ``what`` names the option in errors."""
    if isinstance(spec, str):
        if spec == "bytes":
            return Decoder(_identity, "bytes")
        if spec == "str":
            return Decoder(_utf8, "str (UTF-8)")
        if spec == "json":
            return Decoder(orjson.loads, "json")
        raise ConfigurationError(
            f"{what}={spec!r} is not a known format; use one of {', '.join(map(repr, _BUILTIN))}, a "
            f"Serializer (an object with loads(bytes)), or a callable taking bytes"
        )
    if isinstance(spec, _Loads):
        return Decoder(spec.loads, repr(spec))
    if callable(spec):
        return Decoder(spec, getattr(spec, "__qualname__", repr(spec)))
    raise ConfigurationError(
        f"{what} must be 'bytes', 'str', 'json', a Serializer (with loads(bytes)) or a callable taking "
        f"bytes; got {spec!r}"
    )


def resolve_serializer(spec: object, what: str) -> Encoder:
    """Resolve a serializer spec (see the module docstring); ``what`` names the option in errors."""
    if isinstance(spec, str):
        if spec == "bytes":
            return Encoder(_encode_bytes, "bytes")
        if spec == "str":
            return Encoder(_encode_str, "str (UTF-8)")
        if spec == "json":
            return Encoder(orjson.dumps, "json")
        raise ConfigurationError(
            f"{what}={spec!r} is not a known format; use one of {', '.join(map(repr, _BUILTIN))}, a "
            f"Serializer (an object with dumps(value) -> bytes), or a callable returning bytes"
        )
    if isinstance(spec, _Dumps):
        return Encoder(spec.dumps, repr(spec))
    if callable(spec):
        return Encoder(spec, getattr(spec, "__qualname__", repr(spec)))
    raise ConfigurationError(
        f"{what} must be 'bytes', 'str', 'json', a Serializer (with dumps(value)) or a callable "
        f"returning bytes; got {spec!r}"
    )
