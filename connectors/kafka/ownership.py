"""Which instance owns a split: ownership claims, so a split always ends with one live owner.

Kafka's fencing (``init_transactions`` with the split's transactional id) makes the *last* instance to
fence the owner. That is not always the instance that should own the split: a worker paused during
its restore (a long GC, a frozen VM, SIGSTOP) that resumes after its successor started would fence
the successor, and the successor, restarting, would fence it back. Claims order the instances.

Before it fences, an instance's commit point writes a **claim** for its split to the checkpoint topic
(key ``<group>/<split>/owner``, not transactional) naming the instance and when its process started,
and remembers the claim's offset. Instances are ordered by ``(process start time, instance id)``:
the newest instance is the one that should own the split. (Ordering instances, not single claims,
keeps the order the same for every split: two workers started at once for the same splits, whose
per-split claims interleave, cannot both step back.)

* Just before ``init_transactions``, an instance reads the claims written after its own. If one is
  by a newer instance, it does not fence: it raises :class:`~eventapp.errors.SupersededError` and
  the worker exits saying so (exit code 3).
* An instance fenced while restoring or running does the same check: superseded if a newer
  instance claimed the split since; otherwise it was fenced by an *older* instance (one that checked
  before the newer claim was written), and it recovers again with a fresh claim (the worker retries
  with backoff a bounded number of times). The older instance then finds the fresh claim and steps
  back.

Reads are bounded by recent history: from the instance's own claim (or :data:`CLAIM_WINDOW` offsets
below the end, whichever is later) to the end of the checkpoint topic. Claims need the plaintext
reader of :mod:`eventapp.connectors.kafka.txnlog`; with TLS/SASL they are skipped (then fencing alone
decides, as before).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import orjson
import structlog
from confluent_kafka import KafkaError, Message, Producer

from eventapp.errors import CheckpointError

from .config import KafkaCommitConfig
from .offsets import CHECKPOINT_TOPIC_PARTITION

__all__ = ["CLAIM_WINDOW", "OwnershipClaim", "SplitOwnership", "instance_id"]

log = structlog.get_logger(__name__)

#: Most offsets below the end of the checkpoint topic that a claim check reads.
CLAIM_WINDOW: Final = 65_536

_INSTANCE = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
_STARTED_MS = int(time.time() * 1000)


def instance_id() -> str:
    """``host:pid:random`` of this process (names the owner in claims and messages)."""
    return _INSTANCE


@dataclass(frozen=True, slots=True)
class OwnershipClaim:
    """One claim record: which instance claimed a split, and when (wall clock, for humans)."""

    group_id: str
    split: str
    instance: str
    claimed_at_ms: int
    #: When the claiming process started (wall clock): instances are ordered by it.
    started_at_ms: int
    offset: int = -1

    @property
    def order(self) -> tuple[int, str]:
        """Instances with a larger order are newer."""
        return (self.started_at_ms, self.instance)

    @staticmethod
    def key_of(group_id: str, split: str) -> bytes:
        return f"{group_id}/{split}/owner".encode()

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": 1,
                "group": self.group_id,
                "split": self.split,
                "instance": self.instance,
                "claimed_at_ms": self.claimed_at_ms,
                "started_at_ms": self.started_at_ms,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | None, offset: int) -> OwnershipClaim:
        try:
            raw: Any = orjson.loads(data or b"")
            return cls(
                str(raw["group"]),
                str(raw["split"]),
                str(raw["instance"]),
                int(raw["claimed_at_ms"]),
                int(raw["started_at_ms"]),
                offset,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"ownership claim at checkpoint-topic offset {offset} is unreadable: {exc}"
            ) from exc

    def describe(self) -> str:
        def utc(ms: int) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))

        return (
            f"instance {self.instance} (started at {utc(self.started_at_ms)}, claimed the split at "
            f"{utc(self.claimed_at_ms)}, checkpoint-topic offset {self.offset})"
        )


#: This process's latest claim offset per (bootstrap, group, split): a worker that recovers a split
#: again (after being fenced) first checks for claims newer than its previous one.
_last_claims: dict[tuple[str, str, str, str], int] = {}
_producers: dict[str, Producer] = {}
_producers_lock = threading.Lock()


def _claim_producer(config: KafkaCommitConfig) -> Producer:
    """One producer per process and bootstrap servers, for claims. Not idempotent: a claim is one
    record, a duplicate of it is harmless (claims of this instance are skipped when reading), and an
    idempotent producer's InitProducerId would add ~0.5 s (librdkafka's retry timer) to each restart."""
    with _producers_lock:
        producer = _producers.get(config.bootstrap_servers)
        if producer is None:
            settings = config.producer_settings(None)
            settings["enable.idempotence"] = False
            producer = Producer(settings)
            _producers[config.bootstrap_servers] = producer
        return producer


class SplitOwnership:
    """The claims of one split by this instance (module docstring)."""

    def __init__(
        self, config: KafkaCommitConfig, split: str, instance: tuple[str, int] | None = None
    ) -> None:
        self._config = config
        self.split = split
        #: ``(instance id, process start ms)``; this process by default.
        self.instance, self.started_at_ms = instance or (_INSTANCE, _STARTED_MS)
        self._key = OwnershipClaim.key_of(config.group_id, split)
        self._registry_key = (config.bootstrap_servers, config.group_id, split, self.instance)
        #: Offset of this process's latest claim of the split (``None`` before its first :meth:`claim`).
        with _producers_lock:
            self.claim_offset: int | None = _last_claims.get(self._registry_key)

    def claim(self) -> int:
        """Write a fresh claim for the split; returns its offset."""
        claim = OwnershipClaim(
            self._config.group_id, self.split, self.instance, int(time.time() * 1000), self.started_at_ms
        )
        producer = _claim_producer(self._config)
        result: list[tuple[KafkaError | None, int | None]] = []

        def delivered(error: KafkaError | None, message: Message) -> None:
            result.append((error, None if error is not None else message.offset()))

        producer.produce(
            self._config.checkpoint_topic,
            claim.to_bytes(),
            key=self._key,
            partition=CHECKPOINT_TOPIC_PARTITION,
            on_delivery=delivered,
        )
        timeout = self._config.operation_timeout_s
        if producer.flush(timeout) or not result:
            raise CheckpointError(
                f"split {self.split!r}: the ownership claim was not acknowledged within {timeout}s by "
                f"{self._config.bootstrap_servers}"
            )
        error, offset = result[0]
        if error is not None or offset is None or offset < 0:
            raise CheckpointError(f"split {self.split!r}: writing the ownership claim failed: {error}")
        self.claim_offset = offset
        with _producers_lock:
            _last_claims[self._registry_key] = offset
        log.info("kafka.split.claimed", split=self.split, instance=self.instance, claim_offset=offset)
        return offset

    def newer_claim(self) -> OwnershipClaim | None:
        """A claim of the split by a newer instance, written after this instance's latest claim (the
        newest such instance's last claim), if any."""
        from .txnlog import (
            AuditError,
            KafkaProtocolError,
            audit_topic,
            high_watermark,
        )

        if self.claim_offset is None:
            return None
        topic = self._config.checkpoint_topic
        timeout = self._config.operation_timeout_s
        try:
            end = high_watermark(
                self._config.bootstrap_servers,
                topic,
                CHECKPOINT_TOPIC_PARTITION,
                timeout=timeout,
                client_id="eventapp-claims",
            )
            start = max(self.claim_offset + 1, end - CLAIM_WINDOW)
            audit = audit_topic(
                self._config.bootstrap_servers,
                topic,
                partitions=[CHECKPOINT_TOPIC_PARTITION],
                verify_crc=True,
                timeout=timeout,
                start_offsets={CHECKPOINT_TOPIC_PARTITION: start},
                client_id="eventapp-claims",
                keys=frozenset({self._key}),
            )
        except (AuditError, KafkaProtocolError, OSError) as exc:
            raise CheckpointError(
                f"split {self.split!r}: cannot read ownership claims from {topic!r}: {exc}"
            ) from exc
        claims = [
            OwnershipClaim.from_bytes(r.value, r.offset)
            for r in audit.partitions[CHECKPOINT_TOPIC_PARTITION].committed
            if r.offset > self.claim_offset
        ]
        mine = (self.started_at_ms, self.instance)
        newer = [c for c in claims if c.order > mine]
        return max(newer, key=lambda c: (c.order, c.offset)) if newer else None
