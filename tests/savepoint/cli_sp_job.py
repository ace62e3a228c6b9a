"""Jobs for the savepoint CLI tests: a running count per key over 4 splits, checkpoints in
``$SP_CHECKPOINTS``; ``build_more`` is the same job with 40 more records (the redeployed version)."""

from __future__ import annotations

import os

from eventapp import (
    CheckpointConfig,
    Job,
    JobConfig,
    JsonSerializer,
    KeyedProcessFunction,
    ValueStateDescriptor,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from tests.savepoint.test_savepoints import PHASE1, Count, Record, partition_of

SINK: CollectionSink[str] = CollectionSink()


class CountAsJson(Count):
    """The same state, now declared with another serializer: an incompatible change."""

    count = ValueStateDescriptor[int]("count", default=0, serializer=JsonSerializer())


def _job(records: list[Record], function: KeyedProcessFunction[str, Record, str] | None = None) -> Job:
    job = Job(
        "sp-job",
        JobConfig(checkpoint=CheckpointConfig(storage=os.environ["SP_CHECKPOINTS"], interval_ms=600_000)),
    )
    source = CollectionSource(records, splits=4, partitioner=partition_of(4, 4))
    job.from_source(source).key_by(lambda r: r[0], partitioned_by_source=True).process(
        function or Count(), uid="count"
    ).sink_to(SINK)
    return job


def build_job() -> Job:
    return _job(list(PHASE1))


def build_more() -> Job:
    return _job(list(PHASE1) + [(f"card-{i}", 1) for i in range(40)])


def build_incompatible() -> Job:
    return _job(list(PHASE1) + [(f"card-{i}", 1) for i in range(40)], CountAsJson())
