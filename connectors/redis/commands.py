"""The writes a Redis sink can make: one small frozen dataclass per command.

A sink's ``mapper`` turns each output value into one command or a sequence of them. Each command
knows its Redis arguments (:meth:`RedisCommand.to_wire`, the form the exactly-once apply script
reads and the at-least-once pipeline sends) and the type of value its key must hold (checked by the
apply script before anything of a checkpoint is applied).

Values and fields are ``str``, ``bytes``, ``int`` or ``float``; amounts of ``IncrBy``/``HIncrBy``
are ints (sent as decimal strings, so they are exact beyond 2**53). ``ttl_ms`` sets the key's time
to live (``PEXPIRE``) after the write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeAlias

from eventapp.errors import ConfigurationError

__all__ = [
    "Delete",
    "Expire",
    "HIncrBy",
    "HSet",
    "IncrBy",
    "Publish",
    "RedisCommand",
    "Scalar",
    "Set",
    "XAdd",
    "ZAdd",
    "to_bytes",
]

Scalar: TypeAlias = str | bytes | int | float
#: A command on the wire: ``[name, key, ttl_ms or b"", *arguments]``, every element bytes.
Wire: TypeAlias = list[bytes]

_NO_TTL: Final = b""


def to_bytes(value: Scalar, what: str) -> bytes:
    """``value`` as Redis receives it (str as UTF-8, numbers in decimal)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{what} must be str, bytes, int or float, got {type(value).__name__} {value!r:.60}"
        )
    return repr(value).encode() if isinstance(value, float) else str(value).encode()


def _key(key: Scalar, command: str) -> bytes:
    data = to_bytes(key, f"the key of {command}")
    if not data:
        raise ConfigurationError(f"{command} needs a non-empty key")
    return data


def _ttl(ttl_ms: int | None, command: str) -> bytes:
    if ttl_ms is None:
        return _NO_TTL
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise ConfigurationError(
            f"{command}: ttl_ms must be a positive int (milliseconds) or None, got {ttl_ms!r}"
        )
    return str(ttl_ms).encode()


@dataclass(frozen=True, slots=True)
class RedisCommand:
    """Base of the commands (not used directly)."""

    #: The Redis type the key must hold (or not exist), checked before a checkpoint is applied.
    key_type: ClassVar[str] = ""
    name: ClassVar[bytes] = b""

    def to_wire(self) -> Wire:
        raise NotImplementedError

    def describe(self) -> str:
        wire = self.to_wire()
        return f"{wire[0].decode()} {wire[1]!r}"


@dataclass(frozen=True, slots=True)
class Set(RedisCommand):
    """``SET key value`` (``PX ttl_ms`` if given)."""

    key: Scalar
    value: Scalar
    ttl_ms: int | None = None
    key_type: ClassVar[str] = "string"
    name: ClassVar[bytes] = b"SET"

    def to_wire(self) -> Wire:
        return [
            self.name,
            _key(self.key, "SET"),
            _ttl(self.ttl_ms, "SET"),
            to_bytes(self.value, "a SET value"),
        ]


@dataclass(frozen=True, slots=True)
class IncrBy(RedisCommand):
    """``INCRBY key amount`` (the key's value must be an integer or absent)."""

    key: Scalar
    amount: int = 1
    ttl_ms: int | None = None
    key_type: ClassVar[str] = "string"
    name: ClassVar[bytes] = b"INCRBY"

    def to_wire(self) -> Wire:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise ConfigurationError(f"INCRBY {self.key!r}: amount must be an int, got {self.amount!r}")
        return [self.name, _key(self.key, "INCRBY"), _ttl(self.ttl_ms, "INCRBY"), str(self.amount).encode()]


@dataclass(frozen=True, slots=True)
class HSet(RedisCommand):
    """``HSET key field value [field value ...]``."""

    key: Scalar
    fields: Mapping[str, Scalar] = field(default_factory=dict)
    ttl_ms: int | None = None
    key_type: ClassVar[str] = "hash"
    name: ClassVar[bytes] = b"HSET"

    def to_wire(self) -> Wire:
        if not self.fields:
            raise ConfigurationError(f"HSET {self.key!r} needs at least one field")
        wire = [self.name, _key(self.key, "HSET"), _ttl(self.ttl_ms, "HSET")]
        for name, value in self.fields.items():
            wire += [to_bytes(name, "an HSET field name"), to_bytes(value, f"HSET field {name!r}")]
        return wire


@dataclass(frozen=True, slots=True)
class HIncrBy(RedisCommand):
    """``HINCRBY key field amount``."""

    key: Scalar
    field_name: Scalar
    amount: int = 1
    ttl_ms: int | None = None
    key_type: ClassVar[str] = "hash"
    name: ClassVar[bytes] = b"HINCRBY"

    def to_wire(self) -> Wire:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise ConfigurationError(f"HINCRBY {self.key!r}: amount must be an int, got {self.amount!r}")
        return [
            self.name,
            _key(self.key, "HINCRBY"),
            _ttl(self.ttl_ms, "HINCRBY"),
            to_bytes(self.field_name, "an HINCRBY field name"),
            str(self.amount).encode(),
        ]


@dataclass(frozen=True, slots=True)
class ZAdd(RedisCommand):
    """``ZADD key score member [score member ...]`` (``members``: member -> score)."""

    key: Scalar
    members: Mapping[Scalar, float] = field(default_factory=dict)
    ttl_ms: int | None = None
    key_type: ClassVar[str] = "zset"
    name: ClassVar[bytes] = b"ZADD"

    def to_wire(self) -> Wire:
        if not self.members:
            raise ConfigurationError(f"ZADD {self.key!r} needs at least one member")
        wire = [self.name, _key(self.key, "ZADD"), _ttl(self.ttl_ms, "ZADD")]
        for member, score in self.members.items():
            wire += [to_bytes(float(score), "a ZADD score"), to_bytes(member, "a ZADD member")]
        return wire


@dataclass(frozen=True, slots=True)
class XAdd(RedisCommand):
    """``XADD stream [MAXLEN ~ n] * field value ...`` (Redis assigns the entry id)."""

    stream: Scalar
    fields: Mapping[str, Scalar] = field(default_factory=dict)
    maxlen: int | None = None
    approximate: bool = True
    key_type: ClassVar[str] = "stream"
    name: ClassVar[bytes] = b"XADD"

    def to_wire(self) -> Wire:
        if not self.fields:
            raise ConfigurationError(f"XADD {self.stream!r} needs at least one field")
        if self.maxlen is not None and (not isinstance(self.maxlen, int) or self.maxlen < 0):
            raise ConfigurationError(f"XADD {self.stream!r}: maxlen must be an int >= 0, got {self.maxlen!r}")
        trim = (
            b"" if self.maxlen is None else (b"~" if self.approximate else b"=") + str(self.maxlen).encode()
        )
        wire = [self.name, _key(self.stream, "XADD"), _NO_TTL, trim]
        for name, value in self.fields.items():
            wire += [to_bytes(name, "an XADD field name"), to_bytes(value, f"XADD field {name!r}")]
        return wire


@dataclass(frozen=True, slots=True)
class Publish(RedisCommand):
    """``PUBLISH channel message`` (fire and forget: subscribers that are not listening miss it)."""

    channel: Scalar
    message: Scalar
    name: ClassVar[bytes] = b"PUBLISH"

    def to_wire(self) -> Wire:
        return [
            self.name,
            _key(self.channel, "PUBLISH"),
            _NO_TTL,
            to_bytes(self.message, "a PUBLISH message"),
        ]


@dataclass(frozen=True, slots=True)
class Delete(RedisCommand):
    """``DEL key``."""

    key: Scalar
    name: ClassVar[bytes] = b"DEL"

    def to_wire(self) -> Wire:
        return [self.name, _key(self.key, "DEL"), _NO_TTL]


@dataclass(frozen=True, slots=True)
class Expire(RedisCommand):
    """``PEXPIRE key ttl_ms``."""

    key: Scalar
    ttl_ms: int
    name: ClassVar[bytes] = b"PEXPIRE"

    def to_wire(self) -> Wire:
        return [self.name, _key(self.key, "PEXPIRE"), _ttl(self.ttl_ms, "PEXPIRE")]
