"""The transaction seam: the open transaction of one split.

A split's commit point owns its transaction (when the job runs exactly-once through a commit point
that has one). The split task hands it to the split's sink writers in their
:class:`~eventapp.sink.SinkContext`: a sink that can write inside it must (the Kafka sink produces
into a :class:`~eventapp.connectors.kafka.transaction.KafkaTransaction`), and a sink that cannot is
at-least-once. The commit point commits it atomically with the split's checkpoint, and aborts it
when the split closes or fails: everything written into it since the last checkpoint is then
discarded together with the state it came from.

Records are written into the transaction only once they are final: under the dead-letter error
policy a record's outputs are held by its split task until the record succeeded, so a failed
record's writes are simply never applied.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Transaction"]


@runtime_checkable
class Transaction(Protocol):
    """The open transaction of one split (implemented by each connector that has transactions)."""

    @property
    def split(self) -> str:
        """The split whose outputs it holds."""
        ...

    def describe(self) -> str:
        """What it is, for error messages (``"Kafka transaction 'job-orders-0'"``)."""
        ...
