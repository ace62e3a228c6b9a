"""Redis Cluster slots for the sink: a script may only touch keys of one slot, so the sink applies a
checkpoint's commands slot by slot, each slot under a fencing token of its own that hashes to it.

A token's key is ``{<tag>}<token key>``: Redis hashes only the part between the first ``{`` and
``}``, and :func:`slot_tag` gives, for every slot, a short tag that hashes to it (found once, by
trying ``0``, ``1``, ``2``, ... in order: the same tags in every process and release). Commands of
different slots are applied one slot after the other; the commands of one key keep their order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["by_slot", "slot_tag", "slot_token"]


@functools.cache
def _tags() -> tuple[str, ...]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < REDIS_CLUSTER_HASH_SLOTS:
        tag = str(n)
        found.setdefault(key_slot(tag.encode()), tag)
        n += 1
    return tuple(found[slot] for slot in range(REDIS_CLUSTER_HASH_SLOTS))


def slot_tag(slot: int) -> str:
    """A hash tag whose slot is ``slot``."""
    return _tags()[slot]


def slot_token(token: str, slot: int) -> str:
    """The fencing token ``token`` of slot ``slot``: a key in that slot."""
    return f"{{{slot_tag(slot)}}}{token}"


def by_slot(commands: Sequence[list[bytes]]) -> list[tuple[int, list[list[bytes]]]]:
    """``commands`` (wire form, the key second) grouped by their key's slot, slots in the order
    they first appear, each group in the commands' order."""
    groups: dict[int, list[list[bytes]]] = {}
    for command in commands:
        groups.setdefault(key_slot(command[1]), []).append(command)
    return list(groups.items())
