"""State backends: where keyed state and timers live (see :mod:`eventapp.state.store`).

* :class:`MemoryStateBackend`: on the heap; fastest, for tests and small state.
* :class:`RocksDBStateBackend`: on local disk with bounded memory and incremental snapshots.
"""

from __future__ import annotations

from eventapp.statebackends.memory import MemoryStateBackend, MemoryStateStore
from eventapp.statebackends.rocksdb import RocksDBConfig, RocksDBStateBackend, RocksDBStateStore

__all__ = [
    "MemoryStateBackend",
    "MemoryStateStore",
    "RocksDBConfig",
    "RocksDBStateBackend",
    "RocksDBStateStore",
]
