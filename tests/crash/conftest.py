"""The crash tests' shared fixture: topics, checkpoint directory and work directory of one job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.crash.harness import CrashSetup, new_crash_setup
from tests.support.broker import KafkaBroker


@pytest.fixture
def setup(kafka_broker: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path) -> CrashSetup:
    return new_crash_setup(kafka_broker, topic_factory, tmp_path, "crash", partitions=4)
