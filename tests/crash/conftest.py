"""The crash tests' shared fixture: topics, checkpoint directory and work directory of one job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.crash.harness import CrashSetup
from tests.support.broker import KafkaBroker, unique_topic_name


@pytest.fixture
def setup(kafka_broker: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path) -> CrashSetup:
    partitions = 4
    return CrashSetup(
        bootstrap=kafka_broker.bootstrap_servers,
        job=unique_topic_name("crashjob"),
        input=topic_factory("crash-in", partitions=partitions),
        output=topic_factory("crash-out", partitions=partitions),
        dlq=topic_factory("crash-dlq", partitions=1),
        checkpoint_topic=topic_factory("crash-chk", partitions=1),
        checkpoint_dir=tmp_path / "checkpoints",
        work_dir=tmp_path,
        partitions=partitions,
    )
