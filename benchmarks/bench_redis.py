"""Records/s through the Redis sink, exactly-once and at-least-once, against hand-written loops.

Workload: ``--records`` values ``(key, n)`` over ``--keys`` keys from an in-memory source (4 splits,
partitioned by key) -> a keyed count (memory state) -> ``RedisSink`` writing ``INCRBY hits:<key>``
and ``HSET last:<key> n <n>`` per record (two commands). *exactly-once*: held per split, stored with
each checkpoint (every ``--interval-ms``) and applied by the fencing Lua script in chunks;
*at-least-once*: batches of ``pipeline_size`` commands, each applied by one script. *raw*: the same
two commands per record written by hand with a redis-py pipeline of 1,000 commands (no state, no checkpoints);
*raw-script*: the same by hand in msgpack batches of 1,000 commands applied by the at-least-once
sink's script, the trick both sink modes use (the fair floor). Each round runs all four on a
fresh key prefix of the same embedded Redis (the order rotates) and checks the counters; the ratios
are taken inside the round.

    .venv/bin/python -m benchmarks.bench_redis [--records 200000] [--keys 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import redis

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
from eventapp.connectors.redis.apply_script import APPLY_UNFENCED_SCRIPT
from eventapp.connectors.redis.commands import HSet, IncrBy, RedisCommand
from eventapp.connectors.redis.embedded import EmbeddedRedis
from eventapp.connectors.redis.sink import RedisSink
from eventapp.connectors.redis.sink_config import RedisDelivery, RedisSinkConfig
from eventapp.statebackends import MemoryStateBackend

SPLITS = 4


class Count(KeyedProcessFunction[str, str, tuple[str, int]]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: str, ctx: Context, out: Collector[tuple[str, int]]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect((value, n))


def mapper(prefix: str) -> Callable[[tuple[str, int]], list[RedisCommand]]:
    def commands(item: tuple[str, int]) -> list[RedisCommand]:
        key, n = item
        return [IncrBy(f"{prefix}:hits:{key}"), HSet(f"{prefix}:last:{key}", {"n": n})]

    return commands


def eventapp_run(url: str, values: list[str], delivery: RedisDelivery, interval_ms: int, tmp: Path) -> float:
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    source: CollectionSource[str] = CollectionSource(values, splits=SPLITS, partitioner=lambda v: hash(v))
    sink = RedisSink(
        RedisSinkConfig(url=url, mapper=mapper(prefix), delivery=delivery, token_prefix=f"{prefix}:token:")
    )
    checkpoint = CheckpointConfig(storage=tmp / prefix, interval_ms=interval_ms)
    job = Job(
        f"bench-redis-{delivery.value}", JobConfig(state_backend=MemoryStateBackend(), checkpoint=checkpoint)
    )
    job.from_source(source).key_by(lambda v: v, partitioned_by_source=True).process(
        Count(), uid="count"
    ).sink_to(sink)
    runner = job.runner()
    runner.open()
    began = time.perf_counter()
    runner.run()
    elapsed = time.perf_counter() - began
    check(url, prefix, values)
    return len(values) / elapsed


def raw_run(url: str, values: list[str]) -> float:
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)
    counts: dict[str, int] = {}
    began = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    pending = 0
    for key in values:
        n = counts[key] = counts.get(key, 0) + 1
        pipe.execute_command("INCRBY", f"{prefix}:hits:{key}", 1)
        pipe.execute_command("HSET", f"{prefix}:last:{key}", "n", n)
        pending += 2
        if pending >= 1_000:
            pipe.execute()
            pending = 0
    if pending:
        pipe.execute()
    elapsed = time.perf_counter() - began
    client.close()
    check(url, prefix, values)
    return len(values) / elapsed


def raw_script_run(url: str, values: list[str]) -> float:
    """The same by hand with eventapp's trick: msgpack batches of 1,000 commands applied by a script
    (the at-least-once sink's script), no state, no checkpoints."""
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)
    script = client.register_script(APPLY_UNFENCED_SCRIPT)
    counts: dict[str, int] = {}
    began = time.perf_counter()
    batch: list[list[bytes]] = []
    for key in values:
        n = counts[key] = counts.get(key, 0) + 1
        batch.append([b"INCRBY", f"{prefix}:hits:{key}".encode(), b"", b"1"])
        batch.append([b"HSET", f"{prefix}:last:{key}".encode(), b"", b"n", str(n).encode()])
        if len(batch) >= 1_000:
            script(args=[msgpack.packb(batch, use_bin_type=False)])
            batch = []
    if batch:
        script(args=[msgpack.packb(batch, use_bin_type=False)])
    elapsed = time.perf_counter() - began
    client.close()
    check(url, prefix, values)
    return len(values) / elapsed


def check(url: str, prefix: str, values: Sequence[str]) -> None:
    """Every key's counter equals its number of records (a lost or doubled write fails the run)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    expected: dict[str, int] = {}
    for key in values:
        expected[key] = expected.get(key, 0) + 1
    keys = list(expected)
    found: list[Any] = []
    for start in range(0, len(keys), 1_000):
        found += client.mget([f"{prefix}:hits:{k}" for k in keys[start : start + 1_000]])
    client.close()
    wrong = [(k, f) for k, f in zip(keys, found, strict=True) if int(f or 0) != expected[k]]
    assert not wrong, f"counters differ from the input: {wrong[:5]}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval-ms", type=int, default=1_000)
    args = parser.parse_args(argv)
    values = [f"k{i % args.keys}" for i in range(args.records)]
    sides: list[tuple[str, Callable[[str, Path], float]]] = [
        ("raw", lambda url, tmp: raw_run(url, values)),
        ("raw-script", lambda url, tmp: raw_script_run(url, values)),
        (
            "exactly-once",
            lambda url, tmp: eventapp_run(url, values, RedisDelivery.EXACTLY_ONCE, args.interval_ms, tmp),
        ),
        (
            "at-least-once",
            lambda url, tmp: eventapp_run(url, values, RedisDelivery.AT_LEAST_ONCE, args.interval_ms, tmp),
        ),
    ]
    results: dict[str, list[float]] = {name: [] for name, _ in sides}
    ratios: dict[str, list[float]] = {"raw-script": [], "exactly-once": [], "at-least-once": []}
    fair: dict[str, list[float]] = {"exactly-once": [], "at-least-once": []}
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory(prefix="eventapp-bench-redis-") as tmp:
        print(
            f"Redis sink benchmark: {args.records:,} records, {args.keys:,} keys, 2 commands per record, "
            f"{SPLITS} splits, checkpoints every {args.interval_ms} ms; {server!r}; "
            f"load {os.getloadavg()[0]:.2f}"
        )
        for round_ in range(args.rounds):
            order = sides[round_ % len(sides) :] + sides[: round_ % len(sides)]
            got = {name: run(server.url, Path(tmp)) for name, run in order}
            for name, rate in got.items():
                results[name].append(rate)
            for name in ratios:
                ratios[name].append(got[name] / got["raw"])
            for name in fair:
                fair[name].append(got[name] / got["raw-script"])
            print(
                f"  round {round_ + 1}: "
                + ", ".join(f"{n} {r:,.0f} rec/s" for n, r in got.items())
                + f"; load {os.getloadavg()[0]:.2f}"
            )
    print("\n  side            median rec/s   / raw   / raw-script   (ratios: medians of the rounds)")
    for name, rates in results.items():
        ratio = "" if name == "raw" else f"{statistics.median(ratios[name]):.2f}"
        to_fair = f"{statistics.median(fair[name]):.2f}" if name in fair else ""
        print(f"  {name:14s} {statistics.median(rates):13,.0f}   {ratio:>5s}   {to_fair:>10s}")


if __name__ == "__main__":
    main()
