"""Exactly-once with checkpoints in an object store (a real SeaweedFS): the Redis-only crash job
(``tests/crash/redis_job.py``) keeps its checkpoints at ``s3://bucket/prefix``, each worker launch
with a fresh local cache, so every restore downloads its snapshots. Workers are SIGKILLed at
random moments and inside every checkpoint phase and every object-store phase: while a snapshot's
files are uploading (``objectstore.mid_upload``), after the files and before the metadata object
(``objectstore.before_metadata``), and while a restore downloads (``objectstore.mid_download``).
In the end every effect in Redis is there exactly once (the oracle checks of the Redis crash
test), and the bucket holds no half-written snapshot that a restore would have used."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from eventapp.runtime.faults import FAULT_POINTS
from tests.crash.harness import CrashSetup
from tests.crash.redis_job import input_streams
from tests.crash.test_exactly_once import CHECKPOINT_PHASES, run_until_done
from tests.crash.test_redis_crash import assert_redis_effects, write_stream_input
from tests.support.redis_server import RedisServer
from tests.support.seaweedfs import S3Server

pytestmark = [pytest.mark.kafka, pytest.mark.crash, pytest.mark.redis]

OBJECT_STORE_PHASES = [p for p in FAULT_POINTS if p.startswith("objectstore.")]


def test_redis_job_with_checkpoints_in_an_object_store_is_exactly_once_through_sigkills(
    setup: CrashSetup,
    redis_server: RedisServer,
    s3_server: S3Server,
    s3_bucket: str,
    record_property: Callable[..., None],
) -> None:
    prefix = f"crash-s3:{uuid.uuid4().hex[:8]}"
    client = redis_server.client(decode_responses=True)
    s3_env = {
        "CRASH_REDIS_URL": redis_server.url,
        "CRASH_REDIS_PREFIX": prefix,
        "CRASH_CHECKPOINT_DIR": f"s3://{s3_bucket}/checkpoints",
        # Asynchronous checkpoints (the default on an object store) do not slow the job down:
        # without a cost per record it can finish before the first kill.
        "CRASH_SLOW_MS": "0.2",
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": s3_server.access_key_id or "any",
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key or "any",
        "AWS_REGION": "us-east-1",
    }
    try:
        written = write_stream_input(client, input_streams(prefix, 4), records=40_000, keys=80)
        phases = [*CHECKPOINT_PHASES, *OBJECT_STORE_PHASES]
        stats = run_until_done(
            setup,
            parallelism=2,
            kills=6,
            seed=20261205,
            env=s3_env,
            phases=phases,
            target="tests.crash.redis_job:build_job",
        )
        effects = assert_redis_effects(client, prefix, written)
    finally:
        client.close()
    objects = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="checkpoints/")
    keys = [o["Key"] for o in objects.get("Contents", [])]
    total_kills = stats["random_kills"] + stats["fault_point_kills"]
    print(f"object-store crash test: {stats} effects={effects} objects={len(keys)}")
    for k, v in stats.items():
        record_property(k, v)
    assert any(k.endswith("/_snapshot.json") for k in keys), "no snapshot was stored in the bucket"
    assert any("/shared/" in k for k in keys), "no immutable file was stored content-addressed"
    assert total_kills >= 8, f"only {total_kills} kills happened ({stats})"
    assert stats["checkpoint_phases_killed_in"] == len(phases), f"a kill inside every phase ({stats})"
