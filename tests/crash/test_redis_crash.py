"""Exactly-once into Redis, proven like Kafka: the crash job (``tests/crash/eos_job.py``) also writes
its counts and windows to an exactly-once Redis sink; workers are SIGKILLed at random moments, inside
every checkpoint phase and just before and after the sink applies a committed checkpoint. In the end
every effect in Redis is there exactly once: the INCRBY counters equal the oracle's per-key counts
(a duplicate would show), the stream of ids holds every valid id once, and the windows' hashes and
total equal the oracle; the Kafka output and the state are checked as in the Kafka crash test."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

from eventapp.runtime.faults import FAULT_POINTS
from tests.crash.eos_job import WINDOW_MS
from tests.crash.harness import CrashSetup, Oracle, produce_input, verify_exactly_once
from tests.crash.redis_job import input_streams
from tests.crash.test_exactly_once import CHECKPOINT_PHASES, run_until_done
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.kafka, pytest.mark.crash, pytest.mark.redis]

SINK_PHASES = [p for p in FAULT_POINTS if p.startswith("sink.")]
BASE_TS = 1_780_000_000_000


def test_kafka_to_redis_is_exactly_once_through_sigkills(
    setup: CrashSetup, redis_server: RedisServer, record_property: Callable[..., None]
) -> None:
    prefix = f"crash:{uuid.uuid4().hex[:8]}"
    oracle: Oracle = produce_input(
        setup.bootstrap, setup.input, setup.partitions, records=30_000, keys=150,
        bad_json_every=4_999, bad_type_every=7_919,
    )  # fmt: skip
    phases = [*CHECKPOINT_PHASES, *SINK_PHASES]
    stats = run_until_done(
        setup,
        parallelism=2,
        kills=10,
        seed=20261203,
        env={"CRASH_REDIS_URL": redis_server.url, "CRASH_REDIS_PREFIX": prefix},
        phases=phases,
    )
    splits = [f"{setup.input}-{p}" for p in range(setup.partitions)]
    figures = verify_exactly_once(setup, oracle, splits)

    client = redis_server.client(decode_responses=True)
    try:
        per_key = oracle.per_key()
        hits = {k: int(client.get(f"{prefix}:hits:{k}") or 0) for k in per_key}
        assert hits == dict(per_key), "Redis counters differ from the oracle (INCRBY applied twice or never)"
        entries = client.xrange(f"{prefix}:ids")
        ids = Counter(int(fields["id"]) for _, fields in entries)
        assert ids == Counter({r["id"]: 1 for r in oracle.valid}), "every valid id in the Redis stream once"
        windows: Counter[tuple[str, int, int]] = Counter()
        for key in per_key:
            for w, c in client.hgetall(f"{prefix}:windows:{key}").items():
                windows[(key, int(w), int(c))] += 1
        assert windows == oracle.windows(), "Redis window hashes differ from the oracle"
        assert int(client.get(f"{prefix}:windowed") or 0) == len(oracle.valid)
        tokens = client.keys(f"{prefix}:token:*")
        assert len(tokens) == setup.partitions, tokens
    finally:
        client.close()
    total_kills = stats["random_kills"] + stats["fault_point_kills"]
    figures["redis_effects"] = len(entries) + sum(hits.values())
    print(f"kafka->redis crash test: {stats} {figures}")
    for k, v in {**stats, **figures}.items():
        record_property(k, v)
    assert total_kills >= 12, f"only {total_kills} kills happened ({stats})"
    assert stats["checkpoint_phases_killed_in"] == len(phases), f"a kill inside every phase ({stats})"


def write_stream_input(
    client: redis.Redis, streams: list[str], records: int, keys: int
) -> list[dict[str, Any]]:
    """Key ``k<j>`` lives in stream ``j % len(streams)``; event time grows with the id."""
    written = []
    pipe = client.pipeline(transaction=False)
    for rid in range(records):
        key = f"k{rid % keys}"
        record = {"k": key, "id": rid, "ts": BASE_TS + rid}
        pipe.xadd(streams[(rid % keys) % len(streams)], record)
        written.append(record)
        if rid % 1_000 == 999:
            pipe.execute()
    pipe.execute()
    return written


def assert_redis_effects(client: redis.Redis, prefix: str, written: list[dict[str, Any]]) -> int:
    """Every effect of the Redis-only crash job is in Redis exactly once: the INCRBY counters, the
    stream of ids, the window hashes and their total equal the oracle. Returns the effects found."""
    per_key = Counter(r["k"] for r in written)
    hits = {k: int(client.get(f"{prefix}:hits:{k}") or 0) for k in per_key}
    assert hits == dict(per_key), "Redis counters differ from the oracle (INCRBY applied twice or never)"
    entries = client.xrange(f"{prefix}:ids")
    assert Counter(int(f["id"]) for _, f in entries) == Counter(r["id"] for r in written)
    windows: Counter[tuple[str, int, int]] = Counter()
    for key in per_key:
        for w, c in client.hgetall(f"{prefix}:windows:{key}").items():
            windows[(key, int(w), int(c))] += 1
    expected_windows = Counter((r["k"], (r["ts"] // WINDOW_MS + 1) * WINDOW_MS) for r in written)
    assert windows == Counter({(k, w, c): 1 for (k, w), c in expected_windows.items()})
    assert int(client.get(f"{prefix}:windowed") or 0) == len(written)
    return len(entries) + sum(hits.values())


def test_redis_to_redis_is_exactly_once_through_sigkills(
    setup: CrashSetup, redis_server: RedisServer, record_property: Callable[..., None]
) -> None:
    """Redis Streams in, Redis out, the commit point in Redis: kills at random and in every
    checkpoint and sink phase; every effect exactly once."""
    prefix = f"crash-rr:{uuid.uuid4().hex[:8]}"
    client = redis_server.client(decode_responses=True)
    try:
        written = write_stream_input(client, input_streams(prefix, 4), records=100_000, keys=120)
        phases = [*CHECKPOINT_PHASES, *SINK_PHASES]
        stats = run_until_done(
            setup,
            parallelism=2,
            kills=8,
            seed=20261204,
            env={"CRASH_REDIS_URL": redis_server.url, "CRASH_REDIS_PREFIX": prefix},
            phases=phases,
            target="tests.crash.redis_job:build_job",
        )
        effects = assert_redis_effects(client, prefix, written)
    finally:
        client.close()
    total_kills = stats["random_kills"] + stats["fault_point_kills"]
    print(f"redis->redis crash test: {stats} effects={effects}")
    for k, v in stats.items():
        record_property(k, v)
    assert total_kills >= 10, f"only {total_kills} kills happened ({stats})"
    assert stats["checkpoint_phases_killed_in"] == len(phases), f"a kill inside every phase ({stats})"
