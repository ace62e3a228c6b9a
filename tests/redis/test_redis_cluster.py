"""The Redis connectors against a real three-primary Redis Cluster: a hashed stream family spread
over the slots (found by pattern on every node) is read and restored exactly, and the sink applies
writes to keys of many slots once per checkpoint, in both modes; a Redis Streams -> Redis job on
the cluster counts every entry once through a crash."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from eventapp import (
    CheckpointConfig,
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ValueStateDescriptor,
)
from eventapp.connectors.collection import CollectionSource
from eventapp.connectors.redis import (
    IncrBy,
    RedisCommand,
    RedisDelivery,
    RedisSink,
    RedisSinkConfig,
    RedisStreamSource,
    RedisStreamSourceConfig,
    XAdd,
)
from eventapp.statebackends import MemoryStateBackend
from tests.support.redis_cluster import RedisClusterServers

pytestmark = [pytest.mark.redis]

STREAMS = 8


@pytest.fixture
def cluster(redis_cluster: RedisClusterServers) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    return f"c:{uuid.uuid4().hex[:8]}"


class Count(KeyedProcessFunction[str, Any, tuple[str, int]]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: Any, ctx: Context, out: Collector[tuple[str, int]]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect((str(ctx.current_key), n))


def hits(prefix: str) -> Any:
    def commands(item: tuple[str, int]) -> list[RedisCommand]:
        key, n = item
        return [IncrBy(f"{prefix}:hits:{key}"), XAdd(f"{prefix}:log:{key}", {"n": n})]

    return commands


def streams_job(url: str, prefix: str, storage: Path, *, pattern: bool) -> Job:
    streams = [f"{prefix}:orders:{{{i}}}" for i in range(STREAMS)]
    config = RedisStreamSourceConfig(
        url=url,
        cluster=True,
        bounded=True,
        **({"pattern": f"{prefix}:orders:*"} if pattern else {"streams": streams}),  # type: ignore[arg-type]
        commit_prefix=f"{{{prefix}}}:committed:",
    )
    sink = RedisSink(
        RedisSinkConfig(url=url, mapper=hits(prefix), cluster=True, token_prefix=f"{prefix}:token:")
    )
    job = Job(
        "cluster-job",
        JobConfig(
            state_backend=MemoryStateBackend(),
            checkpoint=CheckpointConfig(storage=storage, interval_ms=3_600_000),
        ),
    )
    job.from_source(RedisStreamSource(config)).key_by(lambda v: v["k"], partitioned_by_source=True).process(
        Count(), uid="count"
    ).sink_to(sink)
    return job


def write_entries(cluster: RedisCluster, prefix: str, first: int, count: int) -> list[str]:
    keys = []
    for rid in range(first, first + count):
        key = f"k{rid % 40}"
        cluster.xadd(f"{prefix}:orders:{{{rid % 40 % STREAMS}}}", {"k": key, "id": rid})
        keys.append(key)
    return keys


def test_the_stream_family_spans_several_nodes(cluster: RedisCluster, prefix: str) -> None:
    write_entries(cluster, prefix, 0, STREAMS)
    nodes = {cluster.get_node_from_key(f"{prefix}:orders:{{{i}}}").name for i in range(STREAMS)}
    assert len(nodes) >= 2, nodes  # the test below reads across nodes
    assert len({key_slot(f"{prefix}:orders:{{{i}}}".encode()) for i in range(STREAMS)}) == STREAMS


@pytest.mark.parametrize("pattern", [False, True], ids=["named", "pattern"])
def test_a_redis_only_job_on_the_cluster_counts_every_entry_once_through_a_crash(
    redis_cluster: RedisClusterServers, cluster: RedisCluster, prefix: str, tmp_path: Path, pattern: bool
) -> None:
    storage = tmp_path / "chk"
    keys = write_entries(cluster, prefix, 0, 400)
    runner = streams_job(redis_cluster.url, prefix, storage, pattern=pattern).runner()
    runner.open()
    for _ in range(3):  # part of the input, a checkpoint, a little more, then a crash
        runner.step()
    runner.checkpoint()
    runner.step()
    runner.close()
    keys += write_entries(cluster, prefix, 400, 200)
    streams_job(redis_cluster.url, prefix, storage, pattern=pattern).runner().run()
    expected = Counter(keys)
    assert {k: int(cluster.get(f"{prefix}:hits:{k}") or 0) for k in expected} == dict(expected)
    for key, n in expected.items():
        assert [int(f["n"]) for _, f in cluster.xrange(f"{prefix}:log:{key}")] == list(range(1, n + 1))


def test_the_sink_applies_writes_to_many_slots_once(
    redis_cluster: RedisClusterServers, cluster: RedisCluster, prefix: str, tmp_path: Path
) -> None:
    keys = [f"key-{i}" for i in range(60)]  # spread over the slots of all three nodes
    for delivery in (RedisDelivery.EXACTLY_ONCE, RedisDelivery.AT_LEAST_ONCE):
        run_prefix = f"{prefix}:{delivery.value}"
        sink = RedisSink(
            RedisSinkConfig(
                url=redis_cluster.url, mapper=hits(run_prefix), cluster=True, delivery=delivery,
                token_prefix=f"{run_prefix}:token:", chunk_size=7, pipeline_size=9,
            )
        )  # fmt: skip
        source: CollectionSource[str] = CollectionSource(keys * 3, bounded=True)
        job = Job(
            f"cluster-sink-{delivery.value}",
            JobConfig(
                state_backend=MemoryStateBackend(),
                checkpoint=CheckpointConfig(storage=tmp_path / delivery.value, interval_ms=3_600_000),
            ),
        )
        job.from_source(source).key_by(lambda v: v).process(Count(), uid="count").sink_to(sink)
        job.run()
        if (
            delivery is RedisDelivery.EXACTLY_ONCE
        ):  # restored again: the committed checkpoint is not re-applied
            job.run()
        assert {k: int(cluster.get(f"{run_prefix}:hits:{k}") or 0) for k in keys} == dict.fromkeys(keys, 3)
        assert all(cluster.xlen(f"{run_prefix}:log:{k}") == 3 for k in keys)
