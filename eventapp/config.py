"""Job configuration: frozen dataclasses, validated at construction."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventapp.clock import Clock, SystemClock
from eventapp.errors import ConfigurationError
from eventapp.partitioning import Murmur2Partitioner, Partitioner

if TYPE_CHECKING:
    from eventapp.checkpoint.storage import CheckpointStorage
    from eventapp.sink import Sink
    from eventapp.state.store import StateBackend

__all__ = ["CheckpointConfig", "CheckpointingMode", "ErrorPolicy", "JobConfig"]


class CheckpointingMode(enum.Enum):
    """``EXACTLY_ONCE``: outputs and positions commit atomically with each checkpoint (for Kafka,
    in one transaction; output becomes visible at checkpoint commit). ``AT_LEAST_ONCE``: the same
    snapshots, outputs are flushed before positions commit; after a crash, output since the last
    checkpoint is produced again."""

    EXACTLY_ONCE = "exactly_once"
    AT_LEAST_ONCE = "at_least_once"


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """Periodic checkpoints of every split's state, position and watermark.

    ``storage`` is a :class:`~eventapp.checkpoint.storage.CheckpointStorage`, a directory path
    (local or mounted), or an object store URI ``s3://bucket/prefix`` (an
    :class:`~eventapp.checkpoint.object_storage.ObjectCheckpointStorage` configured from the
    standard AWS environment; see ``docs/object-storage.md``). ``retained`` snapshots per split
    are kept (at least 2).

    ``asynchronous``: whether the splits go on processing while a checkpoint completes (Flink's
    asynchronous snapshot phase; their outputs are held until it committed). ``None`` (default):
    on object storage (its uploads wait on the network), not on a local directory (where waiting
    measured faster, see ``docs/design.md``, "Checkpoints").

    ``max_held_outputs``: how many outputs a worker holds at most while an asynchronous checkpoint
    is in flight; once they are more, the worker waits for that checkpoint before it reads on
    (back-pressure: a slow object store slows the job instead of filling its memory). Checked
    after each batch, so it can be exceeded by up to one batch's outputs.
    """

    storage: CheckpointStorage | str | Path
    interval_ms: int = 5_000
    mode: CheckpointingMode = CheckpointingMode.EXACTLY_ONCE
    retained: int = 2
    asynchronous: bool | None = None
    max_held_outputs: int = 100_000

    def __post_init__(self) -> None:
        if not isinstance(self.interval_ms, int) or self.interval_ms < 10:
            raise ConfigurationError(
                f"CheckpointConfig.interval_ms must be an int >= 10 ms, got {self.interval_ms!r}; "
                f"typical values are 1_000 to 60_000"
            )
        if self.retained < 2:
            raise ConfigurationError(
                f"CheckpointConfig.retained must be >= 2 (the committed snapshot and its predecessor "
                f"are needed for recovery), got {self.retained}"
            )
        if isinstance(self.storage, str) and self.storage.startswith("s3://"):
            from eventapp.objectstore.location import ObjectLocation

            ObjectLocation.parse(self.storage)  # a bad URI fails here, not at the first checkpoint
        elif isinstance(self.storage, str) and "://" in self.storage:
            raise ConfigurationError(
                f"CheckpointConfig.storage {self.storage!r} has an unsupported scheme: use a directory "
                f"path, 's3://bucket/prefix', or a CheckpointStorage instance"
            )
        if not isinstance(self.mode, CheckpointingMode):
            raise ConfigurationError(f"CheckpointConfig.mode must be a CheckpointingMode, got {self.mode!r}")
        if self.asynchronous not in (None, True, False):
            raise ConfigurationError(
                f"CheckpointConfig.asynchronous must be True, False or None (None: asynchronous on "
                f"object storage only), got {self.asynchronous!r}"
            )
        held = self.max_held_outputs
        if not isinstance(held, int) or isinstance(held, bool) or held < 1:
            raise ConfigurationError(
                f"CheckpointConfig.max_held_outputs must be an int >= 1, got {held!r}; it bounds the "
                f"outputs held in memory during an asynchronous checkpoint (default 100_000)"
            )

    def resolved_storage(self) -> CheckpointStorage:
        from eventapp.checkpoint.storage import LocalCheckpointStorage

        if isinstance(self.storage, str) and self.storage.startswith("s3://"):
            from eventapp.checkpoint.object_storage import ObjectCheckpointStorage

            return ObjectCheckpointStorage(self.storage)
        if isinstance(self.storage, str | Path):
            return LocalCheckpointStorage(self.storage)
        return self.storage

    def resolved_asynchronous(self, storage: CheckpointStorage) -> bool:
        """Whether checkpoints into ``storage`` (this config's, resolved) are asynchronous."""
        if self.asynchronous is not None:
            return self.asynchronous
        from eventapp.checkpoint.object_storage import ObjectCheckpointStorage

        return isinstance(storage, ObjectCheckpointStorage)


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """What happens when a user function raises or a record cannot be decoded.

    ``ErrorPolicy.fail()`` (default): the job stops with an error naming the operator, the key,
    the record and its source position. ``ErrorPolicy.dead_letter(sink)``: the record's effects on
    state and output are rolled back, and a :class:`~eventapp.DeadLetter` describing the record and
    the error is written to ``sink`` (inside the same checkpoint/transaction as everything else).
    """

    dead_letter_sink: Sink[Any] | None = None

    @classmethod
    def fail(cls) -> ErrorPolicy:
        return cls()

    @classmethod
    def dead_letter(cls, sink: Sink[Any]) -> ErrorPolicy:
        if sink is None or not hasattr(sink, "create_writer"):
            raise ConfigurationError(
                "ErrorPolicy.dead_letter(sink) needs a Sink (for example a KafkaSink to a "
                "dead-letter topic, or a CollectionSink in tests)"
            )
        return cls(dead_letter_sink=sink)


def _default_backend() -> StateBackend:
    from eventapp.state.store import default_state_backend

    return default_state_backend()


@dataclass(frozen=True, slots=True)
class JobConfig:
    """How a job runs. Every field has a working default."""

    state_backend: StateBackend = field(default_factory=_default_backend)
    checkpoint: CheckpointConfig | None = None
    error_policy: ErrorPolicy = field(default_factory=ErrorPolicy.fail)
    clock: Clock = field(default_factory=SystemClock)
    max_batch_records: int = 1_000
    poll_timeout_s: float = 0.1
    #: How the input's producers partition by key (re-sharding state on restore, see
    #: :mod:`eventapp.partitioning`); Apache Kafka's default partitioner unless declared.
    partitioner: Partitioner = field(default_factory=Murmur2Partitioner)
    #: Number of key groups (Flink's maxParallelism): fixed for the life of the job's state.
    max_parallelism: int = 128

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_parallelism, int)
            or isinstance(self.max_parallelism, bool)
            or not 1 <= self.max_parallelism <= 32_768
        ):
            raise ConfigurationError(
                f"JobConfig.max_parallelism must be an int from 1 to 32768, got {self.max_parallelism!r}; "
                f"keep the default, 128, unless a savepoint of this job was taken with another value"
            )
        if not isinstance(self.partitioner, Partitioner):
            raise ConfigurationError(
                f"JobConfig.partitioner must be a Partitioner (Murmur2Partitioner() or "
                f"Crc32Partitioner()), got {self.partitioner!r}"
            )
        if self.max_batch_records < 1:
            raise ConfigurationError(
                f"JobConfig.max_batch_records must be >= 1, got {self.max_batch_records}"
            )
        if self.poll_timeout_s < 0:
            raise ConfigurationError(f"JobConfig.poll_timeout_s must be >= 0, got {self.poll_timeout_s}")
        if not hasattr(self.state_backend, "open"):
            raise ConfigurationError(
                f"JobConfig.state_backend must be a StateBackend (MemoryStateBackend() or "
                f"RocksDBStateBackend(path)), got {self.state_backend!r}"
            )
