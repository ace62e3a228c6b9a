"""Exactly-once through consumer-group rebalances (``eventapp run --group``): members join, leave
and are SIGKILLed while they process; a static worker then drains what is left; the audit checks
every output once."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.crash.harness import ROOT, CrashSetup, produce_input, verify_exactly_once
from tests.support.jobmanager import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.crash]

JOB = "tests.crash.eos_job:build_job"


class Member:
    """One ``eventapp run JOB --group`` worker process (its own state directory, as on its own
    machine)."""

    def __init__(self, setup: CrashSetup, name: str, launch: int, *args: str, **env: str) -> None:
        self.name = name
        self.log = setup.work_dir / f"member-{name}-{launch}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "eventapp", "run", JOB, "--json-logs", *args],
                env=setup.env(setup.work_dir / f"state-{name}-{launch}", **env),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def count(self, event: str) -> int:
        return self.text().count(f'"event": "{event}"')

    def alive(self) -> bool:
        assert self.process.poll() is None, (
            f"member {self.name} exited {self.process.returncode}:\n{self.text()[-4000:]}"
        )
        return True


def _group_member(setup: CrashSetup, name: str, launch: int, static: bool = True) -> Member:
    args = ("--group", "--group-instance-id", f"{setup.job}-{name}") if static else ("--group",)
    return Member(setup, name, launch, *args, CRASH_GROUP_ASSIGNMENT="1", CRASH_SLOW_MS="0.2")


def test_rebalances_and_kills_keep_exactly_once(setup: CrashSetup) -> None:
    oracle = produce_input(
        setup.bootstrap, setup.input, setup.partitions, records=40_000, keys=200, bad_json_every=1_999
    )
    a = _group_member(setup, "a", 1)
    wait_for(
        lambda: a.alive() and a.count("group.splits_started") >= 1 and a.count("checkpoint.completed") >= 2,
        "member a to own splits and checkpoint",
    )
    assert "kafka.source.splits_assigned" in a.text()
    # b joins: a checkpoints and releases what moves to b (incremental), b restores it.
    b = _group_member(setup, "b", 1)
    wait_for(
        lambda: b.alive() and b.count("group.splits_started") >= 1 and b.count("checkpoint.completed") >= 1,
        "member b to get splits",
    )
    wait_for(lambda: a.count("group.splits_released") >= 1, "member a to release splits")
    assert '"committed": true' in a.text(), a.text()[-3000:]
    # c joins, then a is SIGKILLed mid-processing: after the session timeout its splits go to the
    # others, which fence its producers and restore its last checkpoints.
    c = _group_member(setup, "c", 1, static=False)
    wait_for(lambda: c.alive() and c.count("group.splits_started") >= 1, "member c to get splits")
    started = b.count("group.splits_started") + c.count("group.splits_started")
    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    wait_for(
        lambda: (
            b.alive()
            and c.alive()
            and b.count("group.splits_started") + c.count("group.splits_started") > started
        ),
        "a's splits to move to b and c",
    )
    # b freezes (SIGSTOP) past its session timeout: the group gives its splits to c, whose restore
    # fences b's producers. Resumed, b learns it lost them and drops them without committing.
    c_started = c.count("group.splits_started")
    b.process.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: c.alive() and c.count("group.splits_started") > c_started, "b's splits to move to c")
    finally:
        b.process.send_signal(signal.SIGCONT)
    wait_for(
        lambda: (
            b.alive() and (b.count("kafka.source.splits_lost") >= 1 or b.count("job.fenced_recovering") >= 1)
        ),
        "b to find out its splits are gone",
    )
    # c leaves with SIGTERM (a final checkpoint); b ends up with everything, and is SIGKILLed.
    b_started = b.count("group.splits_started")
    c.process.send_signal(signal.SIGTERM)
    assert c.process.wait(timeout=180) == 0, c.text()[-4000:]
    wait_for(lambda: b.alive() and b.count("group.splits_started") > b_started, "b to run c's splits")
    b.process.send_signal(signal.SIGKILL)
    b.process.wait()
    # A static worker drains what is left from each split's committed checkpoint.
    drain = Member(setup, "drain", 1)
    assert drain.process.wait(timeout=300) == 0, drain.text()[-4000:]
    figures = verify_exactly_once(setup, oracle, [f"{setup.input}-{p}" for p in range(setup.partitions)])
    print(f"group rebalance test: {figures}")
