"""Names of Kafka splits and of the checkpoint topic.

Each Kafka partition is a split named ``"<topic>-<partition>"``; each job's checkpoint markers go to
its own checkpoint topic by default.
"""

from __future__ import annotations

import re
from typing import Final

from eventapp.errors import ConfigurationError

__all__ = ["DEFAULT_CHECKPOINT_TOPIC", "default_checkpoint_topic", "parse_split", "split_id"]

#: Prefix of the topic holding one small "checkpoint marker" record per committed checkpoint of every
#: split (see :mod:`eventapp.connectors.kafka.commit`). Each job (consumer group) gets its own topic by
#: default, ``eventapp-checkpoints.<group>`` (:func:`default_checkpoint_topic`), so that one job's
#: markers never lengthen another job's recovery. Jobs may share a topic safely (markers name their
#: group and split) by setting ``checkpoint_topic`` explicitly.
DEFAULT_CHECKPOINT_TOPIC: Final = "eventapp-checkpoints"


def default_checkpoint_topic(group_id: str) -> str:
    """``eventapp-checkpoints.<group>``, with characters a topic name cannot hold replaced by ``_``."""
    safe = re.sub(r"[^a-zA-Z0-9._-]", "_", group_id)
    return f"{DEFAULT_CHECKPOINT_TOPIC}.{safe}"[:249]


def split_id(topic: str, partition: int) -> str:
    """The split id of a Kafka partition: ``"<topic>-<partition>"``."""
    return f"{topic}-{partition}"


def parse_split(split: str) -> tuple[str, int]:
    """``"orders-3"`` -> ``("orders", 3)``. Topic names may contain ``-``; the partition is the last part."""
    topic, sep, partition = split.rpartition("-")
    if not sep or not topic or not partition.isdigit():
        raise ConfigurationError(
            f"{split!r} is not a Kafka split id; Kafka splits are named '<topic>-<partition>', "
            f"e.g. 'orders-0'"
        )
    return topic, int(partition)
