"""The eventapp command line: split assignment, running a job, and clear errors for wrong usage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eventapp import ConfigurationError
from eventapp.assignment import assign_splits
from eventapp.cli import main
from tests.runtime import cli_job

ROOT = Path(__file__).resolve().parents[2]


def test_assign_splits_round_robin_in_numeric_order() -> None:
    splits = [f"t-{i}" for i in (10, 2, 1, 0, 3)]
    assert assign_splits(splits, 2, 0) == ["t-0", "t-2", "t-10"]
    assert assign_splits(splits, 2, 1) == ["t-1", "t-3"]
    with pytest.raises(ConfigurationError, match="--subtask must be between 0 and parallelism-1"):
        assign_splits(splits, 2, 2)
    with pytest.raises(ConfigurationError, match="--parallelism must be >= 1"):
        assign_splits(splits, 0, 0)


def test_run_subtask_processes_only_its_splits() -> None:
    cli_job.SINK.clear()
    assert main(["run", "tests.runtime.cli_job:build_job", "--parallelism", "2", "--subtask", "1"]) == 0
    # split i goes to ord(word) % 4; subtask 1 of 2 runs splits collection-1 and collection-3
    assert sorted(cli_job.SINK.values) == [("a", 1), ("a", 2), ("a", 3), ("c", 1)]


def test_splits_command_lists_assignment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["splits", "tests.runtime.cli_job:build_job", "--parallelism", "2"]) == 0
    out = capsys.readouterr().out
    assert "subtask 0: collection-0, collection-2" in out
    assert "subtask 1: collection-1, collection-3" in out


JOB = "tests.runtime.cli_job:build_job"
ALL_SPLITS = "collection-0, collection-1, collection-2, collection-3"
MUST_BE_POSITIVE = (
    "eventapp: configuration error: --parallelism must be >= 1 (the number of workers), got {}; for example "
    "--parallelism 2 --subtask 0 on one worker and --parallelism 2 --subtask 1 on the other\n"
)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "tests.runtime.cli_job"], "must look like 'package.module:attribute'"),
        (["run", "no.such.module:job"], "cannot import module 'no.such.module'"),
        (["run", "tests.runtime.cli_job:missing"], "has no attribute 'missing'"),
        (["run", "tests.runtime.cli_job:not_a_job"], "is not an eventapp Job"),
        (
            ["run", JOB, "--parallelism", "9"],
            "--parallelism 9 is more than the 4 splits of source 'collection': the extra task slots would get "
            "no work; lower --parallelism to <= 4",
        ),
        (
            ["run", JOB, "--splits", "nope-9"],
            f"--splits 'nope-9': 'nope-9' is not a split of source 'collection'; its splits are {ALL_SPLITS}. "
            f"Pass some of these, for example --splits collection-0,collection-1",
        ),
        (
            ["run", JOB, "--splits", "collection-1,nope-9,t-2"],
            f"'nope-9', 't-2' are not splits of source 'collection'; its splits are {ALL_SPLITS}",
        ),
        (
            ["run", JOB, "--parallelism", "9", "--subtask", "8"],
            "subtask 8 of --parallelism 9 gets no splits: source 'collection' has 4 splits, so at most 4 "
            "subtasks get work; lower --parallelism to <= 4",
        ),
    ],
)
def test_wrong_usage_exits_2_with_an_actionable_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", JOB, "--parallelism", "0"],
        ["run", JOB, "--parallelism", "-1"],
        ["run", JOB, "--parallelism", "0", "--subtask", "0"],
        ["run", JOB, "--parallelism", "-2", "--splits", "collection-0"],
        ["run", "no.such.module:job", "--parallelism", "0"],  # checked before the job is loaded
        ["splits", JOB, "--parallelism", "0"],
        ["splits", JOB, "--parallelism", "-3"],
    ],
)
def test_parallelism_below_1_is_rejected_first(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    parallelism = argv[argv.index("--parallelism") + 1]
    assert captured.err == MUST_BE_POSITIVE.format(parallelism)
    assert captured.out == ""


@pytest.mark.parametrize("splits", [",", " , ,", ""])
def test_empty_splits_option_is_rejected_with_an_example(
    splits: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_job.SINK.clear()
    assert main(["run", JOB, "--splits", splits]) == 2
    assert capsys.readouterr().err == (
        f"eventapp: configuration error: --splits {splits!r} is empty (it names no split ids): pass "
        f"comma-separated split ids of source 'collection', for example --splits collection-0,collection-1 "
        f"(eventapp splits {JOB} lists them)\n"
    )
    assert cli_job.SINK.values == []


@pytest.mark.parametrize("parallelism", [5, 9])
def test_splits_command_rejects_more_subtasks_than_splits(
    parallelism: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["splits", JOB, "--parallelism", str(parallelism)]) == 2
    captured = capsys.readouterr()
    idle = parallelism - 4
    assert captured.err == (
        f"eventapp: configuration error: --parallelism {parallelism} leaves {idle} subtask{'s' if idle > 1 else ''} "
        f"without splits: source 'collection' has 4 splits, so at most 4 subtasks get work; lower "
        f"--parallelism to <= 4\n"
    )
    assert captured.out == "", "no assignment with an empty subtask is printed"


def test_splits_command_accepts_one_subtask_per_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["splits", JOB, "--parallelism", "4"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"subtask {i}: collection-{i}" for i in range(4)]


def test_unknown_flag_is_rejected_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "tests.runtime.cli_job:build_job", "--paralelism", "2"])
    assert info.value.code == 2
    assert "unrecognized arguments: --paralelism" in capsys.readouterr().err


def test_sigterm_stops_a_daemon_with_a_final_checkpoint(tmp_path: Path) -> None:
    env = {**os.environ, "CLI_JOB_CHECKPOINTS": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventapp", "run", "tests.runtime.cli_job:build_daemon_job", "--json-logs"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    watchdog = threading.Timer(90, proc.kill)  # a hung worker fails the test instead of blocking it
    watchdog.start()
    try:
        for line in proc.stdout:
            if b'"job.started"' in line:
                break
        emitted = tmp_path / "emitted.txt"  # the job appends a line per output
        deadline = time.monotonic() + 60
        while not emitted.exists() or emitted.read_text().count("\n") < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the three records were not processed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # no periodic checkpoint yet (interval 60 s)
        rest = proc.stdout.read().decode()
        assert proc.wait(timeout=30) == 0, rest
    finally:
        watchdog.cancel()
    assert "job.stop_requested" in rest and "checkpoint.completed" in rest
    lines = [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    assert all(line.get("subtask") == 0 and line.get("parallelism") == 1 for line in lines), lines[:2]
    committed = json.loads((tmp_path / "cli-daemon" / "collection-0" / "_committed.json").read_text())
    assert committed["checkpoint_id"] == 1 and committed["position"] == 3
