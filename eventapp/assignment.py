"""Which subtask runs which split (``eventapp splits`` prints it; the job manager's task slots use it).

Fixed splits: split ``i`` of the (numerically) sorted splits goes to subtask ``i % parallelism``,
which spreads a topic's partitions evenly. The splits of a source that discovers new ones while
the job runs (:class:`~eventapp.source.DiscoveringSource`) go by :func:`owner_of`, a hash of the
split id alone, so a new split never moves the splits already running (as Flink's Kafka source
enumerator assigns discovered partitions by topic hash and partition number).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eventapp.errors import ConfigurationError

__all__ = ["Subtask", "assign_splits", "owner_of", "sorted_splits"]


def owner_of(split: str, parallelism: int) -> int:
    """The subtask that owns ``split`` of a discovering source: CRC-32 of its id modulo
    ``parallelism`` (stable across processes and Python versions, unlike ``hash``)."""
    return zlib.crc32(split.encode("utf-8")) % parallelism


@dataclass(frozen=True, slots=True)
class Subtask:
    """This worker's place in the job: subtask ``index`` of ``parallelism``."""

    index: int
    parallelism: int

    def __post_init__(self) -> None:
        _check(self.parallelism, self.index)

    def owns(self, split: str) -> bool:
        """``split`` of a discovering source is this subtask's (see :func:`owner_of`)."""
        return owner_of(split, self.parallelism) == self.index


def sorted_splits(splits: Iterable[str]) -> list[str]:
    """``splits`` sorted by base name, then partition number (``t-2`` before ``t-10``)."""
    return sorted(splits, key=_split_sort_key)


def assign_splits(
    splits: Sequence[str], parallelism: int, subtask: int, *, discovering: bool = False
) -> list[str]:
    """Split ``i`` of the sorted splits goes to subtask ``i % parallelism``; with ``discovering``
    (the source discovers splits while running) each split goes to :func:`owner_of` it."""
    _check(parallelism, subtask)
    if discovering:
        return [s for s in sorted_splits(splits) if owner_of(s, parallelism) == subtask]
    return [s for i, s in enumerate(sorted_splits(splits)) if i % parallelism == subtask]


def _check(parallelism: int, subtask: int) -> None:
    if parallelism < 1:
        raise ConfigurationError(f"--parallelism must be >= 1, got {parallelism}")
    if not 0 <= subtask < parallelism:
        raise ConfigurationError(
            f"--subtask must be between 0 and parallelism-1 ({parallelism - 1}), got {subtask}"
        )


def _split_sort_key(split: str) -> tuple[str, int, str]:
    base, _, number = split.rpartition("-")
    return (base, int(number), split) if number.isdigit() else (split, -1, split)
