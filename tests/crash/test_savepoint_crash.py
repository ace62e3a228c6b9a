"""Restoring from a savepoint stays exactly-once through SIGKILLs: phase 1 runs the crash job to the
end of its input (one worker), a savepoint is created from its checkpoints, then phase 2 (more
input) runs two workers that are all started, and restarted after every kill, with the same
``--from-savepoint DIR``, for a canonical and a native savepoint (the native one restores each
split from the RocksDB files it links). Output and final state must reflect every record of both phases exactly
once: a split restores the savepoint only until its first checkpoint after it committed, then its
own checkpoints. The savepoint is never modified."""

from __future__ import annotations

import time

import pytest

from eventapp import LocalCheckpointStorage, create_savepoint
from tests.crash.harness import CrashSetup, Oracle, Worker, produce_input, verify_exactly_once
from tests.crash.test_exactly_once import run_until_done
from tests.savepoint.test_savepoints import tree_digest

pytestmark = [pytest.mark.kafka, pytest.mark.crash]

PHASE1 = 20_000  # ids 0..19_999; phase 2 starts on a window boundary (ts = 1_000_000 + 3 * id)


@pytest.mark.parametrize("kind", ["canonical", "native"])
def test_restore_from_savepoint_under_sigkills_is_exactly_once(setup: CrashSetup, kind: str) -> None:
    first = produce_input(
        setup.bootstrap, setup.input, setup.partitions, records=PHASE1, keys=300, bad_json_every=2_999
    )
    worker = Worker(setup, 0, 1, launch=int(time.monotonic() * 1000))
    assert worker.proc.wait(timeout=300) == 0, worker.tail()
    splits = [f"{setup.input}-{p}" for p in range(setup.partitions)]
    created = create_savepoint(
        LocalCheckpointStorage(setup.checkpoint_dir),
        setup.job,
        splits,
        setup.work_dir / "savepoints",
        max_parallelism=128,
        partitioner="murmur2",
        native=kind == "native",
    )
    assert {s.native for s in created.metadata.splits.values()} == (
        {None} if kind == "canonical" else {"rocksdb"}
    )
    before = tree_digest(created.path)

    second = produce_input(
        setup.bootstrap,
        setup.input,
        setup.partitions,
        records=30_000,
        keys=300,
        bad_json_every=2_999,
        first_id=PHASE1,
    )
    stats = run_until_done(
        setup, parallelism=2, kills=8, seed=20261202, args=["--from-savepoint", str(created.path)]
    )
    both = Oracle(
        partitions=setup.partitions,
        valid=first.valid + second.valid,
        malformed={**first.malformed, **second.malformed},
    )
    figures = verify_exactly_once(setup, both, splits)
    print(f"savepoint crash test: {stats} {figures}")
    assert stats["random_kills"] + stats["fault_point_kills"] >= 8
    assert tree_digest(created.path) == before
