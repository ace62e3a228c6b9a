"""Which subtask runs which split: split ``i`` of the (numerically) sorted splits goes to subtask
``i % parallelism`` (``eventapp splits`` prints it; the job manager's task slots use it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eventapp.errors import ConfigurationError

__all__ = ["assign_splits", "sorted_splits"]


def sorted_splits(splits: Iterable[str]) -> list[str]:
    """``splits`` sorted by base name, then partition number (``t-2`` before ``t-10``)."""
    return sorted(splits, key=_split_sort_key)


def assign_splits(splits: Sequence[str], parallelism: int, subtask: int) -> list[str]:
    """Split ``i`` of the sorted splits goes to subtask ``i % parallelism``."""
    if parallelism < 1:
        raise ConfigurationError(f"--parallelism must be >= 1, got {parallelism}")
    if not 0 <= subtask < parallelism:
        raise ConfigurationError(
            f"--subtask must be between 0 and parallelism-1 ({parallelism - 1}), got {subtask}"
        )
    return [s for i, s in enumerate(sorted_splits(splits)) if i % parallelism == subtask]


def _split_sort_key(split: str) -> tuple[str, int, str]:
    base, _, number = split.rpartition("-")
    return (base, int(number), split) if number.isdigit() else (split, -1, split)
