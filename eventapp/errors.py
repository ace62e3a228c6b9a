"""The eventapp exception hierarchy. Every error eventapp raises derives from :class:`EventAppError`."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CheckpointError",
    "ConfigurationError",
    "EventAppError",
    "JobFailedError",
    "JobManagerError",
    "ObjectNotFoundError",
    "ObjectStoreError",
    "ProducerFencedError",
    "RecordProcessingError",
    "RestoreError",
    "SavepointError",
    "SerializationError",
    "SinkError",
    "SnapshotCorruptError",
    "SnapshotMissingError",
    "SourceError",
    "StateError",
    "StateSchemaError",
    "SupersededError",
    "WindowError",
]

_MAX_RECORD_REPR = 200


def describe_record(value: Any) -> str:
    """A bounded, printable description of a record for error messages."""
    text = repr(value)
    if len(text) > _MAX_RECORD_REPR:
        return text[:_MAX_RECORD_REPR] + f"... ({len(text)} chars)"
    return text


class EventAppError(Exception):
    """Root of every error raised by eventapp."""


class ConfigurationError(EventAppError, ValueError):
    """Invalid configuration, detected at construction. The message says how to fix it."""


class SerializationError(EventAppError):
    """A value could not be serialized or deserialized."""


class StateError(EventAppError):
    """Keyed state was used incorrectly (for example outside a keyed context)."""


class SourceError(EventAppError):
    """A source failed to read."""


class SinkError(EventAppError):
    """A sink failed to write or commit."""


class CheckpointError(EventAppError):
    """A checkpoint could not be taken or committed."""


class ObjectStoreError(CheckpointError):
    """A request to the object store (S3-compatible) holding checkpoints failed: the endpoint is
    unreachable, the credentials are refused, the bucket does not exist, or a transfer broke off.
    The message names the endpoint, bucket and key, and how to fix it (see ``docs/object-storage.md``)."""


class ObjectNotFoundError(ObjectStoreError):
    """The object store has no object under the key (the message names it)."""


class ProducerFencedError(CheckpointError):
    """The split's transactional producer was fenced: a newer owner of the split (same
    ``transactional.id``) called ``init_transactions()``, which aborted this owner's open transaction.

    This instance must stop processing the split: its outputs since the last committed checkpoint are
    aborted and its state is stale. Do not retry with the same producer; the split now belongs to the
    newer owner (if this process should still own it, restart it: recovery fences the other one).
    """

    def __init__(
        self, message: str, *, split: str | None = None, transactional_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.split = split
        self.transactional_id = transactional_id


class SupersededError(ProducerFencedError):
    """A newer instance of the job claimed the split (see
    :mod:`eventapp.connectors.kafka.ownership`): this instance steps back and must not retry. The
    ``eventapp run`` worker exits with code 3."""


class RestoreError(EventAppError):
    """A job could not be restored from a checkpoint or savepoint."""


class SavepointError(RestoreError):
    """A savepoint could not be written, read or restored; the message names the file, operator or
    state and the fix. A failed restore from a savepoint restores nothing."""


class StateSchemaError(RestoreError):
    """A restored state's stored schema does not fit the state the job declares (an incompatible
    serializer or dataclass change); the message names the operator, state and field and the fix.
    Raised when the state is registered, before it is used; never dead-lettered."""


class SnapshotMissingError(RestoreError):
    """The snapshot named by the committed checkpoint does not exist."""


class SnapshotCorruptError(RestoreError):
    """The snapshot named by the committed checkpoint exists but cannot be read."""


class RecordProcessingError(EventAppError):
    """A user function raised while processing one record.

    Names the operator, the key and the record, and the source position when there is one.
    """

    def __init__(
        self,
        *,
        operator: str,
        key: Any,
        record: Any,
        split: str | None,
        position: int | None,
        cause: BaseException,
    ) -> None:
        self.operator = operator
        self.key = key
        self.record = record
        self.split = split
        self.position = position
        self.cause = cause
        where = ""
        if split is not None:
            where = f" from {split}" + (f" at offset {position}" if position is not None else "")
        key_part = "" if key is None else f" for key {describe_record(key)}"
        super().__init__(
            f"operator '{operator}' failed{key_part} on record {describe_record(record)}{where}: "
            f"{type(cause).__name__}: {cause}. Fix the function, or set "
            f"JobConfig(error_policy=ErrorPolicy.dead_letter(sink)) to route failing records "
            f"to a dead-letter sink instead of stopping the job."
        )


class WindowError(EventAppError):
    """A window assigner, trigger, evictor or window aggregation raised, or a record cannot be
    windowed (an event-time window without a timestamp); the message names which and the window.
    Like any failure of a record's processing it follows the job's error policy."""


class JobManagerError(EventAppError):
    """The job manager (``eventapp run --parallelism N``) or its REST API refused or failed a
    request; the message says why and what to do. The CLI's ``list``/``status``/``stop``/``cancel``
    commands exit 1 with it."""


class JobFailedError(EventAppError):
    """A job stopped because of an error; ``__cause__`` holds the original error."""
