"""How a committed eventapp checkpoint is written down in Kafka.

A split's checkpoint is recorded in two places, both committed atomically (in exactly-once mode: in
the split's Kafka transaction, together with the outputs):

1. **Offset metadata**: the consumer group's committed offset for the partition is the split's
   position, and its metadata string is ``eventapp:v1:chk=<checkpoint id>:snap=<snapshot name>``
   (readable with ``kafka-consumer-groups --describe --verbose`` and by any tool).
2. **Checkpoint marker**: a small JSON record in the checkpoint topic (partition 0) describing the
   checkpoint, plus a *pointer*: the committed offset of the partition in the group
   ``<group>.eventapp-checkpoints`` is the marker's offset.

Why both: some Kafka-protocol brokers do not keep offset metadata (Tansu 0.6.0 accepts it and returns
``None``). The marker is reached through a committed offset, so a marker of an aborted transaction
(which Tansu still shows to ``read_committed`` readers) is never mistaken for the committed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from eventapp.errors import CheckpointError

__all__ = [
    "METADATA_PREFIX",
    "METADATA_VERSION",
    "CheckpointMarker",
    "decode_metadata",
    "encode_metadata",
]

METADATA_PREFIX: Final = "eventapp:"
METADATA_VERSION: Final = "v1"
#: Apache Kafka refuses offset metadata longer than ``offset.metadata.max.bytes`` (default 4096).
MAX_METADATA_CHARS: Final = 3_500
MARKER_VERSION: Final = 1


def encode_metadata(checkpoint_id: int, snapshot: str) -> str:
    """``eventapp:v1:chk=<checkpoint_id>:snap=<snapshot>``."""
    if checkpoint_id < 0:
        raise CheckpointError(f"checkpoint id must be >= 0, got {checkpoint_id}")
    text = f"{METADATA_PREFIX}{METADATA_VERSION}:chk={checkpoint_id}:snap={snapshot}"
    if len(text) > MAX_METADATA_CHARS:
        raise CheckpointError(
            f"snapshot name of checkpoint {checkpoint_id} is too long for Kafka offset metadata "
            f"({len(text)} > {MAX_METADATA_CHARS} characters)"
        )
    return text


def decode_metadata(metadata: str | None) -> tuple[int, str] | None:
    """``(checkpoint_id, snapshot)`` from offset metadata, or ``None`` if it is not eventapp's.

    Metadata written by other tools (or none at all) gives ``None``. Metadata that claims to be
    eventapp's but cannot be read raises :class:`CheckpointError`: guessing could load the wrong state.
    """
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return None
    parts = metadata.split(":", 3)
    if len(parts) != 4 or parts[1] != METADATA_VERSION:
        version = parts[1] if len(parts) > 1 else "?"
        raise CheckpointError(
            f"committed offset metadata {metadata!r} has eventapp format {version!r}; this version of "
            f"eventapp reads {METADATA_VERSION!r}. Restore with the eventapp version that wrote it."
        )
    chk, snap = parts[2], parts[3]
    if not chk.startswith("chk=") or not snap.startswith("snap=") or not chk[4:].isdigit() or len(snap) <= 5:
        raise CheckpointError(
            f"committed offset metadata {metadata!r} is not a valid eventapp checkpoint reference "
            f"(expected 'eventapp:v1:chk=<id>:snap=<name>')"
        )
    return int(chk[4:]), snap[5:]


@dataclass(frozen=True, slots=True)
class CheckpointMarker:
    """The record written to the checkpoint topic for each committed checkpoint of a split."""

    group_id: str
    split: str
    checkpoint_id: int
    snapshot: str
    position: int | None
    job: str | None = None
    transactional_id: str | None = None
    written_at_ms: int | None = None

    @property
    def key(self) -> bytes:
        """Record key: ``<group>/<split>`` (keeps a split's markers together for humans and tools)."""
        return f"{self.group_id}/{self.split}".encode()

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": MARKER_VERSION,
                "group": self.group_id,
                "split": self.split,
                "checkpoint_id": self.checkpoint_id,
                "snapshot": self.snapshot,
                "position": self.position,
                "job": self.job,
                "transactional_id": self.transactional_id,
                "written_at_ms": self.written_at_ms,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | None, where: str) -> CheckpointMarker:
        """Parse a marker; ``where`` (topic/partition/offset) goes into the error message."""
        try:
            raw: Any = orjson.loads(data or b"")
            if not isinstance(raw, dict) or raw.get("v") != MARKER_VERSION:
                raise ValueError(f"unknown marker version {raw.get('v') if isinstance(raw, dict) else raw!r}")
            position = raw["position"]
            return cls(
                group_id=str(raw["group"]),
                split=str(raw["split"]),
                checkpoint_id=int(raw["checkpoint_id"]),
                snapshot=str(raw["snapshot"]),
                position=None if position is None else int(position),
                job=raw.get("job"),
                transactional_id=raw.get("transactional_id"),
                written_at_ms=raw.get("written_at_ms"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"checkpoint marker at {where} cannot be read ({exc}); it was not written by this "
                f"version of eventapp, or the checkpoint topic was written to by something else"
            ) from exc
