"""Native savepoint splits: a state backend's own snapshot files, kept as they are.

A *native* savepoint (``eventapp savepoint create --type native``, Flink's ``--type native``)
holds, per split, the files of the split's checkpoint snapshot (hard-linked when possible: snapshot
files are never modified in place) instead of a canonical entries file. Creating one costs about
as much as linking and hashing the files; restoring it into the **same backend on the same splits**
opens the files directly (no entry passes through Python). Everything else (another backend,
re-sharding, dropped or renamed operators, reading state from Python) reads its entries through a
scratch store opened from the files (:func:`read_snapshot_entries`), so a native savepoint can do
all a canonical one can, only slower there.

Integrity: ``_metadata`` records every split directory's total size and a SHA-256 over its files
(relative path and content, in sorted order), checked before anything is restored.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eventapp._fs import hash_file, link_or_copy
from eventapp.errors import SavepointError
from eventapp.state.store import KeyedStateStore, StateBackend

__all__ = ["digest_tree", "link_tree", "read_snapshot_entries"]


@contextmanager
def read_snapshot_entries(backend: str, state_dir: Path) -> Iterator[KeyedStateStore]:
    """A store opened from the snapshot ``state_dir`` written by ``backend``, in a scratch
    directory of its own (never the job's working directory, which may be in use)."""
    scratch = Path(tempfile.mkdtemp(prefix="eventapp-savepoint-"))
    instance: StateBackend
    try:
        if backend == "memory":
            instance = importlib.import_module("eventapp.statebackends.memory").MemoryStateBackend()
        elif backend == "rocksdb":
            instance = importlib.import_module("eventapp.statebackends.rocksdb").RocksDBStateBackend(
                scratch, cache_entries=0
            )
        else:
            raise SavepointError(
                f"snapshot {state_dir} was written by state backend {backend!r}, which savepoints "
                f"cannot read (known: memory, rocksdb)"
            )
        store = instance.open("savepoint", restore_from=state_dir)
        try:
            yield store
        finally:
            store.close()
            close = getattr(instance, "close", None)
            if close is not None:
                close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def link_tree(source: Path, target: Path) -> None:
    """Recreate the files under ``source`` at ``target``, hard-linked (copied across filesystems)."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir():
            (target / relative).mkdir(parents=True, exist_ok=True)
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(path, target / relative)


def digest_tree(directory: Path) -> tuple[int, str]:
    """Total size and SHA-256 (over each file's relative path and content, sorted) of ``directory``."""
    digest = hashlib.sha256()
    size = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\x00")
        size += hash_file(digest, path)
    return size, digest.hexdigest()
