"""Restoring a job from a savepoint (``eventapp run JOB --from-savepoint DIR``): the checks, and
which entries go to which split.

Everything is checked before any split is opened, so a refused restore restores nothing:

* the savepoint is whole (``_metadata`` checksum, every state file's size and SHA-256);
* it is a savepoint of this job (by name) and has this job's ``max_parallelism`` (as Flink);
* every operator it holds state for exists in the job, after ``uid_renames`` (old -> new); with
  ``allow_non_restored_state`` the state of operators that no longer exist is dropped and listed;
* every split it holds a position for is a split of the job's source: a position of a split the job
  does not read could not be carried over, and its records would be lost or read twice.

**Re-sharding.** When the job's source has other splits than the savepoint (a topic that went from
8 to 12 partitions), state is moved key by key: each entry goes to the split ``topic-P`` with
``P = partitioner.partition(key, partitions of topic)``, the job's declared partitioner
(:mod:`eventapp.partitioning`). Splits of the savepoint keep their positions; new splits start at
the source's start position. See docs/savepoints.md for what that requires of the producers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

from eventapp.errors import SavepointError
from eventapp.partitioning import Partitioner, topic_partitions
from eventapp.savepoint.entries import entry_state_keys, parse_prefix, with_uid
from eventapp.savepoint.reader import Savepoint
from eventapp.state.keys import MIN_TIMESTAMP, decode_key

__all__ = ["SavepointRestore", "plan_restore"]


@dataclass(slots=True)
class SavepointRestore:
    """What each of a worker's splits restores from a savepoint."""

    savepoint: Savepoint
    #: Per split of this worker: its entries (already renamed and filtered).
    entries: dict[str, list[tuple[bytes, bytes]]]
    #: Per split of this worker: its position in the savepoint (``None``: the source's start).
    positions: dict[str, int | None]
    max_timestamps: dict[str, int]
    #: Operators whose state was dropped (allow_non_restored_state).
    dropped: tuple[str, ...] = ()
    resharded: bool = False
    renamed: dict[str, str] = field(default_factory=dict)
    #: Per split of this worker restored from native snapshot files as they are: their directory.
    native: dict[str, Path] = field(default_factory=dict)
    #: Per operator uid (after renames), per state name: the schema the savepoint recorded.
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.savepoint.metadata.id


def plan_restore(
    savepoint: Savepoint,
    *,
    job: str,
    operators: Sequence[str],
    source_splits: Sequence[str],
    splits: Sequence[str],
    partitioner: Partitioner,
    max_parallelism: int,
    allow_non_restored_state: bool = False,
    uid_renames: Mapping[str, str] | None = None,
    backend: str | None = None,
) -> SavepointRestore:
    """Check ``savepoint`` against the job and assign its entries to ``splits`` (this worker's
    splits of ``source_splits``). ``backend``: the job's state backend; a native split of that
    backend restored as it is opens from its files. Raises :class:`SavepointError` naming what does
    not fit."""
    meta = savepoint.metadata
    where = f"--from-savepoint {savepoint.path}"
    if meta.job != job:
        raise SavepointError(
            f"{where} is a savepoint of job {meta.job!r}, not of {job!r}; restore it into the job it "
            f"was taken from (jobs are matched by name), or rewrite it with the savepoint API"
        )
    if meta.max_parallelism != max_parallelism:
        raise SavepointError(
            f"{where} was taken with max_parallelism {meta.max_parallelism}, this job has "
            f"{max_parallelism}: the key groups would not match. Set "
            f"JobConfig(max_parallelism={meta.max_parallelism})"
        )
    renames = dict(uid_renames or {})
    unknown_renames = sorted(old for old in renames if old not in meta.operators)
    if unknown_renames:
        raise SavepointError(
            f"{where}: --rename-uid names operators {unknown_renames} that the savepoint has no state "
            f"for; it has {sorted(meta.operators)}"
        )
    job_operators = set(operators)
    missing = sorted(
        renames.get(uid, uid) for uid in meta.operators if renames.get(uid, uid) not in job_operators
    )
    if missing and not allow_non_restored_state:
        raise SavepointError(
            f"{where} holds state of operators {missing} that this job does not have (its stateful "
            f"operators: {sorted(job_operators)}). If they were renamed, map them with --rename-uid "
            f"OLD=NEW; to drop their state, pass --allow-non-restored-state"
        )
    dropped = tuple(old for old in sorted(meta.operators) if renames.get(old, old) not in job_operators)
    not_read = sorted(s for s in meta.splits if s not in source_splits)
    if not_read:
        raise SavepointError(
            f"{where} holds positions of splits {not_read} that this job's source does not have (it has "
            f"{sorted(source_splits)}): their records would be lost or read twice. Restore into a "
            f"source that reads them (the same topics, at least as many partitions)"
        )
    resharded = sorted(meta.splits) != sorted(source_splits)
    router = _router(source_splits, partitioner) if resharded else None
    mine = set(splits)
    entries: dict[str, list[tuple[bytes, bytes]]] = {s: [] for s in splits}
    native: dict[str, Path] = {}
    drop = set(dropped)
    for split in savepoint.splits():
        if router is None and split not in mine:
            continue
        stored = meta.splits[split]
        as_is = router is None and not drop and not renames
        if as_is and stored.native is not None and stored.native == backend:
            native[split] = savepoint.path / stored.file  # the backend opens its own files
            continue
        if as_is:
            entries[split].extend(savepoint.entries(split))  # as they are: nothing to look at
            continue
        _assign(
            savepoint.entries(split),
            f"{where}, split {split!r}",
            split if router is None else router(split),
            {s: entries[s] for s in mine},
            drop,
            renames,
        )
    positions: dict[str, int | None] = {}
    max_timestamps: dict[str, int] = {}
    for split in splits:
        state = meta.splits.get(split)
        positions[split] = None if state is None else state.position
        max_timestamps[split] = MIN_TIMESTAMP if state is None else state.max_timestamp
    return SavepointRestore(
        savepoint=savepoint,
        entries=entries,
        positions=positions,
        max_timestamps=max_timestamps,
        dropped=dropped,
        resharded=resharded,
        renamed=renames,
        native=native,
        schemas={
            renames.get(uid, uid): dict(op.schemas) for uid, op in meta.operators.items() if uid not in drop
        },
    )


def _assign(
    items: Iterable[tuple[bytes, bytes]],
    where: str,
    target: str | _Route,
    mine: dict[str, list[tuple[bytes, bytes]]],
    drop: set[str],
    renames: Mapping[str, str],
) -> None:
    """Append each entry of one old split to the list of the split it now belongs to (``target``:
    the split, or a route by encoded key), leaving out dropped operators and renaming uids.

    The hot loop of re-sharding, a chunk of entries at a time: a chunk of one state (or timer
    domain) of an operator neither dropped nor renamed is routed with list comprehensions and one
    partitioner call for the chunk; any other chunk entry by entry."""
    if isinstance(target, str):
        _assign_each(items, where, target, mine, drop, renames)
        return
    _, many, names = target
    appends = [_discard if mine.get(name) is None else mine[name].append for name in names]
    iterator = iter(items)
    while chunk := list(islice(iterator, _CHUNK)):
        keys = list(map(_KEY, chunk))
        prefix, parsed = parse_prefix(keys[0], where)
        if (
            parsed.uid in drop
            or parsed.uid in renames
            or not all(map(bytes.startswith, keys, repeat(prefix)))
        ):
            _assign_each(chunk, where, target, mine, drop, renames)
            continue
        state_keys = entry_state_keys(keys, len(prefix), parsed.kind == "state", where)
        for partition, row in zip(many(state_keys), chunk, strict=True):
            appends[partition](row)


def _discard(row: tuple[bytes, bytes]) -> None:
    """Where entries of splits another worker restores go."""


def _assign_each(
    items: Iterable[tuple[bytes, bytes]],
    where: str,
    target: str | _Route,
    mine: dict[str, list[tuple[bytes, bytes]]],
    drop: set[str],
    renames: Mapping[str, str],
) -> None:
    """:func:`_assign`, one entry at a time (entries come in runs of one state or timer domain,
    and the run's prefix is parsed once)."""
    fixed = mine.get(target) if isinstance(target, str) else None
    part, lists = (None, []) if isinstance(target, str) else (target[0], [mine.get(n) for n in target[2]])
    from_bytes = int.from_bytes
    prefix, start, body, is_state, skip = b"\xff", 0, 0, False, False  # b"\xff" matches no entry
    new_prefix: bytes | None = None
    for key, value in items:
        if not key.startswith(prefix):
            prefix, parsed = parse_prefix(key, where)
            start, is_state = len(prefix), parsed.kind == "state"
            skip = parsed.uid in drop
            renamed = renames.get(parsed.uid)
            new_prefix = None if renamed is None else with_uid(prefix, renamed)
            body = start if new_prefix is None else len(new_prefix)  # where the key part starts
        if skip:
            continue
        if new_prefix is not None:
            key = new_prefix + key[start:]
        if part is None:
            if fixed is not None:
                fixed.append((key, value))
            continue
        # entry_key() inlined: this runs once per entry when re-sharding.
        if is_state:
            size = from_bytes(key[body : body + 4], "big")
            key_bytes = key[body + 4 : body + 4 + size]
        else:
            key_bytes = key[body + 8 :]
        found = lists[part(key_bytes)]
        if found is not None:
            found.append((key, value))


_KEY = itemgetter(0)
#: Entries routed at a time when re-sharding.
_CHUNK = 4096

#: The partition number of an encoded key, and the split names by partition number.
_Route = tuple[Callable[[bytes], int], Callable[[list[bytes]], list[int]], list[str]]


def _router(source_splits: Iterable[str], partitioner: Partitioner) -> Callable[[str], _Route]:
    """For an old split: the function that maps an encoded key to the partition of the old split's
    topic that the key's records now go to, and those partitions' split names."""
    partitions = topic_partitions(source_splits)
    if partitions is None:
        raise SavepointError(
            f"cannot re-shard state onto splits {sorted(source_splits)}: re-sharding needs splits named "
            f"'<topic>-<partition>' (Kafka's), numbered 0..N-1 per topic; restore onto the same "
            f"splits instead"
        )

    def for_split(old_split: str) -> _Route:
        topic = old_split.rpartition("-")[0]
        count = partitions.get(topic)
        if count is None:
            raise SavepointError(f"cannot re-shard split {old_split!r}: the job reads no topic {topic!r}")
        names = [f"{topic}-{i}" for i in range(count)]
        fast: Callable[[int], Callable[[bytes], int]] | None = getattr(
            partitioner, "encoded_partitioner", None
        )
        if fast is not None:
            single = fast(count)
            batch: Callable[[int], Callable[[list[bytes]], list[int]]] | None = getattr(
                partitioner, "encoded_partitions", None
            )
            return single, (batch(count) if batch is not None else _mapped(single)), names
        # Another partitioner: decode the key; a key's state and timers are several entries (all
        # in one old split), partitioned once.
        partition = partitioner.partition
        numbers: dict[bytes, int] = {}

        def number(encoded_key: bytes) -> int:
            found = numbers.get(encoded_key)
            if found is None:
                found = numbers[encoded_key] = partition(decode_key(encoded_key), count)
            return found

        return number, _mapped(number), names

    return for_split


def _mapped(single: Callable[[bytes], int]) -> Callable[[list[bytes]], list[int]]:
    return lambda keys: list(map(single, keys))
