"""Kafka connector: source, sink and commit points with exactly-once output.

Each Kafka partition is a split (``"<topic>-<partition>"``) with its own state, checkpoints and commit
point. In exactly-once mode every input partition has its own transactional producer
(``transactional.id = "<prefix>-<topic>-<partition>"``); each checkpoint of the split commits one Kafka
transaction holding the outputs, the partition's next offset and a reference to the checkpoint's
snapshot. See :mod:`eventapp.connectors.kafka.commit` and :mod:`eventapp.connectors.kafka.metadata`.

Example::

    from eventapp.connectors.kafka import (
        DeliveryGuarantee, KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig, StartPosition,
    )

    source = KafkaSource(KafkaSourceConfig(
        bootstrap_servers="localhost:9092", topics=["orders"], group_id="order-totals",
        value_deserializer="json", start_position=StartPosition.committed(),
    ))
    sink = KafkaSink(KafkaSinkConfig(
        bootstrap_servers="localhost:9092", topic="order-totals",
        key_selector=lambda total: total["customer"], delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
    ))
"""

from .commit import KafkaTransactionalCommitPoint
from .commit_offsets import KafkaOffsetsCommitPoint
from .config import (
    DEFAULT_CHECKPOINT_TOPIC,
    DeliveryGuarantee,
    KafkaCommitConfig,
    KafkaSinkConfig,
    KafkaSourceConfig,
    OffsetReset,
    StartPosition,
    parse_split,
    split_id,
    validate_transaction_timeout,
)
from .errors import ProducerFencedError
from .metadata import CheckpointMarker, decode_metadata, encode_metadata
from .offsets import CommittedSplitState, read_committed_checkpoints
from .reader import KafkaSourceReader
from .records import KafkaRecord
from .sink import KafkaSink, KafkaSinkWriter
from .source import KafkaSource
from .transaction import KafkaTransaction

__all__ = [
    "DEFAULT_CHECKPOINT_TOPIC",
    "CheckpointMarker",
    "CommittedSplitState",
    "DeliveryGuarantee",
    "KafkaCommitConfig",
    "KafkaOffsetsCommitPoint",
    "KafkaRecord",
    "KafkaSink",
    "KafkaSinkConfig",
    "KafkaSinkWriter",
    "KafkaSource",
    "KafkaSourceConfig",
    "KafkaSourceReader",
    "KafkaTransaction",
    "KafkaTransactionalCommitPoint",
    "OffsetReset",
    "ProducerFencedError",
    "StartPosition",
    "decode_metadata",
    "encode_metadata",
    "parse_split",
    "read_committed_checkpoints",
    "split_id",
    "validate_transaction_timeout",
]
