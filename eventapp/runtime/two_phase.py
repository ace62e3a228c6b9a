"""Two-phase sink writers of a split (:class:`~eventapp.sink.TwoPhaseSinkWriter`): their prepared
writes travel with the split's snapshot and are applied once the checkpoint committed.

A checkpoint of a split *prepares* each two-phase writer when it begins (what the split wrote since
the previous checkpoint), stores the prepared bytes in the snapshot directory as
``sinks/<sink name>.prepared`` (fsynced before the snapshot is completed, so they are exactly as
durable as the state), and *commits* each writer after the commit point committed. A split restored
from a committed checkpoint commits its writers again from those files: the process may have died
between the checkpoint's commit and the writers' (the writers skip what they applied already).

Files are named after the sinks, so every two-phase sink of a job needs its own name; a snapshot
holding prepared writes for a sink the job no longer has is refused at restore (those writes
committed and were perhaps never applied: dropping them silently would lose them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from eventapp._fs import fsync_directory
from eventapp.errors import ConfigurationError, RestoreError
from eventapp.sink import Sink, SinkWriter, TwoPhaseSinkWriter

__all__ = ["PREPARED_DIR", "TwoPhaseWriters"]

log = structlog.get_logger("eventapp.runtime")

#: Directory of a snapshot that holds the prepared writes of its split's two-phase writers.
PREPARED_DIR = "sinks"
_SUFFIX = ".prepared"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _file_name(sink_name: str) -> str:
    return _UNSAFE.sub("_", sink_name) + _SUFFIX


@dataclass(frozen=True, slots=True)
class Prepared:
    """One writer's prepared writes for one checkpoint."""

    file_name: str
    writer: TwoPhaseSinkWriter[Any]
    data: bytes


class TwoPhaseWriters:
    """The two-phase writers of one split, by the file their prepared writes go to."""

    __slots__ = ("_writers",)

    def __init__(self, sinks: Sequence[Sink[Any]], writers: Sequence[SinkWriter[Any]]) -> None:
        self._writers: dict[str, TwoPhaseSinkWriter[Any]] = {}
        for sink, writer in zip(sinks, writers, strict=True):
            if not isinstance(writer, TwoPhaseSinkWriter):
                continue
            name = _file_name(sink.name)
            if name in self._writers:
                raise ConfigurationError(
                    f"two sinks of the job are both named {sink.name!r} (as a file name: {name!r}); "
                    f"sinks that apply their writes after each checkpoint (two-phase sinks) keep them "
                    f"with the snapshot under their name: give each a name of its own"
                )
            self._writers[name] = writer

    def __bool__(self) -> bool:
        return bool(self._writers)

    def prepare(self, checkpoint_id: int) -> list[Prepared]:
        """What each writer wrote since the previous checkpoint (the checkpoint's synchronous part)."""
        prepared = []
        for name, writer in self._writers.items():
            data = writer.prepare_commit(checkpoint_id)
            if data is not None:
                prepared.append(Prepared(name, writer, data))
        return prepared

    @staticmethod
    def store(prepared: Sequence[Prepared], snapshot_dir: Path) -> None:
        """Write ``prepared`` into the snapshot directory, durably (before it is completed)."""
        if not prepared:
            return
        directory = snapshot_dir / PREPARED_DIR
        directory.mkdir()
        for item in prepared:
            with open(directory / item.file_name, "xb") as handle:
                handle.write(item.data)
                handle.flush()
                os.fsync(handle.fileno())
        fsync_directory(directory)

    @staticmethod
    def commit(prepared: Sequence[Prepared], checkpoint_id: int) -> None:
        """Apply ``prepared`` (the checkpoint committed)."""
        for item in prepared:
            item.writer.commit(checkpoint_id, item.data)

    def recommit(self, split: str, snapshot_dir: Path, checkpoint_id: int) -> int:
        """Commit again what the committed snapshot ``snapshot_dir`` holds; returns how many writers
        it had prepared writes for.

        :raises RestoreError: it holds prepared writes for a sink this job does not have, or they
            cannot be read.
        """
        directory = snapshot_dir / PREPARED_DIR
        if not directory.is_dir():
            return 0
        try:
            names = sorted(entry.name for entry in os.scandir(directory))
        except OSError as exc:
            raise RestoreError(f"cannot list the prepared sink writes in {directory}: {exc}") from exc
        unknown = [n for n in names if n not in self._writers]
        if unknown:
            raise RestoreError(
                f"the committed checkpoint {checkpoint_id} of split {split!r} ({snapshot_dir}) holds "
                f"writes of the sinks {[n.removesuffix(_SUFFIX) for n in unknown]} that were committed "
                f"but perhaps never applied, and this job has no two-phase sink of that name. Run the "
                f"job with those sinks once more (their writes are applied, then they can go), or "
                f"delete {[str(directory / n) for n in unknown]} to give those writes up knowingly"
            )
        for name in names:
            path = directory / name
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise RestoreError(f"cannot read the prepared sink writes {path}: {exc}") from exc
            self._writers[name].commit(checkpoint_id, data)
        if names:
            log.info(
                "sink.prepared_writes_recommitted",
                split=split,
                checkpoint_id=checkpoint_id,
                sinks=[n.removesuffix(_SUFFIX) for n in names],
            )
        return len(names)
