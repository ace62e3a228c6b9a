"""The object store holding the checkpoints goes away mid-run and comes back: a job manager runs the
Redis-only crash job (``tests/crash/redis_job.py``) on two workers with checkpoints at
``s3://bucket/checkpoints`` on a SeaweedFS of its own. After the first checkpoints the server is
SIGKILLed: the next checkpoint fails with an ``ObjectStoreError`` naming the endpoint, nothing is
committed that is not stored, and the job manager restarts the workers, which fail to restore as
long as the store is down. The server is then started again on the same ports and data directory;
the workers restore the last committed checkpoint and the bounded job finishes. Every effect in
Redis is there exactly once."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.crash.redis_job import input_streams
from tests.crash.test_redis_crash import assert_redis_effects, write_stream_input
from tests.support.jobmanager import JobManagerProcess, wait_for
from tests.support.redis_server import RedisServer
from tests.support.seaweedfs import S3_ENDPOINT_ENV, SeaweedFS

pytestmark = [pytest.mark.crash, pytest.mark.redis]


@pytest.mark.skipif(bool(os.environ.get(S3_ENDPOINT_ENV)), reason="needs a SeaweedFS it can kill")
def test_checkpoints_survive_the_object_store_going_away_and_coming_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    weed = SeaweedFS(tmp_path / "weed")
    server = weed.start()
    bucket = server.new_bucket("outage")
    prefix = f"crash-outage:{uuid.uuid4().hex[:8]}"
    client = redis_server.client(decode_responses=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CRASH_", "EVENTAPP_FAULTS"))},
        "CRASH_REDIS_URL": redis_server.url,
        "CRASH_REDIS_PREFIX": prefix,
        "CRASH_JOB": f"outage-{uuid.uuid4().hex[:6]}",
        "CRASH_CHECKPOINT_DIR": f"s3://{bucket}/checkpoints",
        "CRASH_STATE_DIR": str(tmp_path / "state"),
        "CRASH_CHECKPOINT_INTERVAL_MS": "200",
        "CRASH_SLOW_MS": "0.2",
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": "any",
        "AWS_SECRET_ACCESS_KEY": "any",
        "AWS_REGION": "us-east-1",
    }
    jm: JobManagerProcess | None = None
    try:
        written = write_stream_input(client, input_streams(prefix, 4), records=30_000, keys=80)
        jm = JobManagerProcess(
            tmp_path, "tests.crash.redis_job:build_job", 2,
            "--restart-strategy", "fixed-delay:attempts=1000,delay=0.2", "--json-logs", env=env,
        )  # fmt: skip

        def committed() -> list[Any]:
            assert jm is not None
            return [r["last_checkpoint"] or 0 for r in jm.get(f"/jobs/{jm.job_id}")["splits"]]

        wait_for(lambda: all(c >= 2 for c in committed()), "two checkpoints of every split")
        weed.kill()
        # The next checkpoint cannot be stored: the workers fail and are restarted, again and again.
        wait_for(lambda: jm.output().count('"event": "slot.failed"') >= 2, "workers failing on the store")
        output = jm.output()
        assert "ObjectStoreError" in output and server.endpoint in output, output[-4000:]
        assert jm.process.poll() is None, "the job manager gave up while the store was down"
        weed.start()
        assert jm.wait_exit() == 0, jm.output()[-4000:]
        output = jm.output()
        effects = assert_redis_effects(client, prefix, written)
    finally:
        if jm is not None:
            jm.close()
        client.close()
        weed.kill()
    failures = output.count('"event": "slot.failed"')
    print(f"object-store outage test: {failures} worker failures while the store was down, effects={effects}")
    assert '"state": "FINISHED"' in output
