"""End to end: a job with the RocksDB backend checkpoints into s3:// (a real SeaweedFS), stops, and
a fresh runner with another local cache and RocksDB directory restores it from the object store
(it really downloads): the state equals an oracle's."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from eventapp import (
    CheckpointConfig,
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ManualClock,
    ObjectCheckpointStorage,
    ValueStateDescriptor,
)
from eventapp.checkpoint.object_manifest import INLINE_MAX_BYTES
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.embedded_objectstore import EmbeddedObjectStore
from eventapp.errors import ObjectStoreError
from eventapp.statebackends import RocksDBStateBackend
from tests.support.seaweedfs import S3Server


class Count(KeyedProcessFunction[str, str, str]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: str, ctx: Context, out: Collector[str]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect(f"{value}={n}")


def make_job(
    source: CollectionSource[str], sink: CollectionSink[str], storage: ObjectCheckpointStorage, rocks: Path
) -> Job:
    job = Job(
        "counted",
        JobConfig(
            state_backend=RocksDBStateBackend(rocks, changelog_snapshots=3),
            clock=ManualClock(1_000),
            checkpoint=CheckpointConfig(storage=storage, interval_ms=60_000),
        ),
    )
    job.from_source(source).key_by(lambda v: v).process(Count(), uid="count").sink_to(sink)
    return job


@pytest.mark.parametrize("inline_max_bytes", [0, INLINE_MAX_BYTES], ids=["objects", "inline"])
def test_restore_from_the_object_store_in_a_fresh_runner(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, inline_max_bytes: int
) -> None:
    uri = f"s3://{s3_bucket}/jobs"
    records = [f"k{i % 37}" for i in range(3_000)]
    source: CollectionSource[str] = CollectionSource(bounded=False)
    first = ObjectCheckpointStorage(
        uri, settings=s3_server.settings(), cache_dir=tmp_path / "cache-1", inline_max_bytes=inline_max_bytes
    )
    runner = make_job(source, CollectionSink(), first, tmp_path / "rocks-1").runner()
    for batch in range(6):  # several checkpoints: full and changelog snapshots, pruning
        for record in records[batch * 500 : (batch + 1) * 500]:
            source.add(record)
        runner.run_until_idle()
        runner.checkpoint()
    source.add("after-the-checkpoint")  # lost with the "crash", read again after restore
    runner.run_until_idle()
    runner.close()
    assert first.transfers.puts > 0 or inline_max_bytes > 0  # a small state fits in the metadata
    committed = first.list_snapshots("counted", "collection-0")
    assert len(committed) == 2 and all(s.committed for s in committed)

    second = ObjectCheckpointStorage(
        uri, settings=s3_server.settings(), cache_dir=tmp_path / "cache-2", inline_max_bytes=inline_max_bytes
    )
    sink: CollectionSink[str] = CollectionSink()
    restored = make_job(source, sink, second, tmp_path / "rocks-2").runner()
    keys = sorted(set(records))
    for key in keys:
        source.add(key)
    restored.run_until_idle()
    assert restored.committed_checkpoint_id("collection-0") == 6
    oracle = Counter(records)
    assert sink.values == ["after-the-checkpoint=1", *(f"{key}={oracle[key] + 1}" for key in keys)]
    restored.checkpoint()  # the restored runner checkpoints into the object store too
    restored.close()
    assert (tmp_path / "cache-2" / "counted" / "collection-0").is_dir()  # it downloaded into its cache
    assert [s.checkpoint_id for s in second.list_snapshots("counted", "collection-0")] == [6, 7]


def test_wrong_credentials_stop_the_job_at_start_naming_what_to_fix(tmp_path: Path) -> None:
    """A store that checks keys (an IAM identity, as a real service has): a job whose keys are
    wrong does not start, and says which keys were refused where and what to set."""
    with EmbeddedObjectStore(tmp_path / "weed", credentials=("eventapp", "right-secret")) as server:
        server.create_bucket("guarded")
        uri = "s3://guarded/jobs"
        good = ObjectCheckpointStorage(uri, settings=server.settings(), cache_dir=tmp_path / "cache")
        runner = make_job(
            CollectionSource(bounded=False), CollectionSink(), good, tmp_path / "rocks"
        ).runner()
        runner.open()  # the right keys: the job starts (no snapshot yet)
        runner.checkpoint()
        runner.close()
        bad = ObjectCheckpointStorage(
            uri, settings=server.settings(secret_access_key="wrong-secret"), cache_dir=tmp_path / "cache-2"
        )
        refused = make_job(
            CollectionSource(bounded=False), CollectionSink(), bad, tmp_path / "rocks-2"
        ).runner()
        with pytest.raises(ObjectStoreError, match=r"credentials are wrong.*AWS_SECRET_ACCESS_KEY") as error:
            refused.open()
        assert server.endpoint in str(error.value) and "guarded" in str(error.value)


def test_a_store_that_hangs_fails_the_checkpoint_and_the_last_committed_one_stays(tmp_path: Path) -> None:
    """The store stops answering during a checkpoint (SIGSTOP: a hung server, not a refused
    connection): the checkpoint fails after the read timeout with an ObjectStoreError, nothing of it
    is committed, and once the store answers again a new runner restores the previous checkpoint
    and reads again what followed it."""
    with EmbeddedObjectStore(tmp_path / "weed") as server:
        server.create_bucket("slow")
        settings = server.settings(read_timeout_s=1.0, connect_timeout_s=1.0, max_attempts=1)
        storage = ObjectCheckpointStorage("s3://slow/jobs", settings=settings, cache_dir=tmp_path / "cache")
        source: CollectionSource[str] = CollectionSource(bounded=False)
        runner = make_job(source, CollectionSink(), storage, tmp_path / "rocks").runner()
        for record in ("a", "b", "a"):
            source.add(record)
        runner.run_until_idle()
        runner.checkpoint()  # committed: a=2, b=1
        source.add("a")
        runner.run_until_idle()
        assert server.pid is not None
        os.killpg(server.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ObjectStoreError, match=server.endpoint):
                runner.checkpoint()
        finally:
            os.killpg(server.pid, signal.SIGCONT)
        runner.close()
        # The hung server may still store the metadata it had received once it resumes: a complete
        # snapshot, but never committed (no commit, no mark); the commit point still names the first.
        snapshots = storage.list_snapshots("counted", "collection-0")
        assert [(s.checkpoint_id, s.committed) for s in snapshots][:1] == [(1, True)]
        assert all(not s.committed for s in snapshots[1:])

        sink: CollectionSink[str] = CollectionSink()
        again = ObjectCheckpointStorage(
            "s3://slow/jobs", settings=server.settings(), cache_dir=tmp_path / "c2"
        )
        restored = make_job(source, sink, again, tmp_path / "rocks-2").runner()
        restored.run_until_idle()
        assert restored.committed_checkpoint_id("collection-0") == 1
        assert sink.values == ["a=3"]  # the record after the committed checkpoint, read again
        restored.close()
