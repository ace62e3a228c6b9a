"""The savepoint commands with ``s3://`` paths end to end through ``eventapp.cli.main`` (a real
SeaweedFS reached through the standard AWS environment): create --target s3://, inspect, run
--from-savepoint, copy (refusing to overwrite), dispose; run --from-checkpoint s3://...; and the job
manager's savepoint operation with an s3:// target."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import structlog

from eventapp.cli import main
from eventapp.daemon.job_state import JobState
from eventapp.daemon.savepoints import SavepointOperations
from eventapp.daemon.status import Trigger
from tests.savepoint import cli_sp_job
from tests.savepoint.test_cli import JOB, MORE, run_phase1
from tests.savepoint.test_s3_savepoints import objects, s3_env  # noqa: F401 (fixture)
from tests.savepoint.test_savepoints import PHASE1
from tests.support.seaweedfs import S3Server

EXPECTED = sorted(f"card-{i}={Counter(k for k, _ in PHASE1)[f'card-{i}'] + 1}" for i in range(40))


def test_savepoint_commands_with_s3_paths(
    s3_env: S3Server,  # noqa: F811
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_phase1(tmp_path, monkeypatch, capsys)
    assert main(["savepoint", "create", JOB, "--target", f"s3://{s3_bucket}/sps"]) == 0
    out = capsys.readouterr().out
    uri = re.search(r"Savepoint completed\. Path: (s3://\S+)", out).group(1)  # type: ignore[union-attr]
    assert f"--from-savepoint {uri}" in out
    assert uri.startswith(f"s3://{s3_bucket}/sps/savepoint-sp-job-")
    stored = objects(s3_env, s3_bucket)

    assert main(["savepoint", "inspect", uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["operators"]["count"]["keys"] == len(Counter(PHASE1))
    assert main(["savepoint", "inspect", uri]) == 0
    assert f"savepoint {uri}\n" in capsys.readouterr().out

    cli_sp_job.SINK.clear()
    monkeypatch.setenv("SP_CHECKPOINTS", str(tmp_path / "chk-2"))
    assert main(["run", MORE, "--from-savepoint", uri]) == 0
    assert sorted(cli_sp_job.SINK.values) == EXPECTED
    assert objects(s3_env, s3_bucket) == stored  # never modified

    local = tmp_path / "copied"
    assert main(["savepoint", "copy", uri, str(local)]) == 0
    assert f"Path: {local}" in capsys.readouterr().out
    assert (local / "_metadata").is_file()
    assert main(["savepoint", "copy", str(local), f"s3://{s3_bucket}/again/sp"]) == 0
    capsys.readouterr()
    assert main(["savepoint", "copy", str(local), f"s3://{s3_bucket}/again/sp"]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err

    assert main(["savepoint", "dispose", uri]) == 0
    assert "disposed" in capsys.readouterr().out
    left = objects(s3_env, s3_bucket)
    assert not [k for k in left if k.startswith(uri.removeprefix(f"s3://{s3_bucket}/"))]
    assert any(k.startswith("again/sp/") for k in left)  # the copy beside it is untouched
    assert main(["savepoint", "inspect", uri]) == 1
    assert f"there is no savepoint at {uri}" in capsys.readouterr().err
    assert main(["run", MORE, "--from-savepoint", f"s3://{s3_bucket}"]) == 1
    assert "is a whole bucket" in capsys.readouterr().err


def test_run_from_checkpoint_s3(
    s3_env: S3Server,  # noqa: F811
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SP_CHECKPOINTS", f"s3://{s3_bucket}/chk")
    cli_sp_job.SINK.clear()
    assert main(["run", JOB]) == 0
    stored = objects(s3_env, s3_bucket)
    cli_sp_job.SINK.clear()
    monkeypatch.setenv("SP_CHECKPOINTS", str(tmp_path / "chk-2"))
    assert main(["run", MORE, "--from-checkpoint", f"s3://{s3_bucket}/chk/sp-job"]) == 0
    assert sorted(cli_sp_job.SINK.values) == EXPECTED
    assert objects(s3_env, s3_bucket) == stored  # never modified
    capsys.readouterr()
    assert main(["run", MORE, "--from-checkpoint", f"s3://{s3_bucket}/chk/other-job"]) == 1
    assert "not of 'sp-job'" in capsys.readouterr().err


def test_job_manager_savepoint_to_s3_uploads_and_reports_the_uri(
    s3_env: S3Server,  # noqa: F811
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_phase1(tmp_path, monkeypatch, capsys)
    job = cli_sp_job.build_job()
    state = JobState(job.name, 1, job.config.max_parallelism, "none")
    operations = SavepointOperations(job, job.splits(), state, [], structlog.get_logger("test"))
    trigger = Trigger("t-1", "savepoint", f"s3://{s3_bucket}/jm", native=False)
    operations.write(trigger)
    assert trigger.status == "COMPLETED", trigger.failure
    assert trigger.location is not None and trigger.location.startswith(f"s3://{s3_bucket}/jm/savepoint-")
    assert main(["savepoint", "inspect", trigger.location]) == 0
    failed = Trigger("t-2", "savepoint", "s3://no-such-bucket-eventapp/jm", native=False)
    operations.write(failed)
    assert failed.status == "FAILED" and "does not exist" in (failed.failure or "")
