"""Writes savepoints: split by split, then ``_metadata`` last (a directory without it is incomplete)."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventapp._fs import fsync_directory, write_atomically
from eventapp.errors import SavepointError
from eventapp.savepoint.format import (
    METADATA,
    OperatorSummary,
    SavepointMetadata,
    SplitState,
)
from eventapp.savepoint.native import digest_tree, link_tree
from eventapp.savepoint.state_file import WrittenStateFile, write_state_file

__all__ = ["SavepointWriter", "new_savepoint_dir", "writing_savepoint"]


def new_savepoint_dir(target: Path, job: str) -> Path:
    """A new, empty savepoint directory under ``target`` (created if missing), named as Flink
    names them: ``savepoint-<job>-<UTC time>-<random>``."""
    safe_job = "".join(c if c.isalnum() or c in "-_." else "_" for c in job)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = target / f"savepoint-{safe_job}-{stamp}-{secrets.token_hex(3)}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise SavepointError(f"cannot create savepoint directory {path}: {exc}; check --target") from exc
    return path


class _OperatorCounts:
    __slots__ = ("bytes", "keys", "schemas", "state_bytes", "states", "timers")

    def __init__(self) -> None:
        self.states: dict[str, int] = {}
        self.state_bytes: dict[str, int] = {}
        self.timers: dict[str, int] = {}
        self.schemas: dict[str, dict[str, Any]] = {}
        self.keys = 0
        self.bytes = 0


class SavepointWriter:
    """Builds one savepoint in ``directory`` (which must exist and be empty).

    Call :meth:`add_split` once per split, then :meth:`finish`. Entries are the store's own
    ``(key, value)`` pairs (what :meth:`KeyedStateStore.scan` returns).
    """

    def __init__(
        self,
        directory: Path,
        *,
        job: str,
        max_parallelism: int,
        partitioner: str,
        origin: str,
        backend: str | None,
    ) -> None:
        if not directory.is_dir() or any(directory.iterdir()):
            raise SavepointError(f"savepoint directory {directory} must exist and be empty")
        self.directory = directory
        self._job = job
        self._max_parallelism = max_parallelism
        self._partitioner = partitioner
        self._origin = origin
        self._backend = backend
        self._splits: dict[str, SplitState] = {}
        self._operators: dict[str, _OperatorCounts] = {}
        self._files = 0
        (directory / "state").mkdir()

    def add_split(
        self,
        split: str,
        entries: Iterable[tuple[bytes, bytes]],
        *,
        position: int | None,
        max_timestamp: int,
        checkpoint_id: int = 0,
        snapshot: str | None = None,
        schemas: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> SplitState:
        """Write the state file of ``split``; returns what ``_metadata`` will say of it.
        ``schemas``: per operator uid, per state name, the schema of the state (see
        :mod:`eventapp.state.schema`), recorded for the operators the entries hold state of."""
        self._check_new(split)
        relative = self.reserve_file("entries")
        written = write_state_file(self.directory, relative, split, entries, self._max_parallelism)
        return self.add_written_split(
            split,
            written,
            position=position,
            max_timestamp=max_timestamp,
            checkpoint_id=checkpoint_id,
            snapshot=snapshot,
            schemas=schemas,
        )

    def reserve_file(self, suffix: str) -> str:
        """A new state file's path (relative to the savepoint directory) ending in ``.suffix``: for
        :meth:`add_split`, or for a state file written elsewhere (another process) and added with
        :meth:`add_written_split`."""
        relative = f"state/split-{self._files:04d}.{suffix}"
        self._files += 1
        return relative

    def add_written_split(
        self,
        split: str,
        written: WrittenStateFile,
        *,
        position: int | None,
        max_timestamp: int,
        checkpoint_id: int = 0,
        snapshot: str | None = None,
        schemas: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> SplitState:
        """Add ``split`` as the state file ``written`` (:func:`write_state_file`, to a path from
        :meth:`reserve_file`); arguments as :meth:`add_split`'s."""
        self._check_new(split)
        for run in written.runs:
            counts = self._counts(run.uid)
            table = counts.states if run.kind == "state" else counts.timers
            table[run.name] = table.get(run.name, 0) + run.entries
            if run.kind == "state":
                counts.state_bytes[run.name] = counts.state_bytes.get(run.name, 0) + run.bytes
            counts.bytes += run.bytes
        for uid, keys in written.keys.items():  # a key's entries are in one split
            self._counts(uid).keys += keys
        for uid, states in (schemas or {}).items():
            if uid in self._operators:
                self._operators[uid].schemas.update(states)
        state = SplitState(
            position=position,
            max_timestamp=max_timestamp,
            checkpoint_id=checkpoint_id,
            snapshot=snapshot,
            file=written.file,
            size=written.size,
            sha256=written.sha256,
            entries=written.entries,
        )
        self._splits[split] = state
        return state

    def add_native_split(
        self,
        split: str,
        files: Path,
        *,
        backend: str,
        operators: Iterable[str],
        position: int | None,
        max_timestamp: int,
        checkpoint_id: int,
        snapshot: str | None,
        schemas: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> SplitState:
        """Add ``split`` as the files of its ``backend`` snapshot directory ``files`` (hard links,
        see :mod:`eventapp.savepoint.native`). Entries are not read, so they are not counted: the
        operators are the checkpoint's (``operators``), their counts -1."""
        self._check_new(split)
        relative = self.reserve_file(backend)
        target = self.directory / relative
        target.mkdir()
        try:
            link_tree(files, target)
            size, sha256 = digest_tree(target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # the snapshot was pruned while linked
            raise
        for uid in operators:
            counts = self._counts(uid)
            counts.keys = counts.bytes = -1
            states = (schemas or {}).get(uid, {})
            counts.schemas.update(states)
            for name in states:
                counts.states[name] = -1
        state = SplitState(
            position=position,
            max_timestamp=max_timestamp,
            checkpoint_id=checkpoint_id,
            snapshot=snapshot,
            file=relative,
            size=size,
            sha256=sha256,
            entries=-1,
            native=backend,
        )
        self._splits[split] = state
        return state

    def _check_new(self, split: str) -> None:
        if split in self._splits:
            raise SavepointError(f"split {split!r} was added to savepoint {self.directory} twice")

    def _counts(self, uid: str) -> _OperatorCounts:
        counts = self._operators.get(uid)
        if counts is None:
            counts = self._operators[uid] = _OperatorCounts()
        return counts

    def finish(self, *, backend: str | None = None) -> SavepointMetadata:
        """Write ``_metadata``: the savepoint is complete. ``backend`` overrides the backend
        named at construction (the one the state came from)."""
        metadata = SavepointMetadata(
            id=secrets.token_hex(8),
            job=self._job,
            created_ms=int(time.time() * 1000),
            max_parallelism=self._max_parallelism,
            partitioner=self._partitioner,
            origin=self._origin,
            backend=backend if backend is not None else self._backend,
            operators={
                uid: OperatorSummary(
                    states=dict(sorted(c.states.items())),
                    state_bytes=dict(sorted(c.state_bytes.items())),
                    schemas={name: dict(c.schemas[name]) for name in sorted(c.schemas) if name in c.states},
                    timers=dict(sorted(c.timers.items())),
                    keys=c.keys,
                    bytes=c.bytes,
                )
                for uid, c in self._operators.items()
            },
            splits=dict(self._splits),
        )
        fsync_directory(self.directory / "state")
        write_atomically(self.directory / METADATA, metadata.dumps())
        return metadata


@contextmanager
def writing_savepoint(
    target: Path, *, job: str, max_parallelism: int, partitioner: str, origin: str
) -> Iterator[SavepointWriter]:
    """A :class:`SavepointWriter` in a new savepoint directory under ``target``; if the block
    fails, the half-written directory is removed. Call :meth:`SavepointWriter.finish` in it."""
    directory = new_savepoint_dir(target, job)
    try:
        yield SavepointWriter(
            directory,
            job=job,
            max_parallelism=max_parallelism,
            partitioner=partitioner,
            origin=origin,
            backend=None,
        )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
