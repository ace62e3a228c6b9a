"""Checks of the fields the Kafka configurations share (bootstrap servers, group id, topic names,
timeouts, broker quirks), with error messages that say how to fix the problem."""

from __future__ import annotations

import re

from eventapp.errors import ConfigurationError

from .quirks import BrokerQuirks

__all__ = ["check_bootstrap", "check_group_id", "check_quirks", "check_timeout", "check_topic_name"]

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def check_quirks(value: object, owner: str) -> None:
    if not isinstance(value, BrokerQuirks):
        raise ConfigurationError(
            f"{owner}.broker_quirks must be a BrokerQuirks (BrokerQuirks.none() for Apache Kafka, the "
            f"default), got {value!r}"
        )


def check_topic_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _TOPIC_NAME.match(name) or name in (".", ".."):
        raise ConfigurationError(
            f"{what}={name!r} is not a valid Kafka topic name: use 1-249 characters from "
            f"[a-zA-Z0-9._-] (and not '.' or '..')"
        )
    return name


def check_bootstrap(value: object, owner: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{owner}.bootstrap_servers must be a non-empty 'host:port[,host:port...]' string, got {value!r}"
        )
    return value.strip()


def check_group_id(value: object, owner: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{owner}.group_id must be a non-empty string: it names the consumer group whose committed "
            f"offsets hold each split's position (and, for eventapp, its committed checkpoint); use one "
            f"group per job, e.g. group_id='orders-enricher'"
        )
    return value


def check_timeout(value: object, owner: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(
            f"{owner}.operation_timeout_s must be a number of seconds > 0, got {value!r}"
        )
