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

import pytest

from eventapp.runtime.faults import FAULT_POINTS
from tests.crash.harness import CrashSetup, Oracle, produce_input, verify_exactly_once
from tests.crash.test_exactly_once import CHECKPOINT_PHASES, run_until_done
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.kafka, pytest.mark.crash, pytest.mark.redis]

SINK_PHASES = [p for p in FAULT_POINTS if p.startswith("sink.")]


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
        windows = Counter()
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
