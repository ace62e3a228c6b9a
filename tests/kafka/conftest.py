"""Helpers shared by the Kafka connector tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from eventapp.connectors.kafka import KafkaSourceReader
from eventapp.source import SourceRecord


def drain(reader: KafkaSourceReader, timeout: float = 30.0) -> list[SourceRecord[Any]]:
    """Poll a *bounded* reader until it is finished."""
    records: list[SourceRecord[Any]] = []
    deadline = time.monotonic() + timeout
    while not reader.is_finished():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bounded reader not finished after {timeout}s ({len(records)} records)")
        records.extend(reader.poll(500, 0.2))
    return records


def poll_until(reader: KafkaSourceReader, count: int, timeout: float = 30.0) -> list[SourceRecord[Any]]:
    """Poll an unbounded reader until ``count`` records arrived."""
    records: list[SourceRecord[Any]] = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(records)} of {count} records after {timeout}s")
        records.extend(reader.poll(500, 0.2))
    return records


@pytest.fixture
def group_id() -> str:
    return f"eventapp-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def checkpoint_topic(topic_factory: Any) -> str:
    """A fresh checkpoint-marker topic per test (1 partition), so tests never see each other's markers."""
    name: str = topic_factory(prefix="checkpoints", partitions=1)
    return name
