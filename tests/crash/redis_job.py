"""The Redis-only job the Redis crash test runs as worker processes
(``eventapp run tests.crash.redis_job:build_job``): Redis Streams in, Redis out, Redis as the
commit point.

Configured by environment variables: ``CRASH_REDIS_URL``, ``CRASH_REDIS_PREFIX`` (input streams
``<prefix>:in:0`` .. ``<prefix>:in:<CRASH_STREAMS - 1>``, entries ``{k, id, ts}`` with every key in
one stream), ``CRASH_JOB``, ``CRASH_CHECKPOINT_DIR``, ``CRASH_STATE_DIR``. With
``CRASH_SLOW_MS`` each record costs that much more (the Kafka job's knob: it keeps a bounded job running
long enough to be killed, however fast the machine and the checkpoints are). With
``CRASH_DISCOVERY_MS`` the job instead reads every stream matching ``<prefix>:in:*`` unbounded,
looking for new ones that often (the discovery crash test). A ``CRASH_CHECKPOINT_DIR`` of
``s3://bucket/prefix`` keeps checkpoints in an object store (endpoint and keys from the AWS
environment), with the local cache inside ``CRASH_STATE_DIR``: every launch has a fresh one, so a
restore downloads its snapshots. The counter is the Kafka
crash job's (:class:`tests.crash.eos_job.CrashCounter`: a count per record, a window per key and
second of event time); its outputs go to an exactly-once Redis sink (:func:`redis_commands`).
"""

from __future__ import annotations

import os
from pathlib import Path

from eventapp import (
    CheckpointConfig,
    CheckpointStorage,
    Job,
    JobConfig,
    ObjectCheckpointStorage,
    WatermarkStrategy,
)
from eventapp.connectors.redis.sink import RedisSink
from eventapp.connectors.redis.sink_config import RedisSinkConfig
from eventapp.connectors.redis.source import RedisStreamSource
from eventapp.connectors.redis.source_config import RedisStreamSourceConfig
from eventapp.statebackends import RocksDBStateBackend
from tests.crash.eos_job import UID, CrashCounter, redis_commands


def input_streams(prefix: str, streams: int) -> list[str]:
    return [f"{prefix}:in:{i}" for i in range(streams)]


def checkpoint_storage(where: str, state_dir: str) -> str | CheckpointStorage:
    if where.startswith("s3://"):
        return ObjectCheckpointStorage(where, cache_dir=Path(state_dir) / "checkpoint-cache")
    return where


def build_job() -> Job:
    env = os.environ
    url, prefix = env["CRASH_REDIS_URL"], env["CRASH_REDIS_PREFIX"]
    discovery = env.get("CRASH_DISCOVERY_MS")
    if discovery is None:
        config = RedisStreamSourceConfig(
            url=url,
            streams=input_streams(prefix, int(env.get("CRASH_STREAMS", "4"))),
            bounded=True,
            timestamp_field="ts",
            batch_size=500,
        )
    else:
        config = RedisStreamSourceConfig(
            url=url,
            pattern=f"{prefix}:in:*",
            discovery_interval_ms=int(discovery),
            timestamp_field="ts",
            batch_size=500,
        )
    source = RedisStreamSource(config)
    sink = RedisSink(RedisSinkConfig(url=url, mapper=redis_commands(prefix), token_prefix=f"{prefix}:token:"))
    job = Job(
        env["CRASH_JOB"],
        JobConfig(
            state_backend=RocksDBStateBackend(env["CRASH_STATE_DIR"]),
            checkpoint=CheckpointConfig(
                storage=checkpoint_storage(env["CRASH_CHECKPOINT_DIR"], env["CRASH_STATE_DIR"]),
                interval_ms=int(env.get("CRASH_CHECKPOINT_INTERVAL_MS", "300")),
            ),
            max_batch_records=500,
            poll_timeout_s=0.05,
        ),
    )
    job.from_source(source, WatermarkStrategy.for_monotonous_timestamps()).key_by(
        lambda v: v["k"], partitioned_by_source=True
    ).process(CrashCounter(float(env.get("CRASH_SLOW_MS", "0"))), uid=UID).sink_to(sink)
    return job
