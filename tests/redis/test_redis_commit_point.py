"""The Redis commit point against a real redis-server: committed checkpoints survive, a newer owner
fences an older one, checkpoint ids only grow, and a damaged record is refused."""

from __future__ import annotations

import uuid

import pytest

from eventapp import CheckpointError, ProducerFencedError, RestoreError
from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.connectors.redis import RedisStreamSource, RedisStreamSourceConfig
from tests.support.redis_server import RedisServer


def source(url: str) -> RedisStreamSource:
    return RedisStreamSource(
        RedisStreamSourceConfig(url=url, streams=["orders:0"], commit_prefix=f"t:{uuid.uuid4().hex}:")
    )


def test_a_committed_checkpoint_is_recovered(redis_server: RedisServer) -> None:
    src = source(redis_server.url)
    first = src.create_commit_point("job", "orders:0", True)
    assert first.recover() is None
    first.commit(CommittedCheckpoint(1, "chk-1", (5 << 64) | 2))
    first.commit(CommittedCheckpoint(2, "chk-2", None))
    again = src.create_commit_point("job", "orders:0", True)
    assert again.recover() == CommittedCheckpoint(2, "chk-2", None)
    again.commit(CommittedCheckpoint(3, "chk-3", (7 << 64) | 0))
    assert src.create_commit_point("job", "orders:0", True).recover() == CommittedCheckpoint(
        3, "chk-3", 7 << 64
    )


def test_a_newer_owner_fences_the_older_one(redis_server: RedisServer) -> None:
    src = source(redis_server.url)
    old = src.create_commit_point("job", "orders:0", True)
    old.recover()
    old.commit(CommittedCheckpoint(1, "chk-1", 10))
    new = src.create_commit_point("job", "orders:0", True)
    assert new.recover() == CommittedCheckpoint(1, "chk-1", 10)
    with pytest.raises(ProducerFencedError, match="newer owner recovered the split"):
        old.commit(CommittedCheckpoint(2, "zombie", 20))
    new.commit(CommittedCheckpoint(2, "chk-2", 20))
    assert src.create_commit_point("job", "orders:0", True).recover() == CommittedCheckpoint(2, "chk-2", 20)


def test_checkpoint_ids_only_grow(redis_server: RedisServer) -> None:
    point = source(redis_server.url).create_commit_point("job", "orders:0", True)
    point.recover()
    point.commit(CommittedCheckpoint(4, "chk-4", 1))
    with pytest.raises(CheckpointError, match="STALE"):
        point.commit(CommittedCheckpoint(4, "again", 2))


def test_a_damaged_record_is_refused(redis_server: RedisServer) -> None:
    src = source(redis_server.url)
    point = src.create_commit_point("job", "orders:0", True)
    client = redis_server.client()
    client.hset(point.key, mapping={"checkpoint_id": "x", "snapshot": "s", "position": ""})
    with pytest.raises(RestoreError, match="is not eventapp's"):
        point.recover()
