"""Writes a split's canonical state file: its store entries sorted into key groups, with what
``_metadata`` counts of them (the layout: ``STATE_FILE_FORMAT`` in :mod:`eventapp.savepoint.format`).

Creating a canonical savepoint is this module's loop over every entry of the job, so its cost per
entry is the savepoint's cost (``benchmarks/bench_savepoint.py``). Two things keep it low:

- A store's entries come in key order, so the entries of one state (or one timer domain) of one
  operator are a contiguous run sharing a prefix (:func:`~eventapp.savepoint.entries.parse_prefix`):
  each run is found by bisection and processed with list comprehensions and C-level calls, not a
  Python statement per entry.
- Entries are bucketed and packed a chunk at a time (a few thousand, in key order), so the chunk
  stays in the CPU's cache; each key group's rows are then the packed arrays of its chunks, in
  chunk order (so still in key order). Bucketing all of a split's entries first and packing them by
  key group afterwards visits them in random memory order, and measured ~1.5x slower.
"""

from __future__ import annotations

import hashlib
import os
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

import msgpack
from murmurhash2 import murmurhash2

from eventapp.partitioning import KAFKA_SEED
from eventapp.savepoint.entries import entry_state_keys, parse_prefix
from eventapp.savepoint.format import STATE_FILE_FORMAT
from eventapp.state.store import prefix_successor

__all__ = ["RunCount", "WrittenStateFile", "write_state_file"]

_KEY = itemgetter(0)
_VALUE = itemgetter(1)
#: Entries bucketed and packed at a time (~0.25 KiB each in memory while being processed).
CHUNK_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class RunCount:
    """The entries of one state (``kind == "state"``) or timer domain of one operator."""

    uid: str
    kind: str
    name: str
    entries: int
    #: Bytes of the entries' keys and values.
    bytes: int


@dataclass(frozen=True, slots=True)
class WrittenStateFile:
    """A state file written (:func:`write_state_file`) and what it holds."""

    #: Its path relative to the savepoint directory.
    file: str
    size: int
    sha256: str
    entries: int
    runs: tuple[RunCount, ...]
    #: Per operator uid, its distinct state keys.
    keys: dict[str, int]


def write_state_file(
    directory: Path, relative: str, split: str, entries: Iterable[tuple[bytes, bytes]], max_parallelism: int
) -> WrittenStateFile:
    """Write ``split``'s ``entries`` (a store's ``(key, value)`` pairs, in any order) to
    ``directory / relative``, synced: the header, then per key group with entries, ascending, its
    number and its rows (in key order) as one or more arrays.

    :raises SavepointError: an entry is not one eventapp writes, or is truncated.
    """
    grouped = _Grouper(max_parallelism, f"split {split!r}")
    grouped.add(entries)
    pack = msgpack.Packer(use_bin_type=True).pack
    pieces = [pack({"format": STATE_FILE_FORMAT, "split": split})]
    for group, arrays in enumerate(grouped.arrays):
        if arrays:
            pieces.append(pack(group))
            pieces += arrays
    data = b"".join(pieces)
    with open(directory / relative, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return WrittenStateFile(
        file=relative,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        entries=grouped.entries,
        runs=tuple(grouped.runs),
        keys={uid: len(keys) for uid, keys in grouped.distinct.items()},
    )


class _Grouper:
    """Key groups of a split's entries: per key group, its rows as packed msgpack arrays."""

    def __init__(self, max_parallelism: int, where: str) -> None:
        self.max_parallelism = max_parallelism
        self.where = where
        self.arrays: list[list[bytes]] = [[] for _ in range(max_parallelism)]
        self.runs: list[RunCount] = []
        #: Per operator uid, its distinct state keys.
        self.distinct: dict[str, set[bytes]] = {}
        self.entries = 0
        self._pack = msgpack.Packer(use_bin_type=True).pack

    def add(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        rows = entries if isinstance(entries, list) else list(entries)
        rows.sort(key=_KEY)  # a store's scan is already in key order: linear
        keys = list(map(_KEY, rows))
        total = len(keys)
        self.entries += total
        start = 0
        while start < total:  # one run of entries sharing a state's (or timer domain's) prefix
            prefix, parsed = parse_prefix(keys[start], self.where)
            upper = prefix_successor(prefix)
            end = total if upper is None else bisect_left(keys, upper, start)
            size, is_state = len(prefix), parsed.kind == "state"
            distinct = self.distinct.setdefault(parsed.uid, set())
            run_bytes = 0
            for low in range(start, end, CHUNK_ENTRIES):
                high = min(low + CHUNK_ENTRIES, end)
                state_keys = entry_state_keys(keys[low:high], size, is_state, self.where)
                distinct.update(state_keys)
                chunk = rows[low:high]
                run_bytes += sum(map(len, keys[low:high])) + sum(map(len, map(_VALUE, chunk)))
                self._bucket(chunk, state_keys)
            self.runs.append(RunCount(parsed.uid, parsed.kind, parsed.name, end - start, run_bytes))
            start = end

    def _bucket(self, chunk: list[tuple[bytes, bytes]], state_keys: list[bytes]) -> None:
        groups = self.max_parallelism
        buckets: list[list[tuple[bytes, bytes]]] = [[] for _ in range(groups)]
        for key, row in zip(state_keys, chunk, strict=True):
            buckets[(murmurhash2(key, KAFKA_SEED) & 0x7FFFFFFF) % groups].append(row)
        pack, arrays = self._pack, self.arrays
        for group, bucket in enumerate(buckets):
            if bucket:
                arrays[group].append(pack(bucket))
