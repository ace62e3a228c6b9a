"""A job for the CLI tests: counts words from a 4-split collection into a module-level sink."""

from __future__ import annotations

from eventapp import Job
from eventapp.connectors.collection import CollectionSink, CollectionSource
from tests.runtime.test_pipeline import RunningSum

SINK: CollectionSink[tuple[str, int]] = CollectionSink()


def build_job() -> Job:
    job = Job("cli-job")
    source = CollectionSource(
        [(w, 1) for w in ["a", "b", "c", "d", "a", "b", "a"]], splits=4, partitioner=ord_of
    )
    job.from_source(source).key_by(lambda kv: kv[0], partitioned_by_source=True).process(
        RunningSum(), uid="sum"
    ).sink_to(SINK)
    return job


def ord_of(kv: tuple[str, int]) -> int:
    return ord(kv[0])


not_a_job = 42


def build_daemon_job() -> Job:
    """An unbounded job with checkpoints in ``$CLI_JOB_CHECKPOINTS`` (for the SIGTERM test)."""
    import os

    from eventapp import CheckpointConfig, JobConfig

    job = Job(
        "cli-daemon",
        JobConfig(checkpoint=CheckpointConfig(storage=os.environ["CLI_JOB_CHECKPOINTS"], interval_ms=60_000)),
    )
    source = CollectionSource([(w, 1) for w in ["a", "b", "a"]], bounded=False)
    summed = (
        job.from_source(source)
        .key_by(lambda kv: kv[0], partitioned_by_source=True)
        .process(RunningSum(), uid="sum")
    )
    summed.map(note_emitted).sink_to(SINK)
    return job


def note_emitted(kv: tuple[str, int]) -> tuple[str, int]:
    """Append each output as a line to ``$CLI_JOB_CHECKPOINTS/emitted.txt``: the SIGTERM test waits
    for the third. (A file, not a log line: SIGTERM would land while the worker writes its log.)"""
    import os

    with open(os.path.join(os.environ["CLI_JOB_CHECKPOINTS"], "emitted.txt"), "a") as emitted:
        emitted.write(f"{kv[0]} {kv[1]}\n")
    return kv
