"""eventapp: fault-tolerant, event-driven applications in Python.

Keyed state and durable timers in a Flink-style ``KeyedProcessFunction``, memory and RocksDB state
backends, Kafka sources and sinks with checkpoints aligned to committed offsets.
"""

from eventapp.broadcast import (
    BroadcastContext,
    BroadcastProcessFunction,
    BroadcastStream,
    KeyedBroadcastProcessFunction,
    ReadOnlyBroadcastContext,
    ReadOnlyBroadcastTimerContext,
)
from eventapp.checkpoint.commit import CommitPoint, CommittedCheckpoint
from eventapp.checkpoint.object_storage import ObjectCheckpointStorage
from eventapp.checkpoint.restore import RestoreRequest
from eventapp.checkpoint.storage import CheckpointStorage, LocalCheckpointStorage
from eventapp.clock import Clock, ManualClock, SystemClock
from eventapp.config import CheckpointConfig, CheckpointingMode, ErrorPolicy, JobConfig
from eventapp.daemon.restart import (
    ExponentialDelayRestart,
    FailureRateRestart,
    FixedDelayRestart,
    NoRestart,
    RestartStrategy,
)
from eventapp.deadletter import DeadLetter
from eventapp.errors import (
    CheckpointError,
    ConfigurationError,
    EventAppError,
    JobFailedError,
    JobManagerError,
    ObjectNotFoundError,
    ObjectStoreError,
    ProducerFencedError,
    RecordProcessingError,
    RestoreError,
    SavepointError,
    SerializationError,
    SinkError,
    SnapshotCorruptError,
    SnapshotMissingError,
    SourceError,
    StateError,
    StateSchemaError,
    SupersededError,
    WindowError,
)
from eventapp.functions import (
    CoContext,
    Collector,
    Context,
    CoProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OnTimerContext,
    OutputTag,
    RuntimeContext,
    TimeDomain,
    TimerService,
)
from eventapp.log import configure_logging
from eventapp.objectstore.s3 import S3Settings
from eventapp.partitioning import Crc32Partitioner, Murmur2Partitioner, Partitioner
from eventapp.runtime.local import LocalRunner
from eventapp.runtime.stats import JobResult
from eventapp.savepoint import (
    Savepoint,
    SavepointBuilder,
    SavepointTransform,
    SavepointWriter,
    create_savepoint,
)
from eventapp.serialization import (
    DataclassSerializer,
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
)
from eventapp.shuffle import ShuffleChannel, ShuffleEnvelope, ShuffleTransport
from eventapp.sink import Sink, SinkContext, SinkWriter, TwoPhaseSinkWriter
from eventapp.source import PausableReader, Source, SourceReader, SourceRecord
from eventapp.state.descriptors import (
    AggregateFunction,
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    StateVisibility,
    TtlTimeDomain,
    TtlUpdateType,
    ValueStateDescriptor,
)
from eventapp.state.handles import AggregatingState, ListState, MapState, ReducingState, ValueState
from eventapp.state.store import KeyedStateStore, StateBackend
from eventapp.stream import DataStream, Job, KeyedStream, ProcessedStream
from eventapp.transaction import Transaction
from eventapp.watermarks import MAX_WATERMARK, MIN_WATERMARK, WatermarkStrategy

__version__ = "0.1.0"

__all__ = [
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "AggregateFunction",
    "AggregatingState",
    "AggregatingStateDescriptor",
    "BroadcastContext",
    "BroadcastProcessFunction",
    "BroadcastStream",
    "CheckpointConfig",
    "CheckpointError",
    "CheckpointStorage",
    "CheckpointingMode",
    "Clock",
    "CoContext",
    "CoProcessFunction",
    "Collector",
    "CommitPoint",
    "CommittedCheckpoint",
    "ConfigurationError",
    "Context",
    "Crc32Partitioner",
    "DataStream",
    "DataclassSerializer",
    "DeadLetter",
    "ErrorPolicy",
    "EventAppError",
    "ExponentialDelayRestart",
    "FailureRateRestart",
    "FixedDelayRestart",
    "Job",
    "JobConfig",
    "JobFailedError",
    "JobManagerError",
    "JobResult",
    "JsonSerializer",
    "KeyedBroadcastProcessFunction",
    "KeyedCoProcessFunction",
    "KeyedProcessFunction",
    "KeyedStateStore",
    "KeyedStream",
    "ListState",
    "ListStateDescriptor",
    "LocalCheckpointStorage",
    "LocalRunner",
    "ManualClock",
    "MapState",
    "MapStateDescriptor",
    "MsgpackSerializer",
    "Murmur2Partitioner",
    "NoRestart",
    "ObjectCheckpointStorage",
    "ObjectNotFoundError",
    "ObjectStoreError",
    "OnTimerContext",
    "OutputTag",
    "Partitioner",
    "PausableReader",
    "PickleSerializer",
    "ProcessedStream",
    "ProducerFencedError",
    "ReadOnlyBroadcastContext",
    "ReadOnlyBroadcastTimerContext",
    "RecordProcessingError",
    "ReducingState",
    "ReducingStateDescriptor",
    "RestartStrategy",
    "RestoreError",
    "RestoreRequest",
    "RuntimeContext",
    "S3Settings",
    "Savepoint",
    "SavepointBuilder",
    "SavepointError",
    "SavepointTransform",
    "SavepointWriter",
    "SerializationError",
    "Serializer",
    "ShuffleChannel",
    "ShuffleEnvelope",
    "ShuffleTransport",
    "Sink",
    "SinkContext",
    "SinkError",
    "SinkWriter",
    "SnapshotCorruptError",
    "SnapshotMissingError",
    "Source",
    "SourceError",
    "SourceReader",
    "SourceRecord",
    "StateBackend",
    "StateError",
    "StateSchemaError",
    "StateTtlConfig",
    "StateVisibility",
    "SupersededError",
    "SystemClock",
    "TimeDomain",
    "TimerService",
    "Transaction",
    "TtlTimeDomain",
    "TtlUpdateType",
    "TwoPhaseSinkWriter",
    "ValueState",
    "ValueStateDescriptor",
    "WatermarkStrategy",
    "WindowError",
    "__version__",
    "configure_logging",
    "create_savepoint",
]
