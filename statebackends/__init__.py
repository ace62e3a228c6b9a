"""State backends: where keyed state and timers live (see :mod:`eventapp.state.store`).

Installed as ``eventapp.statebackends`` (see ``connectors/__init__.py`` for how the folder is mapped).

* :class:`MemoryStateBackend`: on the heap; fastest, for tests and small state.
* :class:`RocksDBStateBackend`: on local disk with bounded memory and incremental snapshots.
"""

from __future__ import annotations

if __name__ != "eventapp.statebackends":
    raise ImportError(
        f"this folder is the package eventapp.statebackends, imported here as {__name__!r}: import "
        f"eventapp.statebackends (a second name would load second copies of every class)"
    )

# The imports follow the guard on purpose.

from .memory import MemoryStateBackend, MemoryStateStore
from .rocksdb import RocksDBConfig, RocksDBStateBackend, RocksDBStateStore

__all__ = [
    "MemoryStateBackend",
    "MemoryStateStore",
    "RocksDBConfig",
    "RocksDBStateBackend",
    "RocksDBStateStore",
]
