"""librdkafka settings of eventapp's Kafka clients: the defaults, required values and forbidden keys of
each kind of client, and how they merge with the user's settings.

librdkafka settings given in ``consumer_config`` / ``producer_config`` are passed straight through,
except the few that eventapp's guarantees depend on: those are set by eventapp, and a user value that
would break them is rejected with :class:`~eventapp.errors.ConfigurationError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from eventapp.errors import ConfigurationError

from .clientlog import with_client_logging

__all__ = [
    "COMMIT_PRODUCER_DEFAULTS",
    "SINK_DEFAULTS",
    "SINK_FORBIDDEN",
    "SOURCE_DEFAULTS",
    "SOURCE_FORBIDDEN",
    "SOURCE_REQUIRED",
    "TRANSACTIONAL_FORBIDDEN",
    "TRANSACTIONAL_REQUIRED",
    "Required",
    "admin_settings",
    "frozen_settings",
    "merge_settings",
]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


def frozen_settings(value: object, what: str) -> Mapping[str, Any]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a mapping of librdkafka settings, got {value!r}")
    for key in value:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{what} keys must be librdkafka property names, got {key!r}")
        if "_" in key and "." not in key and key not in _UNDERSCORE_KEYS:
            raise ConfigurationError(
                f"{what} key {key!r} looks like a Python keyword spelling; librdkafka property names "
                f"use dots, e.g. {key.replace('_', '.')!r}"
            )
    return MappingProxyType(dict(value))


# librdkafka properties that legitimately contain underscores and no dots (callbacks and the like).
_UNDERSCORE_KEYS: Final = frozenset(
    {"error_cb", "throttle_cb", "stats_cb", "oauth_cb", "on_commit", "on_delivery", "logger"}
)


@dataclass(frozen=True, slots=True)
class Required:
    """A setting eventapp owns: its value and why a different one is refused."""

    value: Any
    why: str
    #: Other spellings of the same value (``acks=-1`` is ``acks=all``).
    aliases: tuple[str, ...] = ()


def admin_settings(bootstrap_servers: str, consumer_config: Mapping[str, Any]) -> dict[str, Any]:
    """Settings for an ``AdminClient`` next to a consumer: the bootstrap servers and the connection
    settings (security, client id, sockets) of the user's consumer config."""
    settings = {
        "bootstrap.servers": bootstrap_servers,
        **{
            k: v
            for k, v in consumer_config.items()
            if k.startswith(("security.", "sasl.", "ssl.", "client.", "socket."))
            or k == "broker.address.family"
        },
    }
    return with_client_logging(settings, "admin", polled=False)


def merge_settings(
    owner: str,
    defaults: Mapping[str, Any],
    user: Mapping[str, Any],
    required: Mapping[str, Required],
    forbidden: Mapping[str, str],
) -> dict[str, Any]:
    """defaults < user < required; user values that contradict ``required`` or use ``forbidden`` keys
    raise :class:`ConfigurationError`."""
    for key, why in forbidden.items():
        if key in user:
            raise ConfigurationError(f"{owner}: do not set {key!r} in the librdkafka settings; {why}")
    for key, req in required.items():
        if key not in user:
            continue
        given = user[key]
        if isinstance(req.value, bool):
            same = _as_bool(given) is req.value
        else:
            spelled = str(given).strip().lower()
            same = spelled == str(req.value).lower() or spelled in req.aliases
        if not same:
            raise ConfigurationError(
                f"{owner}: librdkafka setting {key}={given!r} is not supported: eventapp needs "
                f"{key}={req.value!r} because {req.why}. Remove it from the settings."
            )
    merged = dict(defaults)
    merged.update(user)
    merged.update({key: req.value for key, req in required.items()})
    return merged


# -- source consumers -----------------------------------------------------------------------------

SOURCE_DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        # librdkafka waits up to fetch.queue.backoff.ms (default 1000) before refetching once its
        # queue has data; on Tansu that stalls consumers for ~1 s at a time.
        "fetch.queue.backoff.ms": 10,
        # How long the broker may hold an empty fetch: bounds end-of-partition latency.
        "fetch.wait.max.ms": 100,
    }
)

SOURCE_REQUIRED: Final[Mapping[str, Required]] = MappingProxyType(
    {
        "enable.auto.commit": Required(
            False, "positions are committed only by the commit point, together with each checkpoint"
        ),
        "enable.auto.offset.store": Required(False, "the consumer never commits offsets itself"),
        "isolation.level": Required(
            "read_committed",
            "records of open or aborted upstream transactions must never be processed (exactly-once "
            "pipelines read only committed data)",
        ),
        "enable.partition.eof": Required(
            True, "end-of-partition events are how bounded reads know they are done"
        ),
    }
)

#: Also dropped from the user's consumer settings by the commit points' short-lived consumers.
SOURCE_FORBIDDEN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "bootstrap.servers": "use KafkaSourceConfig(bootstrap_servers=...)",
        "group.id": "use KafkaSourceConfig(group_id=...)",
        "auto.offset.reset": "use start_position=StartPosition.committed(reset=OffsetReset.LATEST) etc.",
        "transactional.id": "consumers have none; the commit point owns the transactional producers",
    }
)


# -- transactional producers of the commit points --------------------------------------------------

TRANSACTIONAL_REQUIRED: Final[Mapping[str, Required]] = MappingProxyType(
    {
        "enable.idempotence": Required(True, "transactions require the idempotent producer"),
        "acks": Required(
            "all", "a transaction may only commit records every in-sync replica has", aliases=("-1",)
        ),
    }
)

TRANSACTIONAL_FORBIDDEN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "transactional.id": "it is '<transactional_id_prefix>-<topic>-<partition>'; set "
        "transactional_id_prefix instead",
        "transaction.timeout.ms": "use transaction_timeout_ms=",
        "bootstrap.servers": "use bootstrap_servers=",
    }
)

COMMIT_PRODUCER_DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType({"linger.ms": 5})


# -- sink producers -------------------------------------------------------------------------------

SINK_DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType({"linger.ms": 5})

SINK_FORBIDDEN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "bootstrap.servers": "use KafkaSinkConfig(bootstrap_servers=...)",
        "transactional.id": "exactly-once sinks write into the input split's transaction, owned by the "
        "KafkaSource's commit point (see KafkaSourceConfig.transactional_id_prefix)",
    }
)
