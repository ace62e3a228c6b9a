"""The write side of the state processor API: bootstrap a savepoint from Python values, or transform
an existing one (drop an operator, rename a uid, rewrite a state with a function) into a new one.

Values are written through the same state handles a job uses (:mod:`eventapp.state.handles`), so a
bootstrapped or rewritten state has exactly the layout, TTL stamps and schema a running job would
have written; the result is an ordinary savepoint (``eventapp run JOB --from-savepoint DIR``). A
transform never changes its input: it writes a new savepoint (NO_CLAIM).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventapp.clock import Clock, SystemClock
from eventapp.errors import SavepointError
from eventapp.functions import TimeDomain
from eventapp.partitioning import Murmur2Partitioner, Partitioner, topic_partitions
from eventapp.runtime.timers import Timers
from eventapp.savepoint.entries import with_uid
from eventapp.savepoint.reader import Savepoint
from eventapp.savepoint.writer import writing_savepoint
from eventapp.state.contents import write_state
from eventapp.state.context import KeyContext
from eventapp.state.descriptors import StateDescriptor
from eventapp.state.inspect import StateInspector
from eventapp.state.keys import MIN_TIMESTAMP, encode_key, operator_state_prefix, operator_timer_prefix
from eventapp.state.registry import StateRegistry
from eventapp.state.schema import schema_of
from eventapp.state.store import KeyedStateStore

__all__ = ["SavepointBuilder", "SavepointTransform"]


def _memory_store(scope: str) -> KeyedStateStore:
    store: KeyedStateStore = importlib.import_module("eventapp.statebackends.memory").MemoryStateStore(scope)
    return store


@dataclass(slots=True)
class _SplitDraft:
    store: KeyedStateStore
    position: int | None = None
    max_timestamp: int = MIN_TIMESTAMP
    checkpoint_id: int = 0
    snapshot: str | None = None


class _StateWriter:
    """Writes values of one operator's states into split stores, through the job's handles."""

    def __init__(self, uid: str, clock: Clock) -> None:
        self.uid = uid
        self.ctx = KeyContext(clock)
        self.registry = StateRegistry(uid, self.ctx)
        self.timers = Timers(uid, self.ctx)

    def enter(self, store: KeyedStateStore, split: str, key: Any) -> None:
        self.ctx.enter(store, split, key, encode_key(key), None)


class SavepointBuilder:
    """A new savepoint of job ``job`` from Python values (Flink's bootstrap transformations).

    ::

        builder = SavepointBuilder("fraud", splits=[f"payments-{p}" for p in range(8)])
        builder.add_state("scorer", Scorer.profile, profiles.items())   # (key, value) pairs
        builder.add_timer("scorer", "card-1", 1_700_000_000_000)
        path = builder.write("/savepoints")

    Each key's state goes to the split its records are read from: ``split_of(key)`` if given, else
    the job's ``partitioner`` over splits named ``<topic>-<partition>`` (one topic). Splits start at
    the source's start position unless :meth:`set_position` says otherwise. ``clock`` stamps TTL'd
    values (processing time) as written now.
    """

    def __init__(
        self,
        job: str,
        splits: Sequence[str],
        *,
        max_parallelism: int = 128,
        partitioner: Partitioner | None = None,
        split_of: Callable[[Any], str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not splits:
            raise SavepointError("SavepointBuilder needs the job's splits, for example ['payments-0', ...]")
        self._job = job
        self._max_parallelism = max_parallelism
        self._partitioner = partitioner or Murmur2Partitioner()
        self._clock = clock or SystemClock()
        self._drafts = {s: _SplitDraft(_memory_store(s)) for s in splits}
        self._split_of = split_of or _partition_router(list(splits), self._partitioner)
        self._writers: dict[str, _StateWriter] = {}
        self._schemas: dict[str, dict[str, dict[str, Any]]] = {}

    def _writer(self, uid: str) -> _StateWriter:
        writer = self._writers.get(uid)
        if writer is None:
            operator_state_prefix(uid)  # checks the uid
            writer = self._writers[uid] = _StateWriter(uid, self._clock)
        return writer

    def _enter(self, uid: str, key: Any) -> _StateWriter:
        split = self._split_of(key)
        draft = self._drafts.get(split)
        if draft is None:
            raise SavepointError(
                f"key {key!r} maps to split {split!r}, which is not one of {sorted(self._drafts)}"
            )
        writer = self._writer(uid)
        writer.enter(draft.store, split, key)
        return writer

    def add_state(
        self, uid: str, descriptor: StateDescriptor[Any], items: Iterable[tuple[Any, Any]]
    ) -> SavepointBuilder:
        """Set ``descriptor``'s state of operator ``uid`` for each ``(key, value)``: a value, a list,
        a dict (map state), or the stored value / accumulator of a reducing / aggregating state."""
        handle = self._writer(uid).registry.get(descriptor)
        for key, value in items:
            self._enter(uid, key)
            write_state(handle, value)
        self._schemas.setdefault(uid, {})[descriptor.name] = schema_of(descriptor).to_json()
        return self

    def add_timer(
        self, uid: str, key: Any, timestamp: int, domain: TimeDomain = TimeDomain.EVENT_TIME
    ) -> SavepointBuilder:
        """A pending timer of operator ``uid`` for ``key``."""
        self._enter(uid, key).timers.register(domain, timestamp)
        return self

    def set_position(
        self, split: str, position: int | None, max_timestamp: int = MIN_TIMESTAMP
    ) -> SavepointBuilder:
        """Where ``split`` continues reading (``None``: the source's start) and its largest timestamp."""
        draft = self._drafts.get(split)
        if draft is None:
            raise SavepointError(f"split {split!r} is not one of {sorted(self._drafts)}")
        draft.position, draft.max_timestamp = position, max_timestamp
        return self

    def write(self, target: str | Path) -> Path:
        """Write the savepoint under ``target``; returns its directory."""
        return _write(
            Path(target),
            self._job,
            self._max_parallelism,
            self._partitioner.describe(),
            "writer",
            self._drafts,
            self._schemas,
        )


class SavepointTransform:
    """A new savepoint from an existing one, changed by the operations called, in order::

        path = (
            SavepointTransform(Savepoint.open("/savepoints/savepoint-..."))
            .drop_operator("old-enricher")
            .rename_uid("scorer", "scorer-v2")
            .rewrite_state("scorer-v2", Scorer.profile, lambda key, p: p if p.active else None)
            .write("/savepoints")
        )

    The input savepoint is never changed.
    """

    def __init__(self, savepoint: Savepoint | str | Path, *, clock: Clock | None = None) -> None:
        self._source = savepoint if isinstance(savepoint, Savepoint) else Savepoint.open(savepoint)
        self._clock = clock or SystemClock()
        self._operations: list[Callable[[str, KeyedStateStore], None]] = []
        self._schemas = {uid: dict(op.schemas) for uid, op in self._source.metadata.operators.items()}

    def _known(self, uid: str) -> None:
        if uid not in self._schemas:
            raise SavepointError(
                f"savepoint {self._source.path} (as transformed so far) has no operator {uid!r}; it has "
                f"{sorted(self._schemas)}"
            )

    def drop_operator(self, uid: str) -> SavepointTransform:
        """Remove every state and timer of operator ``uid``."""
        self._known(uid)
        del self._schemas[uid]

        def drop(_split: str, store: KeyedStateStore) -> None:
            store.delete_prefix(operator_state_prefix(uid))
            store.delete_prefix(operator_timer_prefix(uid))

        self._operations.append(drop)
        return self

    def rename_uid(self, old: str, new: str) -> SavepointTransform:
        """Move operator ``old``'s state and timers to uid ``new`` (which must not have state)."""
        self._known(old)
        operator_state_prefix(new)  # checks the uid
        if new in self._schemas:
            raise SavepointError(f"cannot rename operator {old!r} to {new!r}: {new!r} already has state")
        self._schemas[new] = self._schemas.pop(old)

        def rename(_split: str, store: KeyedStateStore) -> None:
            for prefix in (operator_state_prefix(old), operator_timer_prefix(old)):
                entries = list(store.scan(prefix))
                store.delete_prefix(prefix)
                store.put_all([(with_uid(key, new), value) for key, value in entries])

        self._operations.append(rename)
        return self

    def rewrite_state(
        self,
        uid: str,
        descriptor: StateDescriptor[Any],
        function: Callable[[Any, Any], Any],
        *,
        new_descriptor: StateDescriptor[Any] | None = None,
    ) -> SavepointTransform:
        """Replace each key's value of ``descriptor``'s state by ``function(key, value)`` (``None``
        removes the key's state). With ``new_descriptor`` the result is written by it: another
        serializer, a TTL added or removed, or another state name (the old state is removed)."""
        self._known(uid)
        target = new_descriptor or descriptor
        states = self._schemas[uid]
        states.pop(descriptor.name, None)
        states[target.name] = schema_of(target).to_json()

        def rewrite(split: str, store: KeyedStateStore) -> None:
            # Expired TTL'd values read as absent (against ``clock``) and are removed.
            items = list(StateInspector(store, uid, clock=self._clock).items(descriptor))
            reader, writer = _StateWriter(uid, self._clock), _StateWriter(uid, self._clock)
            old, new = reader.registry.get(descriptor), writer.registry.get(target)
            for key, value in items:
                reader.enter(store, split, key)
                old.clear()
                result = None if value is None else function(key, value)
                if result is not None:
                    writer.enter(store, split, key)
                    write_state(new, result)

        self._operations.append(rewrite)
        return self

    def write(self, target: str | Path) -> Path:
        """Apply the operations split by split and write the new savepoint under ``target``."""
        source = self._source
        meta = source.metadata
        drafts: dict[str, _SplitDraft] = {}
        for split in source.splits():
            state = meta.splits[split]
            store = _memory_store(split)
            store.put_all(source.entries(split))
            for operation in self._operations:
                operation(split, store)
            drafts[split] = _SplitDraft(
                store, state.position, state.max_timestamp, state.checkpoint_id, state.snapshot
            )
        return _write(
            Path(target), meta.job, meta.max_parallelism, meta.partitioner, "transform", drafts, self._schemas
        )


def _write(
    target: Path,
    job: str,
    max_parallelism: int,
    partitioner: str,
    origin: str,
    drafts: dict[str, _SplitDraft],
    schemas: dict[str, dict[str, dict[str, Any]]],
) -> Path:
    with writing_savepoint(
        target, job=job, max_parallelism=max_parallelism, partitioner=partitioner, origin=origin
    ) as writer:
        for split, draft in sorted(drafts.items()):
            writer.add_split(
                split,
                draft.store.scan(b""),
                position=draft.position,
                max_timestamp=draft.max_timestamp,
                checkpoint_id=draft.checkpoint_id,
                snapshot=draft.snapshot,
                schemas=schemas,
            )
        writer.finish()
    return writer.directory


def _partition_router(splits: list[str], partitioner: Partitioner) -> Callable[[Any], str]:
    partitions = topic_partitions(splits)
    if partitions is None or len(partitions) != 1:
        raise SavepointError(
            f"cannot tell which of splits {sorted(splits)} a key belongs to: name them "
            f"'<topic>-0' .. '<topic>-N' of one topic, or pass split_of=function(key) -> split"
        )
    ((topic, count),) = partitions.items()
    return lambda key: f"{topic}-{partitioner.partition(key, count)}"
