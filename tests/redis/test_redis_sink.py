"""The Redis sink against a real redis-server: exactly-once writes are applied only once their
checkpoint committed, once however often the checkpoint is committed again, never in part; and the
at-least-once pipeline. Jobs run in the local runtime on collection sources."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from eventapp import (
    CheckpointConfig,
    Collector,
    ConfigurationError,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ManualClock,
    RestoreError,
    SinkError,
    ValueStateDescriptor,
)
from eventapp.connectors.collection import CollectionSource
from eventapp.connectors.redis.commands import HSet, IncrBy, RedisCommand, Set, XAdd, ZAdd
from eventapp.connectors.redis.sink import RedisSink
from eventapp.connectors.redis.sink_config import RedisDelivery, RedisSinkConfig
from eventapp.runtime.two_phase import PREPARED_DIR
from eventapp.statebackends import MemoryStateBackend
from tests.support.redis_server import RedisServer


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"t:{request.node.name[:40]}:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client(decode_responses=True)
    yield c
    c.close()


class Count(KeyedProcessFunction[str, str, tuple[str, int]]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: str, ctx: Context, out: Collector[tuple[str, int]]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect((value, n))


def by_key(value: str) -> int:
    """Each key in one split (the job trusts it: partitioned_by_source)."""
    return sum(value.encode())


def commands_of(prefix: str) -> Any:
    def mapper(item: tuple[str, int]) -> list[RedisCommand]:
        key, n = item
        return [
            IncrBy(f"{prefix}:hits:{key}", 1),  # a duplicate would show
            HSet(f"{prefix}:last:{key}", {"n": n}),
            XAdd(f"{prefix}:log", {"key": key, "n": n}),
        ]

    return mapper


def make_job(
    source: CollectionSource[str], sink: RedisSink, storage: Path | None, name: str = "redis-sink"
) -> Job:
    checkpoint = None if storage is None else CheckpointConfig(storage=storage, interval_ms=3_600_000)
    job = Job(
        name, JobConfig(state_backend=MemoryStateBackend(), clock=ManualClock(0), checkpoint=checkpoint)
    )
    job.from_source(source).key_by(lambda v: v, partitioned_by_source=True).process(
        Count(), uid="count"
    ).sink_to(sink)
    return job


def eos_sink(url: str, prefix: str, **kwargs: Any) -> RedisSink:
    return RedisSink(
        RedisSinkConfig(url=url, mapper=commands_of(prefix), token_prefix=f"{prefix}:token:", **kwargs)
    )


def test_exactly_once_writes_appear_only_when_their_checkpoint_commits(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    source: CollectionSource[str] = CollectionSource(
        ["a", "b", "a"], splits=2, partitioner=by_key, bounded=False
    )
    runner = make_job(source, eos_sink(redis_server.url, prefix), tmp_path / "chk").runner()
    runner.run_until_idle()
    assert client.get(f"{prefix}:hits:a") is None  # processed, not checkpointed: not applied
    runner.checkpoint()
    assert client.get(f"{prefix}:hits:a") == "2"
    assert client.hgetall(f"{prefix}:last:a") == {"n": "2"}
    assert client.xlen(f"{prefix}:log") == 3
    source.add("a")
    runner.run_until_idle()
    runner.close()  # a crash: the last record's writes were never committed
    assert client.get(f"{prefix}:hits:a") == "2"

    restored = make_job(source, eos_sink(redis_server.url, prefix), tmp_path / "chk").runner()
    restored.run_until_idle()
    restored.checkpoint()
    restored.close()
    assert client.get(f"{prefix}:hits:a") == "3"  # the record after the checkpoint: once
    assert client.hgetall(f"{prefix}:last:a") == {"n": "3"}
    assert client.xlen(f"{prefix}:log") == 4


def test_a_committed_checkpoint_that_could_not_be_applied_is_applied_by_the_next_run_once(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    """Redis is unreachable when the checkpoint has committed: the job fails, naming the server (not
    its password); the writes stay with the committed snapshot, and the next run applies them
    before it reads on, once (the fencing token keeps later runs from applying them again)."""
    from eventapp.embedded_broker import find_free_port

    source: CollectionSource[str] = CollectionSource(["a", "a", "b"], bounded=True)
    storage = tmp_path / "chk"
    down = f"redis://:secret@127.0.0.1:{find_free_port()}/0"
    with pytest.raises(SinkError) as failed:
        make_job(source, eos_sink(down, prefix), storage).runner().run()
    text = str(failed.value)
    assert "127.0.0.1" in text and "secret" not in text and "reachable" in text
    assert "applied again when the split restores" in text
    assert len(list(storage.rglob(f"{PREPARED_DIR}/*.prepared"))) == 1

    for _ in range(2):
        make_job(source, eos_sink(redis_server.url, prefix), storage).runner().run()
        assert client.get(f"{prefix}:hits:a") == "2"
        assert client.get(f"{prefix}:hits:b") == "1"
        assert client.xlen(f"{prefix}:log") == 3


def test_a_checkpoint_is_applied_in_chunks_each_once(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    keys = [f"k{i}" for i in range(25)]
    source: CollectionSource[str] = CollectionSource(keys * 2, bounded=True)
    sink = eos_sink(redis_server.url, prefix, chunk_size=7)
    make_job(source, sink, tmp_path / "chk").runner().run()
    assert all(client.get(f"{prefix}:hits:{k}") == "2" for k in keys)
    (token,) = client.keys(f"{prefix}:token:*")
    assert client.hgetall(token) == {"checkpoint": "1", "chunk": str((50 * 3 - 1) // 7)}


def test_a_wrong_type_key_fails_the_chunk_before_anything_is_written(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    client.rpush(f"{prefix}:last:b", "a list, not a hash")
    source: CollectionSource[str] = CollectionSource(["a", "b"], bounded=True)
    with pytest.raises(SinkError) as failed:
        make_job(source, eos_sink(redis_server.url, prefix), tmp_path / "chk").runner().run()
    text = str(failed.value)
    assert f"HSET {prefix}:last:b" in text and "WRONGTYPE" in text and "holds a list" in text
    assert "restart the job" in text
    assert client.get(f"{prefix}:hits:a") is None  # nothing of the chunk was applied
    assert client.exists(f"{prefix}:log") == 0

    # Fixed, the restarted job applies the committed checkpoint: each record once.
    client.delete(f"{prefix}:last:b")
    make_job(source, eos_sink(redis_server.url, prefix), tmp_path / "chk").runner().run()
    assert client.get(f"{prefix}:hits:a") == "1" and client.get(f"{prefix}:hits:b") == "1"
    assert client.xlen(f"{prefix}:log") == 2


def test_incrby_on_a_value_that_is_not_an_integer_applies_nothing(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    client.set(f"{prefix}:hits:b", "not a number")
    source: CollectionSource[str] = CollectionSource(["a", "b"], bounded=True)
    with pytest.raises(SinkError, match="not an integer"):
        make_job(source, eos_sink(redis_server.url, prefix), tmp_path / "chk").runner().run()
    assert client.get(f"{prefix}:hits:a") is None


def test_commands_with_ttls_and_sorted_sets(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    def mapper(item: tuple[str, int]) -> list[RedisCommand]:
        key, n = item
        return [Set(f"{prefix}:s:{key}", n, ttl_ms=600_000), ZAdd(f"{prefix}:z", {key: float(n)})]

    source: CollectionSource[str] = CollectionSource(["a", "b", "b"], bounded=True)
    sink = RedisSink(RedisSinkConfig(url=redis_server.url, mapper=mapper, token_prefix=f"{prefix}:token:"))
    make_job(source, sink, tmp_path / "chk").runner().run()
    assert client.get(f"{prefix}:s:b") == "2"
    assert 0 < client.pttl(f"{prefix}:s:b") <= 600_000
    assert client.zrange(f"{prefix}:z", 0, -1, withscores=True) == [("a", 1.0), ("b", 2.0)]


def test_at_least_once_pipelines_writes_as_they_come(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    source: CollectionSource[str] = CollectionSource(["a", "b", "a"] * 10, bounded=True)
    sink = eos_sink(redis_server.url, prefix, delivery=RedisDelivery.AT_LEAST_ONCE, pipeline_size=4)
    make_job(source, sink, None).runner().run()  # no checkpointing needed
    assert client.get(f"{prefix}:hits:a") == "20"
    assert client.xlen(f"{prefix}:log") == 30
    assert client.keys(f"{prefix}:token:*") == []


def test_at_least_once_reports_the_failing_command(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    client.rpush(f"{prefix}:hits:a", "x")
    source: CollectionSource[str] = CollectionSource(["a"], bounded=True)
    sink = eos_sink(redis_server.url, prefix, delivery="at_least_once")
    with pytest.raises(SinkError, match=r"WRONGTYPE.*delete or rename it"):
        make_job(source, sink, None).runner().run()


def test_exactly_once_needs_checkpointing(redis_server: RedisServer, prefix: str) -> None:
    source: CollectionSource[str] = CollectionSource(["a"], bounded=True)
    with pytest.raises(ConfigurationError, match="no checkpointing"):
        make_job(source, eos_sink(redis_server.url, prefix), None).runner().run()


def test_a_snapshot_with_writes_of_a_sink_the_job_lost_is_refused(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    source: CollectionSource[str] = CollectionSource(["a"], bounded=True)
    make_job(source, eos_sink(redis_server.url, prefix), tmp_path / "chk").runner().run()
    other = RedisSink(
        RedisSinkConfig(
            url=redis_server.url, mapper=commands_of(prefix), name="renamed", token_prefix=f"{prefix}:t:"
        )
    )
    with pytest.raises(RestoreError, match=r"'redis'.*no two-phase sink of that name"):
        make_job(source, other, tmp_path / "chk").runner().run()


def test_configuration_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="mapper="):
        RedisSinkConfig()
    with pytest.raises(ConfigurationError, match="delivery must be one of"):
        RedisSinkConfig(mapper=lambda v: None, delivery="twice")
    with pytest.raises(ConfigurationError, match="chunk_size"):
        RedisSinkConfig(mapper=lambda v: None, chunk_size=0)
    with pytest.raises(ConfigurationError, match="ttl_ms"):
        Set("k", "v", ttl_ms=0).to_wire()
    with pytest.raises(ConfigurationError, match="must be str, bytes, int or float"):
        Set("k", None).to_wire()  # type: ignore[arg-type]


def test_counts_match_an_oracle_over_many_checkpoints(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    """Checkpoints between batches of records, crashes (close without a final checkpoint) after
    some of them: every record's INCRBY is applied exactly once."""
    keys = [f"k{i % 7}" for i in range(300)]
    source: CollectionSource[str] = CollectionSource(splits=3, partitioner=by_key, bounded=False)
    storage = tmp_path / "chk"
    fed = 0
    for run in range(4):
        runner = make_job(source, eos_sink(redis_server.url, prefix), storage).runner()
        runner.run_until_idle()
        for _ in range(3):
            for key in keys[fed : fed + 20]:
                source.add(key)
            fed += 20
            runner.run_until_idle()
            runner.checkpoint()
        if run < 3:
            for key in keys[fed : fed + 5]:  # read but never committed: replayed by the next run
                source.add(key)
            fed += 5
            runner.run_until_idle()
        runner.close()
    expected = Counter(keys[:fed])
    found = {k: int(client.get(f"{prefix}:hits:{k}") or 0) for k in expected}
    assert fed == 255
    assert found == dict(expected)
    assert client.xlen(f"{prefix}:log") == fed
