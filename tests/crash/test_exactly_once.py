"""Exactly-once, proven: worker processes are SIGKILLed at random moments and inside every
checkpoint phase, restarted, and in the end the output (read with the audit reader, which honours
transaction markers) and the final committed state reflect every input record exactly once."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence

import pytest

from eventapp.runtime.faults import FAULT_POINTS
from tests.crash.harness import CrashSetup, Oracle, Worker, produce_input, verify_exactly_once

pytestmark = [pytest.mark.kafka, pytest.mark.crash]

CHECKPOINT_PHASES = [p for p in FAULT_POINTS if p.startswith("checkpoint.")]


def run_until_done(
    setup: CrashSetup,
    parallelism: int,
    kills: int,
    seed: int,
    deadline_s: float = 420.0,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    phases: Sequence[str] = tuple(CHECKPOINT_PHASES),
    target: str = "tests.crash.eos_job:build_job",
) -> dict[str, int]:
    """Run ``parallelism`` workers; SIGKILL one at a random moment ``kills`` times (about half of the
    restarts also carry a fault plan that makes the worker kill itself inside a checkpoint phase);
    restart every killed worker (with the same ``args`` to ``eventapp run``); return when all
    exited 0. ``phases``: the fault points to kill in (default: every checkpoint phase); ``target``:
    the job the workers run."""
    rng = random.Random(seed)
    launches = 0
    phases = list(phases)
    rng.shuffle(phases)

    untried = list(phases)

    def launch(subtask: int) -> Worker:
        # Restarts carry a fault plan: first every checkpoint phase once, then a random one 60% of
        # the time. The worker kills itself at the n-th time it reaches that phase.
        nonlocal launches
        launches += 1
        faults = ""
        if launches > parallelism and (untried or rng.random() < 0.6):
            phase = untried.pop() if untried else rng.choice(phases)
            faults = f"{phase}@{rng.randint(1, 2)}"
        return Worker(setup, subtask, parallelism, launches, faults, args=args, target=target, **(env or {}))

    def requeue_unfired(worker: Worker) -> None:
        """A fault plan pre-empted by a random kill (or the end) did not fire: try it again."""
        phase = worker.faults.split("@")[0]
        if phase and phase not in phases_hit and phase not in untried:
            untried.append(phase)

    phases_hit: set[str] = set()
    workers = {i: launch(i) for i in range(parallelism)}
    done: set[int] = set()
    stats = {"random_kills": 0, "fault_point_kills": 0, "launches": 0}
    next_kill = time.monotonic() + rng.uniform(0.3, 2.0)
    start = time.monotonic()
    while len(done) < parallelism:
        assert time.monotonic() - start < deadline_s, "crash run did not finish in time:\n" + "\n".join(
            w.tail() for w in workers.values()
        )
        for i, w in list(workers.items()):
            if i in done:
                continue
            rc = w.poll()
            if rc is None:
                continue
            if rc == 0:
                done.add(i)
                requeue_unfired(w)
            elif rc == -9:
                if not w.killed_by_us:
                    stats["fault_point_kills"] += 1
                    phases_hit.add(w.faults.split("@")[0])
                workers[i] = launch(i)
            else:
                pytest.fail(f"worker {i} failed with exit code {rc}:\n{w.tail()}")
        # Random kills until `kills` were made; after that only to restart a worker with a fault
        # plan for a checkpoint phase that has not been killed in yet.
        wanted = stats["random_kills"] < kills or (untried and not any(w.faults for w in workers.values()))
        if wanted and time.monotonic() >= next_kill:
            # Only workers that restored and started processing: on a loaded machine a worker can
            # take longer to start than the kill interval, and kills during start-up prove less.
            alive = [i for i, w in workers.items() if i not in done and w.poll() is None and w.started()]
            if alive:
                victim = rng.choice(alive)
                workers[victim].kill()
                requeue_unfired(workers[victim])
                stats["random_kills"] += 1
                workers[victim] = launch(victim)
            next_kill = time.monotonic() + rng.uniform(0.2, 1.5)
        time.sleep(0.02)
    stats["launches"] = launches
    stats["checkpoint_phases_killed_in"] = len(phases_hit)
    stats["seconds"] = int(time.monotonic() - start)
    return stats


def test_sigkill_chaos_keeps_output_and_state_exactly_once(
    setup: CrashSetup, record_property: Callable[..., None]
) -> None:
    oracle: Oracle = produce_input(
        setup.bootstrap,
        setup.input,
        setup.partitions,
        records=100_000,
        keys=400,
        bad_json_every=4_999,
        bad_type_every=7_919,
    )
    assert len(oracle.malformed) > 10
    stats = run_until_done(setup, parallelism=2, kills=16, seed=20261121)
    splits = [f"{setup.input}-{p}" for p in range(setup.partitions)]
    figures = verify_exactly_once(setup, oracle, splits)
    total_kills = stats["random_kills"] + stats["fault_point_kills"]
    print(f"crash test: {stats} {figures}")
    for k, v in {**stats, **figures}.items():
        record_property(k, v)
    assert total_kills >= 20, (
        f"only {total_kills} kills happened ({stats}); the test must kill at least 20 times"
    )
    assert stats["checkpoint_phases_killed_in"] == len(CHECKPOINT_PHASES), (
        f"a kill inside every checkpoint phase ({stats})"
    )
    assert figures["aborted_output_records"] > 0, "some output was aborted by the kills (and filtered)"


ASYNC_PHASES = [*CHECKPOINT_PHASES, "async_checkpoint.in_flight", "async_checkpoint.before_release"]


def test_asynchronous_checkpoints_keep_output_and_state_exactly_once_through_sigkills(
    setup: CrashSetup, record_property: Callable[..., None]
) -> None:
    """The chaos test with asynchronous checkpoints (``CheckpointConfig(asynchronous=True)``): the
    splits go on processing while each checkpoint completes, their outputs held until it committed.
    Also killed while a checkpoint is in flight and between its commit and the writing of the held
    outputs."""
    oracle: Oracle = produce_input(
        setup.bootstrap, setup.input, setup.partitions, records=40_000, keys=200, bad_json_every=4_999
    )
    env = {"CRASH_ASYNC_CHECKPOINTS": "1"}
    stats = run_until_done(setup, parallelism=2, kills=8, seed=20261203, env=env, phases=ASYNC_PHASES)
    splits = [f"{setup.input}-{p}" for p in range(setup.partitions)]
    figures = verify_exactly_once(setup, oracle, splits)
    print(f"async crash test: {stats} {figures}")
    for k, v in {**stats, **figures}.items():
        record_property(k, v)
    assert stats["checkpoint_phases_killed_in"] == len(ASYNC_PHASES), (
        f"a kill inside every checkpoint phase, both asynchronous ones too ({stats})"
    )
    assert figures["aborted_output_records"] > 0, "some output was aborted by the kills (and filtered)"


def test_shuffled_key_by_keeps_output_and_state_exactly_once_through_sigkills(
    setup: CrashSetup, record_property: Callable[..., None]
) -> None:
    """The same job with its key_by shuffled through a repartition topic (every key's records are
    spread over all input partitions): kills at random moments and in every checkpoint phase, of
    workers that each own input splits and shuffle splits."""
    oracle: Oracle = produce_input(
        setup.bootstrap, setup.input, setup.partitions, records=30_000, keys=200,
        bad_json_every=4_999, bad_type_every=7_919, spread=True,
    )  # fmt: skip
    stats = run_until_done(setup, parallelism=2, kills=8, seed=20261203, env={"CRASH_SHUFFLE": "1"})
    shuffle = f"{setup.job}-crash-counter-repartition"
    splits = [f"{shuffle}-{p}" for p in range(setup.partitions)]
    figures = verify_exactly_once(setup, oracle, splits, shuffled=True)
    total_kills = stats["random_kills"] + stats["fault_point_kills"]
    print(f"shuffle crash test: {stats} {figures}")
    for k, v in {**stats, **figures}.items():
        record_property(k, v)
    assert total_kills >= 10, f"only {total_kills} kills happened ({stats})"
    assert stats["checkpoint_phases_killed_in"] == len(CHECKPOINT_PHASES), (
        f"a kill inside every checkpoint phase ({stats})"
    )


def _single_worker_run(setup: CrashSetup, **env: str) -> Worker:
    worker = Worker(setup, 0, 1, launch=int(time.monotonic() * 1000), **env)
    worker.proc.wait(timeout=180)
    return worker


def test_zombie_is_fenced_and_nothing_is_duplicated(setup: CrashSetup) -> None:
    oracle = produce_input(setup.bootstrap, setup.input, setup.partitions, records=4_000, keys=40)
    zombie = Worker(setup, 0, 1, launch=1, CRASH_SLOW_MS="2")
    log = zombie.log
    deadline = time.monotonic() + 60
    while "checkpoint.completed" not in log.read_text(errors="replace"):
        assert zombie.poll() is None, zombie.tail()
        assert time.monotonic() < deadline, "the first instance never checkpointed"
        time.sleep(0.05)
    successor = Worker(setup, 0, 1, launch=2)  # same job, same transactional ids
    assert successor.proc.wait(timeout=180) == 0, successor.tail()
    rc = zombie.proc.wait(timeout=120)
    text = zombie.log.read_text(errors="replace")
    assert rc == 3, f"the older instance must step back as superseded (rc={rc}):\n{zombie.tail()}"
    assert "superseded by a newer one" in text and "kafka.split.superseded" in text, zombie.tail()
    verify_exactly_once(setup, oracle, [f"{setup.input}-{p}" for p in range(setup.partitions)])


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_missing_or_corrupt_snapshot_refuses_to_start(setup: CrashSetup, damage: str) -> None:
    produce_input(setup.bootstrap, setup.input, setup.partitions, records=500, keys=10)
    first = _single_worker_run(setup)
    assert first.proc.returncode == 0, first.tail()
    split_dir = setup.checkpoint_dir / setup.job / f"{setup.input}-0"
    snapshots = sorted(p for p in split_dir.iterdir() if p.name.startswith("chk-"))
    committed = snapshots[-1]
    if damage == "delete":
        shutil.rmtree(committed)
    else:
        (committed / "split.json").write_text("{garbage")
    second = _single_worker_run(setup)
    out = second.log.read_text(errors="replace")
    assert second.proc.returncode == 1, out
    expected = "SnapshotMissingError" if damage == "delete" else "SnapshotCorruptError"
    assert expected in out and "Refusing to start" in out, out
    assert committed.name in out, "the message names the snapshot"


def test_rescaling_after_a_crash_fences_the_old_owners_and_keeps_exactly_once(setup: CrashSetup) -> None:
    """Two workers are killed mid-stream (their transactions left open), then the job continues with
    one worker owning all four partitions, then with four workers: each split's transactional id
    fences whoever owned it before, and its state moves with it."""
    oracle = produce_input(
        setup.bootstrap, setup.input, setup.partitions, records=30_000, keys=80, bad_json_every=997
    )
    launch = 0

    def start(subtask: int, parallelism: int) -> Worker:
        nonlocal launch
        launch += 1
        return Worker(setup, subtask, parallelism, launch, CRASH_SLOW_MS="0.05")

    for parallelism in (2, 1):
        workers = [start(i, parallelism) for i in range(parallelism)]
        deadline = time.monotonic() + 60
        while not all(w.log.read_text(errors="replace").count("checkpoint.completed") >= 2 for w in workers):
            assert all(w.poll() is None for w in workers), "\n".join(w.tail() for w in workers)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for w in workers:
            w.kill()
    finishers = [start(i, 4) for i in range(4)]
    for w in finishers:
        assert w.proc.wait(timeout=240) == 0, w.tail()
    figures = verify_exactly_once(setup, oracle, [f"{setup.input}-{p}" for p in range(setup.partitions)])
    assert figures["aborted_output_records"] > 0


def test_at_least_once_mode_loses_nothing_through_sigkills(setup: CrashSetup) -> None:
    """The same job in at-least-once mode: output since the last checkpoint may repeat after a
    crash, but nothing is lost, every repeated output is identical, and the final state is exact."""
    from collections import Counter

    from tests.crash.harness import audit_json, final_state

    oracle = produce_input(
        setup.bootstrap, setup.input, setup.partitions, records=20_000, keys=80, bad_json_every=997
    )
    offsets = input_offsets(oracle)
    launch = kills = repeating_kills = 0
    while kills < 3 or not repeating_kills:
        assert launch < 8, f"none of {kills} kills left output past the committed checkpoint"
        launch += 1
        worker = Worker(setup, 0, 1, launch, CRASH_MODE="at_least_once", CRASH_SLOW_MS="0.1")
        # Kill once the worker checkpointed twice and wrote output past its committed checkpoint.
        deadline = time.monotonic() + 60
        while worker.log.read_text(errors="replace").count("checkpoint.completed") < 2 or not (
            output_past_checkpoint(setup, offsets)
        ):
            assert worker.poll() is None, worker.tail()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worker.kill()
        kills += 1
        # A checkpoint may have committed that output before the kill: count the kills after which
        # some output lies past the committed checkpoint (the next worker writes it again).
        repeating_kills += output_past_checkpoint(setup, offsets)
    final = Worker(setup, 0, 1, launch + 1, CRASH_MODE="at_least_once")
    assert final.proc.wait(timeout=240) == 0, final.tail()

    outputs, _ = audit_json(setup.bootstrap, setup.output)
    counts = Counter((o["k"], o["id"], o["n"]) for o in outputs if o["t"] == "count")
    assert set(counts) == oracle.counts(), "no loss, and a repeated record reproduces the same output"
    assert sum(counts.values()) > len(counts), "the kills made some output repeat (at-least-once)"
    assert {
        (k, w, c) for (k, w, c) in Counter((o["k"], o["w"], o["c"]) for o in outputs if o["t"] == "window")
    } == set(oracle.windows())
    state = final_state(setup, [f"{setup.input}-{p}" for p in range(setup.partitions)])
    assert {k: s["count"] for k, s in state.items() if "count" in s} == dict(oracle.per_key())
    letters, _ = audit_json(setup.bootstrap, setup.dlq)
    assert {(int(d["split"].rsplit("-", 1)[1]), d["position"]) for d in letters} == set(oracle.malformed)


def input_offsets(oracle: Oracle) -> dict[int, tuple[int, int]]:
    """Valid input id -> (partition, offset) of its record. The input topic started empty, so a
    partition's offsets count from 0; key ``k<i>`` is in partition ``i % partitions``."""
    offsets: dict[int, tuple[int, int]] = {}
    next_offset = [0] * oracle.partitions
    for record in oracle.valid:  # in per-partition order
        partition = int(record["k"][1:]) % oracle.partitions
        while (partition, next_offset[partition]) in oracle.malformed:
            next_offset[partition] += 1
        offsets[record["id"]] = (partition, next_offset[partition])
        next_offset[partition] += 1
    return offsets


def output_past_checkpoint(setup: CrashSetup, offsets: dict[int, tuple[int, int]]) -> bool:
    """Whether the output topic holds a count output of an input record at or after its split's
    committed position: the next worker starts there and writes that output again."""
    from eventapp.connectors.kafka import KafkaCommitConfig, read_committed_checkpoints
    from tests.crash.harness import audit_json

    splits = [f"{setup.input}-{p}" for p in range(setup.partitions)]
    committed = read_committed_checkpoints(
        KafkaCommitConfig.for_source(setup.source_config(), setup.job), splits, wait_for_pending=False
    )
    position = {}
    for p, split in enumerate(splits):
        checkpoint = committed[split].checkpoint
        position[p] = 0 if checkpoint is None or checkpoint.position is None else checkpoint.position
    outputs, _ = audit_json(setup.bootstrap, setup.output)
    for output in outputs:
        if output["t"] == "count":
            partition, offset = offsets[output["id"]]
            if offset >= position[partition]:
                return True
    return False
