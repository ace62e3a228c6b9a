"""Exactly-once through the job manager: it restarts workers SIGKILLed at random moments, and a
second job manager for the same job fences the first; outputs are audited against the oracle."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from tests.crash.harness import CrashSetup, produce_input, verify_exactly_once
from tests.support.jobmanager import JobManagerProcess, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.crash]

JOB = "tests.crash.eos_job:build_job"


def _env(setup: CrashSetup, state_dir: Path, **extra: str) -> dict[str, str]:
    env = setup.env(state_dir, **extra)
    return {k: v for k, v in env.items() if k.startswith("CRASH_") or k == "PYTHONPATH"}


def _progress(jm: JobManagerProcess) -> int:
    return sum(r["offset"] or 0 for r in jm.get(f"/jobs/{jm.job_id}")["splits"])


def test_job_manager_restarts_killed_workers_and_output_stays_exactly_once(setup: CrashSetup) -> None:
    oracle = produce_input(
        setup.bootstrap, setup.input, setup.partitions, records=30_000, keys=200, bad_json_every=997
    )
    jm = JobManagerProcess(
        setup.work_dir,
        JOB,
        2,
        "--restart-strategy",
        "fixed-delay:attempts=50,delay=0",
        "--json-logs",
        env=_env(setup, setup.work_dir / "state", CRASH_SLOW_MS="0.05"),
    )
    try:
        rng = random.Random(20261202)
        kills = 0
        while kills < 6 and jm.process.poll() is None:
            pids = wait_for(lambda: jm.process.poll() is not None or jm.running_pids(), "a running worker")
            if pids is True:
                break
            # Let it process a little (a random number of its reports), then kill it.
            victim = rng.choice(pids)
            target = _progress(jm) + rng.randint(200, 3_000)
            wait_for(
                lambda target=target: jm.process.poll() is not None or _progress(jm) >= target,
                "progress before the next kill",
            )
            try:
                os.kill(victim, signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                continue  # it finished its splits meanwhile
        assert jm.wait_exit() == 0, jm.output()[-4000:]
        output = jm.output()
        assert kills >= 3, f"only {kills} kills landed before the job finished"
        assert output.count('"event": "slot.restart_scheduled"') == kills, output[-4000:]
        assert '"state": "FINISHED"' in output
    finally:
        jm.close()
    figures = verify_exactly_once(setup, oracle, [f"{setup.input}-{p}" for p in range(setup.partitions)])
    print(f"job manager crash test: {kills} kills, {figures}")


def test_a_second_job_manager_fences_the_first(setup: CrashSetup) -> None:
    oracle = produce_input(setup.bootstrap, setup.input, setup.partitions, records=6_000, keys=60)
    first = JobManagerProcess(
        setup.work_dir,
        JOB,
        2,
        "--json-logs",
        env=_env(setup, setup.work_dir / "state-a", CRASH_BOUNDED="0", CRASH_SLOW_MS="0.5"),
    )
    second = None
    try:
        first.wait_ready()
        wait_for(
            lambda: all(
                (r["last_checkpoint"] or 0) >= 1 for r in first.get("/jobs/" + first.job_id)["splits"]
            ),
            "a checkpoint",
        )
        # Another job manager for the same job (another machine: its own state directory).
        second = JobManagerProcess(
            setup.work_dir, JOB, 2, "--json-logs", env=_env(setup, setup.work_dir / "state-b")
        )
        assert first.wait_exit() == 3, first.output()[-4000:]
        assert '"event": "jobmanager.superseded"' in first.output()
        assert second.wait_exit() == 0, second.output()[-4000:]  # bounded: it read to the end
    finally:
        first.close()
        if second is not None:
            second.close()
    verify_exactly_once(setup, oracle, [f"{setup.input}-{p}" for p in range(setup.partitions)])


def test_job_manager_with_consumer_group_workers(setup: CrashSetup) -> None:
    """``eventapp run JOB --parallelism 2 --group``: the group divides the splits between the job
    manager's workers; a killed worker restarts and rejoins; outputs stay exactly-once."""
    oracle = produce_input(setup.bootstrap, setup.input, setup.partitions, records=20_000, keys=100)
    env = _env(setup, setup.work_dir / "state-group", CRASH_GROUP_ASSIGNMENT="1", CRASH_SLOW_MS="0.2")
    jm = JobManagerProcess(
        setup.work_dir, JOB, 2, "--group", "--restart-strategy", "fixed-delay:attempts=5,delay=0", env=env
    )
    try:

        def owners() -> dict[str, int]:
            job = jm.get(f"/jobs/{jm.job_id}")
            return {row["split"]: row["owner"] for row in job["splits"]}

        # Both workers end up with splits (the group's second rebalance gives the newcomer its share).
        split_owners = wait_for(
            lambda: (o := owners()) and len(o) == 4 and set(o.values()) == {0, 1} and o,
            "both slots to own splits",
        )
        assert sorted(split_owners) == [f"{setup.input}-{p}" for p in range(4)]
        rebalances = [
            float(line.rsplit(" ", 1)[1])
            for line in jm.http.get("/metrics").text.splitlines()
            if line.startswith("eventapp_rebalances_total{")
        ]
        assert len(rebalances) == 2 and all(r >= 1 for r in rebalances), rebalances
        victim = jm.get(f"/jobs/{jm.job_id}")["slots"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: (
                (j := jm.get(f"/jobs/{jm.job_id}"))["slots"][0]["attempt"] == 2
                and j["slots"][0]["status"] == "RUNNING"
                and len(owners()) == 4
            ),
            "slot 0 back, every split owned",
        )
        jm.process.send_signal(signal.SIGTERM)
        assert jm.wait_exit() == 0, jm.output()[-4000:]
    finally:
        jm.close()
    drain_env = {k: v for k, v in env.items() if k != "CRASH_GROUP_ASSIGNMENT"}
    drain = JobManagerProcess(setup.work_dir, JOB, 1, env=drain_env)  # static, bounded: reads to the end
    try:
        assert drain.wait_exit() == 0, drain.output()[-4000:]
    finally:
        drain.close()
    verify_exactly_once(setup, oracle, [f"{setup.input}-{p}" for p in range(setup.partitions)])
