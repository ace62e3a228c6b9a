"""Asynchronous checkpoints (``CheckpointConfig(asynchronous=True)``, Flink's asynchronous snapshot
phase): the splits go on processing while a checkpoint completes, the snapshot holds the state of
the moment it began, the outputs made meanwhile wait for its commit, a failure fails the job and
drops them, and an explicit checkpoint waits for the one in flight. The storage is a real local
directory whose ``complete`` a test can hold back (a slow upload)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from eventapp import (
    CheckpointConfig,
    CheckpointError,
    Collector,
    ConfigurationError,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    LocalCheckpointStorage,
    LocalRunner,
    ManualClock,
    ValueStateDescriptor,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.daemon import messages
from eventapp.daemon.worker_link import WorkerLink
from eventapp.state.store import StateBackend
from eventapp.statebackends import MemoryStateBackend, RocksDBStateBackend

SPLITS = ["collection-0", "collection-1"]
#: Longest a test waits for something that should happen at once before it lets it go and fails.
HANG_GUARD_S = 60.0


class Count(KeyedProcessFunction[str, str, str]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: str, ctx: Context, out: Collector[str]) -> None:
        state = ctx.get_state(self.count)
        n = (state.value() or 0) + 1
        state.update(n)
        out.collect(f"{value}={n}")


class GatedStorage(LocalCheckpointStorage):
    """A local checkpoint directory whose ``complete`` waits for :attr:`gate` (and can fail)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False
        self.entered = threading.Semaphore(0)

    def complete(self, job: str, split: str, name: str, meta: dict[str, Any]) -> Path:
        self.entered.release()
        self.gate.wait()
        if self.fail_next:
            raise CheckpointError(f"test: the storage refused snapshot {name} of {split}")
        return super().complete(job, split, name, meta)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[GatedStorage]:
    gated = GatedStorage(tmp_path / "checkpoints")
    yield gated
    gated.gate.set()  # a failed test must not leave a checkpoint thread waiting (pytest would hang)


@pytest.fixture(params=["memory", "rocksdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StateBackend:
    if request.param == "memory":
        return MemoryStateBackend()
    return RocksDBStateBackend(tmp_path / "rocks")


def make_runner(
    source: CollectionSource[str],
    sink: CollectionSink[str],
    storage: GatedStorage,
    backend: StateBackend,
    max_held_outputs: int = 100_000,
) -> LocalRunner:
    checkpoint = CheckpointConfig(
        storage=storage, interval_ms=60_000, asynchronous=True, max_held_outputs=max_held_outputs
    )
    job = Job(
        "async-checkpoints",
        JobConfig(
            state_backend=backend,
            clock=ManualClock(0),
            checkpoint=checkpoint,
            poll_timeout_s=0.0,
        ),
    )
    keyed = job.from_source(source).key_by(lambda v: v.split(":")[0], partitioned_by_source=True)
    keyed.process(Count(), uid="count").sink_to(sink)
    runner = LocalRunner(job)
    runner.open()
    return runner


def new_source() -> CollectionSource[str]:
    """Two splits; a key's records (``k<n>:...``) all in split n % 2."""
    return CollectionSource[str](splits=2, bounded=False, partitioner=lambda v: int(v[1]))


def feed(source: CollectionSource[str], first: int, count: int) -> list[str]:
    values = [f"k{i % 3}:{i}" for i in range(first, first + count)]
    for value in values:
        source.add(value)
    return values


def begin_held_checkpoint(runner: LocalRunner, storage: GatedStorage) -> None:
    """Begin an asynchronous checkpoint whose completion ``storage`` holds back until its gate
    opens; returns once a split's checkpoint is completing (waiting in storage)."""
    storage.gate.clear()
    runner.request_checkpoint()
    runner.step()  # the checkpoint begins: its snapshot is the state of now
    storage.entered.acquire()  # a split's checkpoint is completing (held back in storage)


def step_until_settled(runner: LocalRunner, completed: int) -> None:
    while runner.checkpoints_completed < completed:
        runner.step()


def test_splits_process_on_while_a_checkpoint_completes_and_their_outputs_wait_for_its_commit(
    storage: GatedStorage, backend: StateBackend
) -> None:
    source = new_source()
    sink = CollectionSink[str]()
    runner = make_runner(source, sink, storage, backend)
    feed(source, 0, 12)
    runner.run_until_idle()
    before = sorted(sink.values)
    assert len(before) == 12

    begin_held_checkpoint(runner, storage)
    feed(source, 12, 12)
    runner.run_until_idle()
    assert runner.result().records_read == 24, "the splits processed on while it completed"
    assert sorted(sink.values) == before, "outputs made meanwhile wait for the commit"
    assert [runner.committed_checkpoint_id(s) for s in SPLITS] == [0, 0]

    storage.gate.set()
    step_until_settled(runner, 1)
    assert [runner.committed_checkpoint_id(s) for s in SPLITS] == [1, 1]
    after = sink.values
    assert len(after) == 24
    for key in ("k0", "k1", "k2"):  # per key in order: the held outputs came after the earlier ones
        counts = [int(v.rsplit("=", 1)[1]) for v in after if v.startswith(f"{key}:")]
        assert counts == list(range(1, len(counts) + 1)), (key, after)
    stats = runner.checkpoint_history[-1]
    assert stats.asynchronous and stats.pause_ms <= stats.duration_ms
    post_barrier = sorted(after[12:])
    runner.close()  # a crash: no final checkpoint

    # The snapshot holds the state of the moment the checkpoint began: the 12 records after it
    # are read again and give the same outputs.
    sink.clear()
    restored = make_runner(source, sink, storage, backend)
    restored.run_until_idle()
    assert sorted(sink.values) == post_barrier
    restored.close()


def test_a_failed_asynchronous_checkpoint_fails_the_job_and_drops_the_held_outputs(
    storage: GatedStorage, backend: StateBackend
) -> None:
    source = new_source()
    sink = CollectionSink[str]()
    runner = make_runner(source, sink, storage, backend)
    feed(source, 0, 6)
    runner.run_until_idle()
    runner.checkpoint()  # checkpoint 1 commits
    committed_outputs = list(sink.values)

    storage.fail_next = True
    begin_held_checkpoint(runner, storage)
    feed(source, 6, 6)
    runner.run_until_idle()
    storage.gate.set()
    with pytest.raises(CheckpointError, match="the storage refused"):
        step_until_settled(runner, 2)
    assert sink.values == committed_outputs, "no output of the failed checkpoint's successor"
    runner.close()

    storage.fail_next = False
    sink.clear()
    restored = make_runner(source, sink, storage, backend)
    assert [restored.committed_checkpoint_id(s) for s in SPLITS] == [1, 1]
    restored.run_until_idle()
    assert len(sink.values) == 6, "the 6 records after checkpoint 1 are processed again"
    restored.close()


def test_an_explicit_checkpoint_waits_for_the_one_in_flight(
    storage: GatedStorage, backend: StateBackend
) -> None:
    source = new_source()
    sink = CollectionSink[str]()
    runner = make_runner(source, sink, storage, backend)
    feed(source, 0, 6)
    runner.run_until_idle()
    begin_held_checkpoint(runner, storage)
    feed(source, 6, 6)
    runner.run_until_idle()
    storage.gate.set()
    runner.checkpoint()  # settles checkpoint 1 first, then takes checkpoint 2 and waits for it
    assert [runner.committed_checkpoint_id(s) for s in SPLITS] == [2, 2]
    assert [s.asynchronous for s in runner.checkpoint_history] == [True, False]
    assert len(sink.values) == 12
    runner.close()


@contextlib.contextmanager
def on_event(name: str, action: Callable[[], None]) -> Iterator[list[dict[str, Any]]]:
    """Call ``action`` in the logging thread whenever ``name`` is logged; yields those events."""
    seen: list[dict[str, Any]] = []

    def hook(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") == name:
            seen.append(dict(event))
            action()
        return event

    saved = structlog.get_config()["processors"]
    structlog.configure(processors=[hook, *saved])
    try:
        yield seen
    finally:
        structlog.configure(processors=saved)


def test_the_worker_waits_for_the_checkpoint_in_flight_once_it_holds_max_held_outputs(
    storage: GatedStorage, backend: StateBackend
) -> None:
    """Back-pressure: with more than ``max_held_outputs`` held, the worker stops reading and waits
    for the checkpoint in flight (here the storage completes it only once the worker says it
    waits), then writes what it held and reads on."""
    source = new_source()
    sink = CollectionSink[str]()
    # The hook is in place before the runner binds its loggers. Should the worker wait without
    # saying so, the hang guard opens the gate and the assertions below fail.
    guard = threading.Timer(HANG_GUARD_S, storage.gate.set)
    with on_event("checkpoint.backpressure", storage.gate.set) as waits:
        runner = make_runner(source, sink, storage, backend, max_held_outputs=5)
        feed(source, 0, 6)
        runner.run_until_idle()
        begin_held_checkpoint(runner, storage)
        feed(source, 6, 12)
        guard.start()
        try:
            runner.run_until_idle()
        finally:
            guard.cancel()
    assert len(waits) == 1 and waits[0]["held_outputs"] >= 5, waits
    assert runner.checkpoints_completed == 1, "the worker waited for the checkpoint in flight"
    assert [runner.committed_checkpoint_id(s) for s in SPLITS] == [1, 1]
    assert len(sink.values) == 18, "the held outputs were written once it committed"
    stats = runner.checkpoint_history[-1]
    assert stats.asynchronous and stats.pause_ms <= stats.duration_ms
    runner.close()


def test_held_outputs_below_the_limit_do_not_make_the_worker_wait(
    storage: GatedStorage, backend: StateBackend
) -> None:
    source = new_source()
    sink = CollectionSink[str]()
    with on_event("checkpoint.backpressure", storage.gate.set) as waits:
        runner = make_runner(source, sink, storage, backend, max_held_outputs=13)
        feed(source, 0, 6)
        runner.run_until_idle()
        begin_held_checkpoint(runner, storage)
        feed(source, 6, 12)
        runner.run_until_idle()
    assert waits == [] and runner.checkpoint_in_flight and len(sink.values) == 6
    storage.gate.set()
    step_until_settled(runner, 1)
    assert len(sink.values) == 18
    runner.close()


def test_asynchronous_is_validated_and_defaults_to_object_storage_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="asynchronous must be True, False or None"):
        CheckpointConfig(storage=tmp_path, asynchronous="yes")  # type: ignore[arg-type]
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigurationError, match="max_held_outputs must be an int >= 1"):
            CheckpointConfig(storage=tmp_path, max_held_outputs=bad)  # type: ignore[arg-type]
    local = CheckpointConfig(storage=tmp_path)
    assert local.resolved_asynchronous(local.resolved_storage()) is False
    remote = CheckpointConfig(storage="s3://bucket/prefix")
    assert remote.resolved_asynchronous(remote.resolved_storage()) is True
    forced = CheckpointConfig(storage="s3://bucket/prefix", asynchronous=False)
    assert forced.resolved_asynchronous(forced.resolved_storage()) is False


def test_a_savepoint_trigger_is_acknowledged_by_a_checkpoint_that_begins_after_it(
    storage: GatedStorage, backend: StateBackend
) -> None:
    """The job manager's savepoint of a running worker (``WorkerLink``): a checkpoint in flight
    when the trigger arrives began before it, so it does not acknowledge it; the next one does."""
    source = new_source()
    runner = make_runner(source, CollectionSink[str](), storage, backend)
    report_read, report_write = os.pipe()
    command_read, command_write = os.pipe()
    link = WorkerLink(report_write, interval_s=3600.0, command_fd=command_read)
    link.attach(runner)
    try:
        feed(source, 0, 6)
        runner.run_until_idle()
        begin_held_checkpoint(runner, storage)
        assert runner.checkpoint_in_flight
        with link._lock:  # as the command reader thread does on a TRIGGER_CHECKPOINT line
            link._incoming.append("savepoint-1")
        link.on_step()
        storage.gate.set()
        step_until_settled(runner, 1)
        link.on_step()
        assert acknowledged(report_read) == []
        step_until_settled(runner, 2)
        link.on_step()
        assert acknowledged(report_read) == [("savepoint-1", {s: 2 for s in SPLITS})]
    finally:
        runner.close()
        os.close(command_write)  # the link's reader thread ends
        os.close(report_write)
        os.close(report_read)


def acknowledged(fd: int) -> list[tuple[str, dict[str, int]]]:
    """The CHECKPOINT_ACK messages written to ``fd`` so far."""
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    found = []
    for line in data.split(b"\n"):
        message = messages.decode(line)
        if message is not None and message["type"] == messages.CHECKPOINT_ACK:
            found.append((message["trigger"], message["checkpoint_ids"]))
    return found
