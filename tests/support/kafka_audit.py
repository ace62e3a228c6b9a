"""The exactly-once audit reader used by the tests: reads a topic's raw record batches and keeps only
records of committed transactions, honouring the control markers (the test broker does not hide
aborted records from read_committed consumers). It is eventapp's transaction-aware log reader; its
own tests are ``tests/infra/test_audit_reader.py``."""

from eventapp.connectors.kafka.txnlog import (
    AuditError,
    AuditRecord,
    AuditResult,
    KafkaProtocolError,
    PartitionAudit,
    RecordBatch,
    audit_topic,
    classify_batches,
    crc32c,
    parse_record_batches,
)

__all__ = [
    "AuditError",
    "AuditRecord",
    "AuditResult",
    "KafkaProtocolError",
    "PartitionAudit",
    "RecordBatch",
    "audit_topic",
    "classify_batches",
    "crc32c",
    "parse_record_batches",
]
