"""Checkpoints of the local runtime: restore resumes exactly where the committed checkpoint was,
processing-time timers that came due while down fire right after restore, missing or corrupt
snapshots refuse to start, and old snapshots are pruned (two are kept)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from eventapp import (
    CheckpointConfig,
    Collector,
    ConfigurationError,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    LocalCheckpointStorage,
    ManualClock,
    OnTimerContext,
    SinkError,
    SnapshotCorruptError,
    SnapshotMissingError,
    ValueStateDescriptor,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.state.store import StateBackend
from eventapp.statebackends import MemoryStateBackend, RocksDBStateBackend


class CountAndRemind(KeyedProcessFunction[str, str, str]):
    """Counts per key; 1 s of processing time after a key's first record, emits a reminder."""

    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: str, ctx: Context, out: Collector[str]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect(f"{value}={n}")
        if n == 1:
            ctx.timer_service.register_processing_time_timer(
                ctx.timer_service.current_processing_time() + 1_000
            )

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[str]) -> None:
        out.collect(f"remind {ctx.current_key} @{timestamp} count={ctx.get_state(self.count).value()}")


@pytest.fixture(params=["memory", "rocksdb"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    def make() -> StateBackend:
        if request.param == "memory":
            return MemoryStateBackend()
        return RocksDBStateBackend(tmp_path / "rocks")

    return make


def make_job(
    source: CollectionSource[str],
    sink: CollectionSink[str],
    clock: ManualClock,
    storage: Path,
    backend: StateBackend,
) -> Job:
    job = Job(
        "checkpointed",
        JobConfig(
            state_backend=backend,
            clock=clock,
            checkpoint=CheckpointConfig(storage=storage, interval_ms=60_000),
        ),
    )
    job.from_source(source).key_by(lambda v: v).process(CountAndRemind(), uid="count").sink_to(sink)
    return job


def test_restore_resumes_from_the_committed_checkpoint(tmp_path: Path, backend_factory: Any) -> None:
    storage = tmp_path / "checkpoints"
    source: CollectionSource[str] = CollectionSource(["a", "b", "a"], bounded=False)
    clock = ManualClock(10_000)
    sink: CollectionSink[str] = CollectionSink()
    runner = make_job(source, sink, clock, storage, backend_factory()).runner()
    runner.run_until_idle()
    runner.checkpoint()
    source.add("a")  # processed after the checkpoint: its effects are lost with the "crash"
    runner.run_until_idle()
    assert sink.values == ["a=1", "b=1", "a=2", "a=3"]
    runner.close()  # a crash: no final checkpoint

    clock.set(20_000)  # the reminders (due at 11_000) came due while the job was down
    sink2: CollectionSink[str] = CollectionSink()
    restored = make_job(source, sink2, clock, storage, backend_factory()).runner()
    restored.run_until_idle()
    assert restored.committed_checkpoint_id("collection-0") == 1
    # the record after the checkpoint is read again, with the state of the checkpoint (a=2)
    assert sink2.values[0] == "a=3"
    assert sorted(sink2.values[1:]) == ["remind a @11000 count=3", "remind b @11000 count=1"]
    restored.close()


def test_checkpoints_keep_two_snapshots_and_name_id_and_incarnation(tmp_path: Path) -> None:
    storage_dir = tmp_path / "checkpoints"
    source: CollectionSource[str] = CollectionSource(bounded=False)
    runner = make_job(source, CollectionSink(), ManualClock(), storage_dir, MemoryStateBackend()).runner()
    for i in range(5):
        source.add(f"k{i}")
        runner.run_until_idle()
        runner.checkpoint()
    runner.close()  # pruning runs in the background; close() lets it finish
    names = [
        s.name for s in LocalCheckpointStorage(storage_dir).list_snapshots("checkpointed", "collection-0")
    ]
    assert [n.split("-")[1] for n in names] == ["000000004", "000000005"]
    assert len({n.split("-")[2] for n in names}) == 1
    committed = json.loads((storage_dir / "checkpointed" / "collection-0" / "_committed.json").read_text())
    assert committed == {"checkpoint_id": 5, "snapshot": names[-1], "position": 5}


def test_periodic_checkpoint_by_interval(tmp_path: Path) -> None:
    clock = ManualClock()
    source: CollectionSource[str] = CollectionSource(["x"], bounded=False)
    runner = make_job(source, CollectionSink(), clock, tmp_path, MemoryStateBackend()).runner()
    runner.run_until_idle()
    assert runner.committed_checkpoint_id("collection-0") == 0
    clock.advance(60_000)
    runner.step()
    assert runner.committed_checkpoint_id("collection-0") == 1
    runner.close()


def _crashed_job_dir(tmp_path: Path) -> tuple[Path, Path]:
    storage = tmp_path / "checkpoints"
    source: CollectionSource[str] = CollectionSource(["a"], bounded=False)
    runner = make_job(source, CollectionSink(), ManualClock(), storage, MemoryStateBackend()).runner()
    runner.run_until_idle()
    runner.checkpoint()
    runner.close()
    (snapshot,) = list((storage / "checkpointed" / "collection-0").glob("chk-*"))
    return storage, snapshot


def test_missing_snapshot_refuses_to_start(tmp_path: Path) -> None:
    storage, snapshot = _crashed_job_dir(tmp_path)
    shutil.rmtree(snapshot)
    job = make_job(CollectionSource(["a"]), CollectionSink(), ManualClock(), storage, MemoryStateBackend())
    with pytest.raises(SnapshotMissingError, match=re.escape("does not exist. Refusing to start")):
        job.run()


@pytest.mark.parametrize("damage", ["meta", "state"])
def test_corrupt_snapshot_refuses_to_start(tmp_path: Path, damage: str) -> None:
    storage, snapshot = _crashed_job_dir(tmp_path)
    if damage == "meta":
        (snapshot / "split.json").write_text("{not json")
    else:
        for f in (snapshot / "state").iterdir():
            f.write_bytes(b"garbage")
    job = make_job(CollectionSource(["a"]), CollectionSink(), ManualClock(), storage, MemoryStateBackend())
    with pytest.raises(SnapshotCorruptError):
        job.run()


def test_checkpoint_config_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="interval_ms"):
        CheckpointConfig(storage="/tmp/x", interval_ms=0)
    with pytest.raises(ConfigurationError, match="retained must be >= 2"):
        CheckpointConfig(storage="/tmp/x", retained=1)


def test_bounded_job_takes_a_final_checkpoint(tmp_path: Path) -> None:
    job = make_job(
        CollectionSource(["a", "b"]), CollectionSink(), ManualClock(), tmp_path, MemoryStateBackend()
    )
    result = job.run()
    assert result.checkpoints == 1
    committed = json.loads((tmp_path / "checkpointed" / "collection-0" / "_committed.json").read_text())
    assert committed["position"] == 2


class FailingFlushSink(CollectionSink[str]):
    """A sink whose writers fail to flush from the ``fail_at``-th flush on."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.flushes = 0

    def create_writer(self, context: Any) -> Any:
        writer = super().create_writer(context)
        sink = self

        class Writer:
            def write(self, value: str, timestamp: int | None) -> None:
                writer.write(value, timestamp)

            def flush(self) -> None:
                sink.flushes += 1
                if sink.flushes >= sink.fail_at:
                    raise SinkError("the sink's flush failed")

            def close(self) -> None:
                writer.close()

        return Writer()


def test_a_checkpoint_whose_flush_fails_fails_the_job_and_is_not_committed(tmp_path: Path) -> None:
    clock = ManualClock()
    source: CollectionSource[str] = CollectionSource(["a"], bounded=False)
    runner = make_job(source, FailingFlushSink(fail_at=2), clock, tmp_path, MemoryStateBackend()).runner()
    runner.run_until_idle()
    runner.checkpoint()  # the first flush succeeds
    clock.advance(60_000)
    with pytest.raises(SinkError, match="flush failed"):
        runner.step()
    assert runner.committed_checkpoint_id("collection-0") == 1, "the failed checkpoint is not committed"
    runner.close()
