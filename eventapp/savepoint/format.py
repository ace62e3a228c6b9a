"""The savepoint format: a self-contained, movable directory.

::

    savepoint-<job>-<time>-<random>/
        _metadata                  JSON, written last: job, operators, splits, files, checksums
        state/split-0000.entries   one file per split: its store entries, grouped by key group

``_metadata`` (format 1) names the job, its ``max_parallelism`` and partitioner, every operator
uid with its states (entries, bytes and schema per state), timers and key count, and for every
split its source position,
largest timestamp (watermark), the checkpoint it came from, and its state file by **relative path**
with the file's size, SHA-256 and entry count. It carries the SHA-256 of its own content
(``checksum``, over the sorted JSON without that field), so a truncated or edited file is refused.

A state file is a msgpack stream: a header ``{"format": 2, "split": ...}``, then for every key
group that has entries its number (an int) followed by one array ``[entry key, entry value]`` per
store entry of the group, groups ascending and entries sorted by key. Entries are
the store's own ``bytes -> bytes`` (the layout of :mod:`eventapp.state.keys`), which every backend
shares: this *canonical* format restores into any backend. Values stay serialized by their state's
serializer (msgpack by default); nothing in a savepoint is unpickled or executed on load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from eventapp._fs import hash_file
from eventapp.errors import SavepointError
from eventapp.savepoint.native import digest_tree

__all__ = [
    "METADATA",
    "SAVEPOINT_FORMAT",
    "STATE_FILE_FORMAT",
    "OperatorSummary",
    "SavepointMetadata",
    "SplitState",
    "iter_state_file",
    "verify_state_file",
]

SAVEPOINT_FORMAT = 1
METADATA = "_metadata"
KIND = "eventapp-savepoint"


@dataclass(frozen=True, slots=True)
class OperatorSummary:
    """What a savepoint holds of one operator."""

    #: Entries per state name.
    states: dict[str, int] = field(default_factory=dict)
    #: Pending timers per domain (``event_time`` / ``processing_time``).
    timers: dict[str, int] = field(default_factory=dict)
    #: Distinct keys with state or timers (summed over splits).
    keys: int = 0
    #: Bytes of the entries (keys and values).
    bytes: int = 0
    #: Bytes of the entries per state name.
    state_bytes: dict[str, int] = field(default_factory=dict)
    #: Per state name, its schema (``StateSchema.to_json()``; see :mod:`eventapp.state.schema`).
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "states": self.states,
            "timers": self.timers,
            "keys": self.keys,
            "bytes": self.bytes,
            "state_bytes": self.state_bytes,
            "schemas": self.schemas,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OperatorSummary:
        return cls(
            states={str(k): int(v) for k, v in data["states"].items()},
            timers={str(k): int(v) for k, v in data["timers"].items()},
            keys=int(data["keys"]),
            bytes=int(data["bytes"]),
            state_bytes={str(k): int(v) for k, v in data.get("state_bytes", {}).items()},
            schemas={str(k): dict(v) for k, v in data.get("schemas", {}).items()},
        )


@dataclass(frozen=True, slots=True)
class SplitState:
    """One split of a savepoint: where its source stood and its state file."""

    #: The next record to read (``None``: the split had not been read).
    position: int | None
    #: The largest event timestamp the split had seen (its watermark restarts from it).
    max_timestamp: int
    #: The checkpoint the split's state came from (0 when written from Python).
    checkpoint_id: int
    #: The checkpoint snapshot it came from (``None`` when written from Python).
    snapshot: str | None
    #: The state file, relative to the savepoint directory.
    file: str
    size: int
    sha256: str
    #: Entries in the file (-1: not counted, a native split).
    entries: int
    #: The state backend whose snapshot files ``file`` (a directory) holds, for a native split
    #: (see :mod:`eventapp.savepoint.native`); ``None``: a canonical entries file.
    native: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "max_timestamp": self.max_timestamp,
            "checkpoint_id": self.checkpoint_id,
            "snapshot": self.snapshot,
            "file": self.file,
            "size": self.size,
            "sha256": self.sha256,
            "entries": self.entries,
            "native": self.native,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SplitState:
        position = data["position"]
        snapshot = data["snapshot"]
        return cls(
            position=None if position is None else int(position),
            max_timestamp=int(data["max_timestamp"]),
            checkpoint_id=int(data["checkpoint_id"]),
            snapshot=None if snapshot is None else str(snapshot),
            file=str(data["file"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            entries=int(data["entries"]),
            native=None if data.get("native") is None else str(data["native"]),
        )


@dataclass(frozen=True, slots=True)
class SavepointMetadata:
    """The content of ``_metadata``."""

    #: Unique per savepoint: a split restored from it remembers it (see docs/savepoints.md).
    id: str
    job: str
    created_ms: int
    max_parallelism: int
    #: The job's partitioner when the savepoint was taken (``Partitioner.describe()``).
    partitioner: str
    #: ``"checkpoints"`` (``eventapp savepoint create``) or ``"writer"`` (the Python API).
    origin: str
    #: The state backend the state came from (``None`` when written from Python).
    backend: str | None
    operators: dict[str, OperatorSummary]
    splits: dict[str, SplitState]
    format: int = SAVEPOINT_FORMAT

    def to_json(self) -> dict[str, Any]:
        body = {
            "kind": KIND,
            "format": self.format,
            "id": self.id,
            "job": self.job,
            "created_ms": self.created_ms,
            "max_parallelism": self.max_parallelism,
            "partitioner": self.partitioner,
            "origin": self.origin,
            "backend": self.backend,
            "operators": {uid: op.to_json() for uid, op in sorted(self.operators.items())},
            "splits": {split: s.to_json() for split, s in sorted(self.splits.items())},
        }
        return {**body, "checksum": _checksum(body)}

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, indent=1).encode()

    @classmethod
    def read(cls, directory: Path) -> SavepointMetadata:
        """Read and check ``directory/_metadata``.

        :raises SavepointError: missing, unreadable, of another format, or its checksum is wrong.
        """
        path = directory / METADATA
        if not directory.is_dir():
            raise SavepointError(
                f"savepoint {directory} does not exist or is not a directory; pass the directory "
                f"'eventapp savepoint create' printed (it holds a _metadata file)"
            )
        if not path.is_file():
            raise SavepointError(
                f"{directory} holds no {METADATA}: it is not a savepoint, or an incomplete one (its "
                f"creation was interrupted); use a complete savepoint, or create a new one"
            )
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise SavepointError(f"{path} is unreadable ({exc}); the savepoint is damaged") from exc
        return cls.loads(content, str(path))

    @classmethod
    def loads(cls, content: bytes, path: str) -> SavepointMetadata:
        """Parse and check the content of a ``_metadata`` file (``path``: where it is, for messages).

        :raises SavepointError: unreadable, of another format, or its checksum is wrong.
        """
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise SavepointError(f"{path} is unreadable ({exc}); the savepoint is damaged") from exc
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise SavepointError(f"{path} is not the metadata of an eventapp savepoint")
        if data.get("format") != SAVEPOINT_FORMAT:
            raise SavepointError(
                f"{path} has savepoint format {data.get('format')!r}; this eventapp reads format "
                f"{SAVEPOINT_FORMAT}: use the eventapp version that wrote it"
            )
        body = {k: v for k, v in data.items() if k != "checksum"}
        if data.get("checksum") != _checksum(body):
            raise SavepointError(
                f"{path}: checksum mismatch, the file was truncated or edited; the savepoint is "
                f"damaged (restore another one, or rewrite it with the savepoint API)"
            )
        try:
            backend = data["backend"]
            return cls(
                id=str(data["id"]),
                job=str(data["job"]),
                created_ms=int(data["created_ms"]),
                max_parallelism=int(data["max_parallelism"]),
                partitioner=str(data["partitioner"]),
                origin=str(data["origin"]),
                backend=None if backend is None else str(backend),
                operators={str(u): OperatorSummary.from_json(o) for u, o in data["operators"].items()},
                splits={str(s): SplitState.from_json(v) for s, v in data["splits"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SavepointError(f"{path} has invalid content ({type(exc).__name__}: {exc})") from exc


def _checksum(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def verify_state_file(directory: Path, split: str, state: SplitState) -> None:
    """Check that a split's state file is there, whole and unchanged.

    :raises SavepointError: naming the file and what is wrong with it.
    """
    path = _state_path(directory, state.file)
    if state.native is not None:
        _verify_native(path, split, state)
        return
    try:
        size = path.stat().st_size
        if size != state.size:
            raise SavepointError(
                f"savepoint file {path} (split {split!r}) has {size} bytes, its metadata says "
                f"{state.size}: it was truncated or replaced; the savepoint is damaged"
            )
        digest = hashlib.sha256()
        hash_file(digest, path)
    except FileNotFoundError as exc:
        raise SavepointError(
            f"savepoint file {path} (split {split!r}) is missing; the savepoint is incomplete (was it "
            f"copied without its state/ directory?)"
        ) from exc
    except OSError as exc:
        raise SavepointError(f"savepoint file {path} (split {split!r}) is unreadable: {exc}") from exc
    if digest.hexdigest() != state.sha256:
        raise SavepointError(
            f"savepoint file {path} (split {split!r}) fails its SHA-256 check: it is corrupted; the "
            f"savepoint is damaged"
        )


def _verify_native(path: Path, split: str, state: SplitState) -> None:
    if not path.is_dir():
        raise SavepointError(
            f"savepoint directory {path} (split {split!r}, native {state.native} snapshot) is missing; the "
            f"savepoint is incomplete (was it copied without its state/ directory?)"
        )
    try:
        size, sha256 = digest_tree(path)
    except OSError as exc:
        raise SavepointError(f"savepoint files {path} (split {split!r}) are unreadable: {exc}") from exc
    if size != state.size or sha256 != state.sha256:
        raise SavepointError(
            f"savepoint files {path} (split {split!r}, native {state.native} snapshot) fail their size or "
            f"SHA-256 check: a file was truncated, changed, added or removed; the savepoint is damaged"
        )


#: Layout of a state file (in its header): 2 = each key group's number, then its rows one by one;
#: 3 = each key group's number, then its rows as one array (packed and read in one call each).
STATE_FILE_FORMAT = 3
_READABLE_FORMATS = (2, 3)


def iter_state_file(directory: Path, split: str, state: SplitState) -> Iterator[tuple[bytes, bytes]]:
    """The ``(entry key, entry value)`` of a split's state file, in key-group order.

    :raises SavepointError: the file does not hold what its metadata says.
    """
    path = _state_path(directory, state.file)
    count = 0
    try:
        with open(path, "rb") as handle:
            # Tuples (use_list=False): each row is yielded as it was read.
            unpacker = msgpack.Unpacker(handle, raw=False, use_list=False, max_buffer_size=1 << 30)
            header = next(unpacker, None)
            if not isinstance(header, dict) or header.get("split") != split:
                raise SavepointError(f"savepoint file {path} is not the state file of split {split!r}")
            layout = header.get("format")
            if layout not in _READABLE_FORMATS:
                raise SavepointError(
                    f"savepoint file {path} has state file format {layout!r}, this eventapp reads "
                    f"{' and '.join(map(str, _READABLE_FORMATS))}: use the eventapp version that wrote it"
                )
            rows_one_by_one = layout == 2
            for item in unpacker:
                if type(item) is int:  # the key group of the rows that follow
                    continue
                if rows_one_by_one:
                    count += 1
                    yield item
                else:
                    count += len(item)
                    yield from item
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise SavepointError(f"savepoint file {path} (split {split!r}) is unreadable: {exc}") from exc
    except OSError as exc:
        raise SavepointError(f"savepoint file {path} (split {split!r}) is unreadable: {exc}") from exc
    if count != state.entries:
        raise SavepointError(
            f"savepoint file {path} (split {split!r}) holds {count} entries, its metadata says "
            f"{state.entries}; the savepoint is damaged"
        )


def _state_path(directory: Path, relative: str) -> Path:
    path = directory / relative
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise SavepointError(f"savepoint {directory}: state file path {relative!r} is not relative to it")
    return path
