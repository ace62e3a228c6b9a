"""Restart always works, or refuses loudly: restore under fencing races, and no silent empty start.

Real worker processes (``eventapp run``), a real broker, RocksDB state; every output is audited.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from eventapp.state.inspect import StateInspector
from eventapp.statebackends import RocksDBStateBackend
from tests.crash.eos_job import UID, CrashCounter
from tests.crash.harness import CrashSetup, Oracle, Worker, audit_json, produce_input, verify_exactly_once

pytestmark = [pytest.mark.kafka, pytest.mark.crash]


def wait_for(condition: Callable[[], bool], what: str, workers: list[Worker], timeout: float = 120.0) -> None:
    """Poll a real condition (a log line, a process state); fail if a worker died or it never came."""
    deadline = time.monotonic() + timeout
    while not condition():
        for w in workers:
            assert w.poll() is None, (
                f"worker exited ({w.proc.returncode}) while waiting for {what}:\n{w.tail()}"
            )
        assert time.monotonic() < deadline, f"never saw {what}:\n" + "\n".join(w.tail() for w in workers)
        time.sleep(0.02)


def log_has(worker: Worker, text: str, count: int = 1) -> Callable[[], bool]:
    return lambda: worker.log.read_text(errors="replace").count(text) >= count


def is_stopped(worker: Worker) -> Callable[[], bool]:
    def check() -> bool:
        with open(f"/proc/{worker.proc.pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "T"

    return check


def splits_of(setup: CrashSetup) -> list[str]:
    return [f"{setup.input}-{p}" for p in range(setup.partitions)]


def test_a_worker_paused_during_restore_steps_back_and_one_owner_remains(setup: CrashSetup) -> None:
    """The race of issue 6: a replacement worker is paused (SIGSTOP) just before it fences the split's
    previous owner; a supervisor gives up on it and starts another; the paused one resumes *after*
    its successor runs and fences it. Ownership claims order the two: the paused one finds a newer
    claim and exits 3 (superseded), the successor recovers once more and finishes; output is
    exactly once."""
    oracle = produce_input(setup.bootstrap, setup.input, setup.partitions, records=6_000, keys=40)
    first = Worker(setup, 0, 1, launch=1, CRASH_SLOW_MS="1")
    wait_for(log_has(first, "checkpoint.completed"), "the first worker's checkpoint", [first])
    first.kill()  # a crash: open transactions, a supervisor restarts the worker

    # Its four splits recover in parallel threads; it stops when the last one reaches the point, so
    # every split has claimed and three have fenced the dead worker already.
    paused = Worker(setup, 0, 1, launch=2, faults=f"recover.before_init_transactions@{setup.partitions}:stop")
    wait_for(is_stopped(paused), "the replacement to stop before init_transactions", [paused])
    successor = Worker(setup, 0, 1, launch=3, CRASH_SLOW_MS="1")
    wait_for(log_has(successor, "checkpoint.completed"), "the successor's first checkpoint", [successor])
    os.kill(paused.proc.pid, signal.SIGCONT)  # it resumes and fences the successor's split

    assert paused.proc.wait(timeout=240) == 3, paused.tail()
    assert successor.proc.wait(timeout=240) == 0, successor.tail()
    paused_log = paused.log.read_text(errors="replace")
    assert "superseded by a newer one" in paused_log, paused.tail()
    successor_log = successor.log.read_text(errors="replace")
    assert "superseded" not in successor_log, successor.tail()
    # The race happened: the resumed worker fenced one of the successor's splits, and the successor
    # recovered it again (its newer claim stands) instead of giving up.
    assert "job.fenced_recovering" in successor_log, successor.tail()
    figures = verify_exactly_once(setup, oracle, splits_of(setup))
    assert figures["outputs"] > 0


def _snapshot_listing(root: Path) -> dict[str, str]:
    """Every file under the checkpoint directory with a digest of its content."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _newest_state(setup: CrashSetup, splits: list[str]) -> dict[str, int]:
    """Per-key counts from the newest committed snapshot of each split in checkpoint storage."""
    from eventapp import LocalCheckpointStorage

    storage = LocalCheckpointStorage(setup.checkpoint_dir)
    counts: dict[str, int] = {}
    for split in splits:
        newest = [i for i in storage.list_snapshots(setup.job, split) if i.committed][-1]
        path, _ = storage.open(setup.job, split, newest.name)
        store = RocksDBStateBackend(setup.work_dir / "inspect").open(
            f"inspect-{split}", restore_from=path / "state"
        )
        counts.update(dict(StateInspector(store, UID).items(CrashCounter.count)))
        store.close()
    return counts


def test_lost_kafka_checkpoints_refuse_to_start_and_delete_nothing(setup: CrashSetup) -> None:
    """Storage holds committed snapshots, Kafka has no committed checkpoint for them (here: a new group
    id, as after a lost cluster): the worker refuses to start, names both facts and the ways out, and
    no snapshot is deleted. --start-fresh archives them and starts over; --from-checkpoint restores
    them explicitly."""
    oracle = produce_input(setup.bootstrap, setup.input, setup.partitions, records=600, keys=12)
    first = Worker(setup, 0, 1, launch=1)
    assert first.proc.wait(timeout=180) == 0, first.tail()
    before = _snapshot_listing(setup.checkpoint_dir)
    assert any("/chk-" in name for name in before)

    refused = Worker(setup, 0, 1, launch=2, CRASH_GROUP=f"{setup.job}-lost-group")
    assert refused.proc.wait(timeout=180) == 1, refused.tail()
    text = refused.log.read_text(errors="replace")
    assert "RestoreError" in text and "holds committed snapshots" in text, refused.tail()
    assert "has no committed checkpoint for them" in text and f"{setup.job}-lost-group" in text
    assert "--from-checkpoint" in text and "--start-fresh" in text
    for split in splits_of(setup):
        assert split in text, f"the message names split {split}"
    assert _snapshot_listing(setup.checkpoint_dir) == before, "a refused start changes no snapshot"

    fresh = Worker(setup, 0, 1, launch=3, args=["--start-fresh"], CRASH_GROUP=f"{setup.job}-lost-group")
    assert fresh.proc.wait(timeout=180) == 0, fresh.tail()
    assert "split.started_fresh" in fresh.log.read_text(errors="replace")
    after = _snapshot_listing(setup.checkpoint_dir)
    for name, digest in before.items():
        split, _, rest = name.partition("/")  # <job>/<split>/...
        archived = [
            n
            for n, d in after.items()
            if d == digest and "/archive-" in n and n.endswith(rest.split("/", 1)[1])
        ]
        assert archived, f"{name} was archived, not deleted"

    # --from-checkpoint: restore the newest committed snapshots of the job explicitly, under a third
    # group; only the records written after them are read.
    extra = produce_input(setup.bootstrap, setup.input, setup.partitions, records=200, keys=12, first_id=600)
    restored = Worker(
        setup,
        0,
        1,
        launch=4,
        args=["--from-checkpoint", str(setup.checkpoint_dir / setup.job)],
        CRASH_GROUP=f"{setup.job}-third",
    )
    assert restored.proc.wait(timeout=180) == 0, restored.tail()
    assert "split.restored_explicitly" in restored.log.read_text(errors="replace")
    outputs, _ = audit_json(setup.bootstrap, setup.output)
    seen = Counter((o["k"], o["id"], o["n"]) for o in outputs if o["t"] == "count")
    combined = Oracle(setup.partitions, valid=oracle.valid + extra.valid)
    assert set(seen) == combined.counts()
    # The first 600 records were counted by the first run and by the fresh start; the 200 new ones
    # only by the explicit restore (which resumed at the snapshots' positions, not from the start).
    first_ids = {r["id"] for r in oracle.valid}
    assert {n for (k, i, _), n in seen.items() if i in first_ids} == {2}
    assert {n for (k, i, _), n in seen.items() if i not in first_ids} == {1}
    assert _newest_state(setup, splits_of(setup)) == dict(combined.per_key())


def test_restart_after_the_checkpoint_topic_grew_past_50k_markers(setup: CrashSetup) -> None:
    """A long history in the checkpoint topic: 50k markers written after this job's last checkpoint
    (other jobs sharing the topic while it was down). The restart finds its markers below them and
    continues exactly once."""
    from confluent_kafka import Producer

    from eventapp.connectors.kafka.metadata import CheckpointMarker
    from eventapp.connectors.kafka.txnlog import high_watermark

    oracle = produce_input(setup.bootstrap, setup.input, setup.partitions, records=2_000, keys=40)
    first = Worker(setup, 0, 1, launch=1)
    assert first.proc.wait(timeout=180) == 0, first.tail()

    history = Producer(
        {"bootstrap.servers": setup.bootstrap, "transactional.id": f"{setup.job}-history", "linger.ms": 5}
    )
    history.init_transactions(30)
    for batch in range(50):
        history.begin_transaction()
        for i in range(1_000):
            n = batch * 1_000 + i
            marker = CheckpointMarker("another-job", f"orders-{n % 8}", n, f"chk-{n:09d}-x", n)
            history.produce(setup.checkpoint_topic, marker.to_bytes(), key=marker.key, partition=0)
        history.commit_transaction(30)
    assert high_watermark(setup.bootstrap, setup.checkpoint_topic, 0) >= 50_000

    more = produce_input(
        setup.bootstrap, setup.input, setup.partitions, records=1_000, keys=40, first_id=2_000
    )
    second = Worker(setup, 0, 1, launch=2)
    assert second.proc.wait(timeout=300) == 0, second.tail()
    log = second.log.read_text(errors="replace")
    assert "kafka.checkpoint_marker.scan_widened" in log and log.count('"split.restored"') == setup.partitions
    verify_exactly_once(setup, Oracle(setup.partitions, valid=oracle.valid + more.valid), splits_of(setup))
