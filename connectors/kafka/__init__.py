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

from eventapp.connectors.kafka.commit import KafkaOffsetsCommitPoint, KafkaTransactionalCommitPoint
from eventapp.connectors.kafka.config import (
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
from eventapp.connectors.kafka.errors import ProducerFencedError
from eventapp.connectors.kafka.metadata import CheckpointMarker, decode_metadata, encode_metadata
from eventapp.connectors.kafka.offsets import CommittedSplitState, read_committed_checkpoints
from eventapp.connectors.kafka.sink import KafkaSink, KafkaSinkWriter
from eventapp.connectors.kafka.source import KafkaRecord, KafkaSource, KafkaSourceReader

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
