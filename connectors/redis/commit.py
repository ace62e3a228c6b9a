"""The commit point of a Redis Streams split: its committed checkpoint kept in Redis, fenced.

A split's committed checkpoint is the hash ``<prefix><job>:<split>`` with the fields
``checkpoint_id``, ``snapshot``, ``position`` (the encoded entry id to read next, see
:mod:`eventapp.connectors.redis.stream_ids`) and ``epoch``. :meth:`RedisCommitPoint.recover`
fences every earlier owner of the split by incrementing ``epoch`` (``HINCRBY``, atomic) and reads
the checkpoint; :meth:`RedisCommitPoint.commit` writes a checkpoint with one Lua script that
refuses it when the epoch moved on (a newer owner recovered the split: this one is a zombie) or the
checkpoint id does not grow. So of two instances that both believe they own a split, only the one
that recovered last can commit, as with Kafka's ``init_transactions``.

There is no transaction for sinks to write into: Kafka sinks of a Redis-sourced job are
at-least-once, and the Redis sink's exactly-once mode (which applies its writes after the commit,
fenced by its own token) is exactly-once.

With a consumer group (the source's ``group``), :meth:`RedisCommitPoint.commit` then acknowledges
the entries the commit covers: after its script succeeded, a second script takes this consumer's
pending entries of the stream up to the last committed entry id (``XPENDING <stream> <group> -
<position - 1> <n> <consumer>``) and acknowledges them (``XACK``), ``n`` at a time, each batch
atomically. So an entry is acknowledged only once a committed checkpoint covers it. A failed
acknowledgement is logged (``redis.commit_point.ack_failed``) and does not fail the commit: the
checkpoint is committed, the entries stay pending, and the next commit acknowledges them (a
restored reader skips and acknowledges pending entries below its position too).
"""

from __future__ import annotations

from typing import Any, Final

import redis
import redis.exceptions
import structlog

from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.errors import CheckpointError, ConfigurationError, ProducerFencedError, RestoreError

from .errors import describe_redis_error, safe_url
from .stream_ids import MAX_POSITION, format_id

__all__ = ["RedisCommitPoint"]

log = structlog.get_logger(__name__)

_COMMIT: Final = r"""
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch ~= ARGV[1] then
  return redis.error_reply('FENCED epoch ' .. tostring(epoch))
end
local current = tonumber(redis.call('HGET', KEYS[1], 'checkpoint_id') or '0')
if tonumber(ARGV[2]) <= current then
  return redis.error_reply('STALE checkpoint ' .. ARGV[2] .. ' is not after ' .. current)
end
redis.call('HSET', KEYS[1], 'checkpoint_id', ARGV[2], 'snapshot', ARGV[3], 'position', ARGV[4])
return 1
"""

#: Acknowledge up to ARGV[4] of consumer ARGV[2]'s pending entries of stream KEYS[1] in group
#: ARGV[1] with ids up to ARGV[3]; returns how many there were.
_ACK: Final = r"""
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', ARGV[3], ARGV[4], ARGV[2])
if #pending == 0 then
  return 0
end
local ids = {}
for i, entry in ipairs(pending) do
  ids[i] = entry[1]
end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
return #ids
"""

#: Entries acknowledged per script call (Lua's ``unpack`` has a limit of a few thousand values).
_ACK_BATCH: Final = 1000


class RedisCommitPoint:
    """Committed checkpoints of one split in Redis (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        url: str,
        key: str,
        split: str,
        *,
        group: str | None = None,
        consumer: str | None = None,
    ) -> None:
        """``split`` is the stream; with ``group`` and ``consumer``, a commit acknowledges the
        consumer's entries it covers (see the module docstring)."""
        if (group is None) != (consumer is None):
            raise ConfigurationError(
                f"RedisCommitPoint of split {split!r}: give both group and consumer (to acknowledge "
                f"committed entries), or neither; got group={group!r}, consumer={consumer!r}"
            )
        self._client = client
        self._url = url
        self.key = key
        self.split = split
        self.group = group
        self.consumer = consumer
        self._epoch: int | None = None
        self._script: Any = None
        self._ack_script: Any = None

    def __repr__(self) -> str:
        return f"RedisCommitPoint({self.key!r} on {safe_url(self._url)})"

    @property
    def transaction(self) -> None:
        return None

    def recover(self, *, has_committed_snapshots: bool = True) -> CommittedCheckpoint | None:
        """Fence earlier owners (a new epoch) and return the committed checkpoint, if any."""
        try:
            self._epoch = int(self._client.hincrby(self.key, "epoch", 1))
            fields = self._client.hmget(self.key, ["checkpoint_id", "snapshot", "position"])
        except redis.exceptions.RedisError as exc:
            raise RestoreError(
                f"cannot read the committed checkpoint of split {self.split!r} from Redis "
                f"{safe_url(self._url)} (key {self.key!r}): {describe_redis_error(exc)}"
            ) from exc
        log.info("redis.commit_point.recovered", split=self.split, key=self.key, epoch=self._epoch)
        checkpoint_id, snapshot, position = fields
        if checkpoint_id is None:
            return None
        try:
            return CommittedCheckpoint(
                checkpoint_id=int(checkpoint_id),
                snapshot=_text(snapshot),
                position=None if position in (None, b"", "") else int(position),
            )
        except (TypeError, ValueError) as exc:
            raise RestoreError(
                f"the committed checkpoint of split {self.split!r} in Redis key {self.key!r} is not "
                f"eventapp's ({fields!r}); restore the key from a backup, or delete it to start the "
                f"split from scratch (its state is then lost)"
            ) from exc

    def commit(self, checkpoint: CommittedCheckpoint) -> None:
        if self._epoch is None:
            raise CheckpointError(f"commit point of split {self.split!r}: commit() before recover()")
        if self._script is None:
            self._script = self._client.register_script(_COMMIT)
        position = "" if checkpoint.position is None else str(checkpoint.position)
        try:
            self._script(
                keys=[self.key],
                args=[self._epoch, checkpoint.checkpoint_id, checkpoint.snapshot, position],
            )
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise ProducerFencedError(
                    f"split {self.split!r}: checkpoint {checkpoint.checkpoint_id} was not committed: a "
                    f"newer owner recovered the split (Redis key {self.key!r}, {exc}); this instance "
                    f"must stop processing it",
                    split=self.split,
                ) from exc
            raise CheckpointError(
                f"split {self.split!r}: checkpoint {checkpoint.checkpoint_id} was refused by Redis key "
                f"{self.key!r}: {exc}"
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise CheckpointError(
                f"split {self.split!r}: committing checkpoint {checkpoint.checkpoint_id} to Redis "
                f"{safe_url(self._url)} failed: {describe_redis_error(exc)}; the split restarts from its "
                f"last committed checkpoint"
            ) from exc
        if self.group is not None and checkpoint.position is not None:
            self._acknowledge(checkpoint.checkpoint_id, checkpoint.position)

    def _acknowledge(self, checkpoint_id: int, position: int) -> None:
        """XACK this consumer's pending entries of the stream below ``position`` (committed)."""
        if not 0 < position <= MAX_POSITION + 1:
            return  # nothing read yet (or not a stream position): nothing to acknowledge
        if self._ack_script is None:
            self._ack_script = self._client.register_script(_ACK)
        last = format_id(position - 1)
        acked = 0
        try:
            while True:
                found = int(
                    self._ack_script(keys=[self.split], args=[self.group, self.consumer, last, _ACK_BATCH])
                )
                acked += found
                if found < _ACK_BATCH:
                    break
        except redis.exceptions.RedisError as exc:
            log.warning(
                "redis.commit_point.ack_failed",
                split=self.split,
                group=self.group,
                consumer=self.consumer,
                checkpoint_id=checkpoint_id,
                up_to=last,
                acked=acked,
                error=describe_redis_error(exc),
                effect="the checkpoint is committed; its entries stay pending and the next commit "
                "acknowledges them",
            )
            return
        log.debug("redis.commit_point.acked", split=self.split, group=self.group, up_to=last, acked=acked)

    def close(self) -> None:
        """Nothing to release (the client belongs to the source)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
