"""Streams discovered while the job runs stay exactly-once through SIGKILLs: a job manager runs the
Redis-only crash job (``tests/crash/redis_job.py`` with ``CRASH_DISCOVERY_MS``) on two workers
that look for new streams matching ``<prefix>:in:*``; the test creates new streams one after the
other while killing a random worker after each, and the job manager restarts it. In the end every
entry of every stream, those of streams created while a worker was down included, was counted
exactly once: the INCRBY counters equal the oracle and the stream of ids holds each id once."""

from __future__ import annotations

import os
import random
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from eventapp.assignment import owner_of
from tests.support.jobmanager import JobManagerProcess, wait_for
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.crash, pytest.mark.redis]

BASE_TS = 1_790_000_000_000
STREAMS = 10
PER_STREAM = 1_500
KEYS_PER_STREAM = 15


def write_stream(client: redis.Redis, prefix: str, index: int, first_id: int) -> list[dict[str, Any]]:
    """Stream ``<prefix>:in:<index>``, with keys of its own (a key lives in one stream)."""
    key = f"{prefix}:in:{index}"
    pipe = client.pipeline(transaction=False)
    written = []
    for n in range(PER_STREAM):
        rid = first_id + n
        record = {"k": f"s{index}k{n % KEYS_PER_STREAM}", "id": rid, "ts": BASE_TS + n}
        pipe.xadd(key, record)
        written.append(record)
    pipe.execute()
    return written


def kill_a_running_worker(jm: JobManagerProcess, rng: random.Random) -> int:
    """SIGKILL one running worker (another one if it exited meanwhile); returns 1."""
    while True:
        pids = wait_for(lambda: jm.process.poll() is not None or jm.running_pids(), "a running worker")
        assert pids is not True, jm.output()[-4000:]
        try:
            os.kill(rng.choice(pids), signal.SIGKILL)
        except ProcessLookupError:
            continue  # it is being restarted: the job manager reports another pid soon
        return 1


def test_streams_discovered_between_kills_are_counted_exactly_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"crash-disc:{uuid.uuid4().hex[:8]}"
    client = redis_server.client(decode_responses=True)
    env = {
        "CRASH_REDIS_URL": redis_server.url,
        "CRASH_REDIS_PREFIX": prefix,
        "CRASH_DISCOVERY_MS": "200",
        "CRASH_JOB": f"disc-{uuid.uuid4().hex[:6]}",
        "CRASH_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "CRASH_STATE_DIR": str(tmp_path / "state"),
        "CRASH_CHECKPOINT_INTERVAL_MS": "250",
    }
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRASH_")}, **env}

    def hits() -> int:
        return sum(int(v) for v in client.mget(client.keys(f"{prefix}:hits:*")) or [] if v)

    written = write_stream(client, prefix, 0, 0)
    jm = JobManagerProcess(
        tmp_path, "tests.crash.redis_job:build_job", 2,
        "--restart-strategy", "fixed-delay:attempts=50,delay=0", "--json-logs", env=env,
    )  # fmt: skip
    kills = 0
    try:
        rng = random.Random(20261203)
        for index in range(1, STREAMS):
            # Some of what is there is counted (committed), then a new stream appears and a
            # worker dies: the new stream is found by a worker that is running, or restarting.
            target = hits() + rng.randint(100, PER_STREAM // 2)
            wait_for(lambda target=target: hits() >= target, "progress before the next stream")
            written += write_stream(client, prefix, index, index * PER_STREAM)
            kills += kill_a_running_worker(jm, rng)
        wait_for(lambda: hits() >= len(written), "every entry counted")
        jm.process.send_signal(signal.SIGTERM)
        assert jm.wait_exit() == 0, jm.output()[-4000:]
        output = jm.output()
    finally:
        jm.close()
    try:
        per_key = Counter(r["k"] for r in written)
        found = {k: int(client.get(f"{prefix}:hits:{k}") or 0) for k in per_key}
        assert found == dict(per_key), "Redis counters differ from the oracle (applied twice or never)"
        ids = Counter(int(f["id"]) for _, f in client.xrange(f"{prefix}:ids"))
        assert ids == Counter(r["id"] for r in written)
    finally:
        client.close()
    streams = [f"{prefix}:in:{i}" for i in range(STREAMS)]
    owners = Counter(owner_of(s, 2) for s in streams)
    discovered = output.count('"event": "source.splits_discovered"')
    print(
        f"redis discovery crash test: {kills} kills, {STREAMS} streams (owners {dict(owners)}), "
        f"{discovered} discoveries, {len(written)} entries, effects={sum(found.values()) + sum(ids.values())}"
    )
    assert kills == STREAMS - 1
    assert output.count('"event": "slot.restart_scheduled"') == kills, output[-4000:]
    assert discovered >= 1, "no stream was discovered while a worker ran (all were listed at starts)"
