"""The savepoint commands end to end through ``eventapp.cli.main``: run, checkpoints list, savepoint
create / inspect / dispose, run --from-savepoint into the new version of the job; bad input exits 1
(failure naming what) or 2 (usage)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from eventapp.cli import main
from tests.savepoint import cli_sp_job
from tests.savepoint.test_savepoints import PHASE1

JOB = "tests.savepoint.cli_sp_job:build_job"
MORE = "tests.savepoint.cli_sp_job:build_more"
INCOMPATIBLE = "tests.savepoint.cli_sp_job:build_incompatible"


def run_phase1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Run the job to the end of its input, checkpoints in ``tmp_path/chk``."""
    monkeypatch.setenv("SP_CHECKPOINTS", str(tmp_path / "chk"))
    cli_sp_job.SINK.clear()
    assert main(["run", JOB]) == 0
    capsys.readouterr()


def test_create_inspect_restore_dispose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_phase1(tmp_path, monkeypatch, capsys)
    assert main(["checkpoints", "list", JOB, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert sorted(listing["splits"]) == [f"collection-{i}" for i in range(4)]
    assert all(any(s["committed"] for s in snaps) for snaps in listing["splits"].values())

    assert main(["savepoint", "create", JOB, "--target", str(tmp_path / "sp")]) == 0
    out = capsys.readouterr().out
    path = Path(re.search(r"Savepoint completed\. Path: (\S+)", out).group(1))  # type: ignore[union-attr]
    assert (path / "_metadata").is_file()

    assert main(["savepoint", "inspect", str(path), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    counts = Counter(k for k, _ in PHASE1)
    assert meta["operators"]["count"]["keys"] == len(counts)
    assert main(["savepoint", "inspect", str(path), "--operator", "count", "--key", "card-0"]) == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    assert {"kind": "state", "name": "count", "value": counts["card-0"]} == {
        k: v for k, v in entries[0].items() if k != "split"
    }
    assert main(["savepoint", "inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "operator 'count'" in text
    state_bytes = meta["operators"]["count"]["state_bytes"]["count"]
    assert state_bytes > 0
    assert f"state 'count': {len(counts)} entries, {state_bytes} bytes, value state, msgpack v1" in text

    # New code that reads the state with another serializer is refused before any record.
    cli_sp_job.SINK.clear()
    monkeypatch.setenv("SP_CHECKPOINTS", str(tmp_path / "chk-bad"))
    assert main(["run", INCOMPATIBLE, "--from-savepoint", str(path)]) == 1
    err = capsys.readouterr().err
    assert "operator 'count', state 'count'" in err and "JsonSerializer" in err
    assert cli_sp_job.SINK.values == []

    # The upgrade flow: deploy the new version and run it from the savepoint.
    cli_sp_job.SINK.clear()
    monkeypatch.setenv("SP_CHECKPOINTS", str(tmp_path / "chk-2"))
    assert main(["run", MORE, "--from-savepoint", str(path)]) == 0
    assert sorted(cli_sp_job.SINK.values) == sorted(f"card-{i}={counts[f'card-{i}'] + 1}" for i in range(40))

    assert main(["savepoint", "dispose", str(path)]) == 0
    assert not path.exists()


def test_bad_input_exits_1_or_2_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SP_CHECKPOINTS", str(tmp_path / "chk"))
    assert main(["savepoint", "inspect", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert main(["savepoint", "dispose", str(tmp_path / "plain")]) == 1
    assert "holds no _metadata" in capsys.readouterr().err
    assert (tmp_path / "plain").is_dir()  # never deleted
    assert main(["savepoint", "create", JOB, "--target", str(tmp_path / "sp")]) == 1
    assert "no committed checkpoint" in capsys.readouterr().err
    assert main(["run", JOB, "--allow-non-restored-state"]) == 2
    assert "only apply with --from-savepoint" in capsys.readouterr().err
    assert main(["run", JOB, "--from-savepoint", str(tmp_path), "--rename-uid", "x"]) == 2
    assert "OLD=NEW" in capsys.readouterr().err


def test_native_savepoint_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_phase1(tmp_path, monkeypatch, capsys)
    assert main(["savepoint", "create", JOB, "--target", str(tmp_path / "sp"), "--type", "native"]) == 0
    out = capsys.readouterr().out
    assert "native (memory files)" in out
    path = Path(re.search(r"Savepoint completed\. Path: (\S+)", out).group(1))  # type: ignore[union-attr]
    assert main(["savepoint", "inspect", str(path)]) == 0
    assert "keys and bytes not counted (native savepoint)" in capsys.readouterr().out
    cli_sp_job.SINK.clear()
    monkeypatch.setenv("SP_CHECKPOINTS", str(tmp_path / "chk-2"))
    assert main(["run", MORE, "--from-savepoint", str(path)]) == 0
    counts = Counter(k for k, _ in PHASE1)
    assert sorted(cli_sp_job.SINK.values) == sorted(f"card-{i}={counts[f'card-{i}'] + 1}" for i in range(40))
    with pytest.raises(SystemExit) as usage:
        main(["savepoint", "create", JOB, "--target", str(tmp_path / "sp"), "--type", "bogus"])
    assert usage.value.code == 2
