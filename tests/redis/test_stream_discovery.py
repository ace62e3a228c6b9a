"""Discovery of new Redis streams while a job runs (``RedisStreamSourceConfig(pattern=...,
discovery_interval_ms=...)``, :mod:`eventapp.runtime.discovery`), against a real redis-server: a
stream created after the job started is read from its first entry, its split is checkpointed and
restored like the others, two subtasks split the new streams between them by ``owner_of`` without
overlap, and a job may start before any stream exists."""

from __future__ import annotations

import re
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
    SourceError,
    ValueStateDescriptor,
)
from eventapp.assignment import Subtask, owner_of
from eventapp.connectors.collection import CollectionSink
from eventapp.connectors.redis.source import RedisStreamSource
from eventapp.connectors.redis.source_config import RedisStreamSourceConfig
from eventapp.connectors.redis.stream_ids import parse_id
from eventapp.runtime.local import LocalRunner
from eventapp.source import DiscoveringSource, GroupReader, discovers_splits
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

INTERVAL_MS = 1_000


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]
    return f"disc:{name}:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    yield c
    c.close()


def discovering_source(server: RedisServer, prefix: str, **options: Any) -> RedisStreamSource[Any]:
    config = RedisStreamSourceConfig(
        url=server.url, pattern=f"{prefix}:*", discovery_interval_ms=INTERVAL_MS, **options
    )
    return RedisStreamSource(config)


def add(client: redis.Redis, key: str, ns: range) -> None:
    for n in ns:
        client.xadd(key, {"user": f"u{n % 3}", "n": str(n), "stream": key})


class CountPerUser(KeyedProcessFunction[str, dict[str, str], tuple[str, str, int, int]]):
    """Emits (stream, user, n, entries of this user of this stream so far)."""

    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(
        self, value: dict[str, str], ctx: Context, out: Collector[tuple[str, str, int, int]]
    ) -> None:
        state = ctx.get_state(self.count)
        seen = (state.value() or 0) + 1
        state.update(seen)
        out.collect((value["stream"], value["user"], int(value["n"]), seen))


def counting_job(
    server: RedisServer, prefix: str, storage: Path, sink: CollectionSink[Any], clock: ManualClock
) -> Job:
    job = Job(
        "redis-discovery",
        JobConfig(clock=clock, checkpoint=CheckpointConfig(storage=storage, interval_ms=60_000)),
    )
    source = discovering_source(server, prefix, start="latest", batch_size=5)
    keyed = job.from_source(source).key_by(lambda v: f"{v['stream']}/{v['user']}", partitioned_by_source=True)
    keyed.process(CountPerUser(), uid="count").sink_to(sink)
    return job


def discover(runner: LocalRunner, clock: ManualClock) -> None:
    """Let the discovery interval pass, then step until nothing is left to do."""
    clock.advance(INTERVAL_MS)
    runner.run_until_idle()
    runner.run_until_idle()


def last_counts(values: list[tuple[str, str, int, int]]) -> dict[tuple[str, str], int]:
    return {(stream, user): seen for stream, user, _, seen in values}


def expected_counts(streams: dict[str, range]) -> dict[tuple[str, str], int]:
    return dict(Counter((key, f"u{n % 3}") for key, ns in streams.items() for n in ns))


# -- the source ------------------------------------------------------------------------------------


def test_source_is_discovering_only_with_an_interval(redis_server: RedisServer, prefix: str) -> None:
    source = discovering_source(redis_server, prefix)
    assert isinstance(source, DiscoveringSource) and discovers_splits(source)
    assert source.splits() == []  # no stream yet: allowed with discovery
    plain = RedisStreamSource(RedisStreamSourceConfig(url=redis_server.url, pattern=f"{prefix}:*"))
    assert not discovers_splits(plain)
    with pytest.raises(SourceError, match=r"no stream matches.*discovery_interval_ms"):
        plain.splits()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"streams": ["a"], "discovery_interval_ms": 1000}, "needs pattern"),
        ({"pattern": "a:*", "discovery_interval_ms": 0}, "int >= 1"),
        ({"pattern": "a:*", "discovery_interval_ms": True}, "int >= 1"),
        ({"pattern": "a:*", "discovery_interval_ms": 1000, "bounded": True}, "discovers none later"),
    ],
)
def test_discovery_configuration_is_validated(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisStreamSourceConfig(**options)


@pytest.mark.parametrize("group", [None, "discovery-group"])
def test_reader_starts_a_new_stream_at_its_first_entry_even_with_latest(
    redis_server: RedisServer, client: redis.Redis, prefix: str, group: str | None
) -> None:
    old, new, restored = f"{prefix}:old", f"{prefix}:new", f"{prefix}:restored"
    add(client, old, range(3))
    options: dict[str, Any] = {"start": "latest"}
    if group is not None:
        options["group"] = group
    source = discovering_source(redis_server, prefix, **options)
    reader = source.create_reader([old], {})
    assert isinstance(reader, GroupReader)
    assert reader.poll(100, 0) == []  # latest: the three entries before the start are not read
    add(client, new, range(4))
    add(client, restored, range(5))
    third = client.xrange(restored)[2][0]  # restore after the first two entries
    started = reader.start_splits({new: None, restored: parse_id(third)})
    assert started[restored] == parse_id(third)
    records: list[Any] = []
    while batch := reader.poll(100, 0):
        records.extend(batch)
    got = Counter(r.split for r in records)
    assert got == {new: 4, restored: 3}
    assert [int(r.value["n"]) for r in records if r.split == new] == [0, 1, 2, 3]
    with pytest.raises(ConfigurationError, match="already being read"):
        reader.start_splits({new: None})
    reader.close()


# -- a running job -----------------------------------------------------------------------------------


def test_job_reads_streams_created_while_it_runs_exactly_once_across_a_crash(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    first = f"{prefix}:a"
    add(client, first, range(0))
    client.xadd(first, {"user": "u0", "n": "-1", "stream": first})  # before the start: latest skips it
    clock = ManualClock()
    sink: CollectionSink[tuple[str, str, int, int]] = CollectionSink()
    runner = counting_job(redis_server, prefix, tmp_path, sink, clock).runner()
    runner.run_until_idle()
    assert runner.splits == [first]
    add(client, first, range(0, 6))
    second = f"{prefix}:b"
    add(client, second, range(0, 9))  # created while the job runs: read from its first entry
    runner.run_until_idle()
    assert second not in runner.splits  # not before the interval passed
    discover(runner, clock)
    assert sorted(runner.splits) == [first, second]
    assert last_counts(sink.values) == expected_counts({first: range(6), second: range(9)})
    runner.checkpoint()
    add(client, second, range(9, 12))
    runner.run_until_idle()  # processed, not checkpointed: lost with the crash
    runner.close()

    third = f"{prefix}:c"
    add(client, third, range(0, 4))  # while the job is down
    add(client, first, range(6, 8))
    sink2: CollectionSink[tuple[str, str, int, int]] = CollectionSink()
    restored = counting_job(redis_server, prefix, tmp_path, sink2, ManualClock()).runner()
    restored.run_until_idle()
    restored.checkpoint()
    restored.close()
    # The discovered split restored its checkpoint (counts continue); the stream created while the
    # job was down was listed at start (start="latest" applies to it, see docs/redis.md).
    assert sorted(restored.splits) == [first, second, third]
    assert sorted((s, n) for s, _, n, _ in sink2.values) == sorted(
        [(first, n) for n in range(6, 8)] + [(second, n) for n in range(9, 12)]
    )
    assert last_counts(sink2.values) == {
        k: v
        for k, v in expected_counts({first: range(8), second: range(12)}).items()
        if k in last_counts(sink2.values)
    }


def test_job_may_start_before_any_stream_exists(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    clock = ManualClock()
    sink: CollectionSink[tuple[str, str, int, int]] = CollectionSink()
    runner = counting_job(redis_server, prefix, tmp_path, sink, clock).runner()
    assert runner.run_until_idle() == 0 and runner.splits == []
    key = f"{prefix}:late"
    add(client, key, range(5))
    discover(runner, clock)
    assert runner.splits == [key]
    assert sorted(n for _, _, n, _ in sink.values) == list(range(5))
    runner.close()


def test_two_subtasks_split_new_streams_by_owner_without_overlap(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    clock = ManualClock()
    sinks = [CollectionSink[tuple[str, str, int, int]]() for _ in range(2)]
    runners = [
        counting_job(redis_server, prefix, tmp_path, sinks[i], clock).runner(subtask=Subtask(i, 2))
        for i in range(2)
    ]
    for runner in runners:
        runner.run_until_idle()
    streams = {f"{prefix}:s{i}": range(i + 2) for i in range(8)}
    for key, ns in streams.items():
        add(client, key, ns)
    for runner in runners:
        discover(runner, clock)
    for i, runner in enumerate(runners):
        assert sorted(runner.splits) == sorted(k for k in streams if owner_of(k, 2) == i)
        assert {s for s, _, _, _ in sinks[i].values} == set(runner.splits)
    assert set(runners[0].splits).isdisjoint(runners[1].splits)
    assert set(runners[0].splits) | set(runners[1].splits) == set(streams)
    together = sinks[0].values + sinks[1].values
    assert last_counts(together) == expected_counts(streams)
    for runner in runners:
        runner.close()


def test_explicit_splits_without_a_subtask_do_not_discover(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    first = f"{prefix}:a"
    add(client, first, range(2))
    clock = ManualClock()
    sink: CollectionSink[tuple[str, str, int, int]] = CollectionSink()
    runner = counting_job(redis_server, prefix, tmp_path, sink, clock).runner(splits=[first])
    runner.run_until_idle()
    add(client, f"{prefix}:b", range(3))
    discover(runner, clock)
    assert runner.splits == [first]
    runner.close()


def test_discovery_refuses_a_job_with_a_shuffle(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    add(client, f"{prefix}:a", range(1))
    job = Job(
        "redis-discovery-shuffle",
        JobConfig(clock=ManualClock(), checkpoint=CheckpointConfig(storage=tmp_path, interval_ms=60_000)),
    )
    sink: CollectionSink[Any] = CollectionSink()
    source = discovering_source(redis_server, prefix)
    job.from_source(source).key_by(lambda v: v["user"]).process(CountPerUser(), uid="c").sink_to(sink)
    with pytest.raises(ConfigurationError, match="partitioned_by_source=True"):
        job.runner().open()
