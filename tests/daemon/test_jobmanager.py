"""The job manager with real worker processes: REST API, metrics, health, restarts, savepoints,
stop-with-savepoint (drained), SIGTERM, a poison record, authentication."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventapp import LocalCheckpointStorage
from tests.support.jobmanager import ROOT, wait_for

ENDLESS = "tests.daemon.jm_jobs:build_endless"
SPLITS = [f"endless-{i}" for i in range(4)]


def _splits(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["split"]: row for row in job["splits"]}


def test_rest_api_metrics_and_health(start_jm, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    jm = start_jm(ENDLESS, 2, "--rest-token-file", str(token))
    assert wait_for(lambda: jm.http.get("/healthz").json(), "the REST API") == {"status": "ok"}
    job = jm.wait_ready()
    assert job["state"] == "RUNNING" and job["parallelism"] == 2
    splits = _splits(job)
    assert sorted(splits) == SPLITS
    assert {s: row["owner"] for s, row in splits.items()} == {
        "endless-0": 0,
        "endless-1": 1,
        "endless-2": 0,
        "endless-3": 1,
    }
    # Progress, checkpoints and state sizes show up as the workers report.
    job = wait_for(
        lambda: (
            (j := jm.get("/jobs/jm-endless"))
            and all((r["last_checkpoint"] or 0) >= 2 and (r["state_size"] or 0) > 0 for r in j["splits"])
            and j
        ),
        "two checkpoints of every split",
    )
    assert all(row["offset"] > 0 and row["watermark"] is not None for row in job["splits"])
    checkpoints = jm.get("/jobs/jm-endless/checkpoints")
    assert checkpoints["counts"]["completed"] >= 4  # >= 2 per worker
    latest = checkpoints["history"][0]
    assert latest["size_bytes"] > 0 and latest["duration_ms"] > 0 and latest["subtask"] in (0, 1)
    assert set(checkpoints["summary"]) == {"duration_ms", "size_bytes", "pause_ms"}
    overview = jm.get("/overview")
    assert overview["slots-total"] == 2 and overview["splits-total"] == 4 and overview["jobs-running"] == 1
    assert jm.get("/v1/overview")["slots-total"] == 2
    # Flink-style metrics and Prometheus.
    values = {m["id"]: m["value"] for m in jm.get("/jobs/jm-endless/metrics?get=numRecordsIn,numRestarts")}
    assert int(values["numRecordsIn"]) > 0 and values["numRestarts"] == "0"
    prometheus = jm.http.get("/metrics").text
    for series in (
        'eventapp_records_in_total{split="endless-0"}',
        'eventapp_records_out_total{split="endless-3"}',
        'eventapp_busy_seconds_total{subtask="1"}',
        "eventapp_checkpoint_duration_seconds_bucket",
        "eventapp_checkpoint_size_bytes_count",
        "eventapp_restore_duration_seconds_count 2.0",
        "eventapp_restarts_total 0.0",
        "eventapp_slots_running 2.0",
        'eventapp_watermark_lag_seconds{split="endless-2"}',
    ):
        assert series in prometheus, series
    records_in = [
        float(line.rsplit(" ", 1)[1])
        for line in prometheus.splitlines()
        if line.startswith('eventapp_records_in_total{split="endless-0"}')
    ]
    assert records_in and records_in[0] > 0
    # Errors are JSON; control calls need the token.
    missing = jm.http.get("/jobs/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["errors"][0]
    unauthenticated = jm.http.post("/jobs/jm-endless/savepoints", json={"target-directory": "/tmp/x"})
    assert unauthenticated.status_code == 401 and "Bearer" in unauthenticated.json()["errors"][0]
    auth = {"Authorization": "Bearer s3cret"}
    bad = jm.http.post("/jobs/jm-endless/savepoints", content=b"{not json", headers=auth)
    assert bad.status_code == 400 and "not JSON" in bad.json()["errors"][0]
    no_target = jm.http.post("/jobs/jm-endless/savepoints", json={}, headers=auth)
    assert no_target.status_code == 400 and "target-directory" in no_target.json()["errors"][0]
    cancel = jm.http.patch("/jobs/jm-endless?mode=cancel", headers=auth)
    assert cancel.status_code == 202
    assert jm.wait_exit() == 0
    assert "CANCELED" in jm.output()


def test_killed_worker_restarts_and_its_splits_continue(start_jm) -> None:
    jm = start_jm(ENDLESS, 2, "--restart-strategy", "fixed-delay:attempts=3,delay=0")
    jm.wait_ready()
    job = wait_for(
        lambda: (
            (j := jm.get("/jobs/jm-endless"))
            and all((r["last_checkpoint"] or 0) >= 1 for r in j["splits"])
            and j
        ),
        "a checkpoint of every split",
    )
    pid = job["slots"][0]["pid"]
    before = _splits(job)
    os.kill(pid, signal.SIGKILL)
    job = wait_for(
        lambda: (
            (j := jm.get("/jobs/jm-endless"))
            and j["slots"][0]["attempt"] == 2
            and j["slots"][0]["status"] == "RUNNING"
            and j
        ),
        "slot 0 to run again",
    )
    assert job["restarts"] == 1 and job["slots"][1]["attempt"] == 1
    # Its splits resume from their last committed checkpoints and go on.
    after = wait_for(
        lambda: (
            (rows := _splits(jm.get("/jobs/jm-endless")))
            and all(
                rows[s]["offset"] is not None and rows[s]["offset"] > before[s]["offset"]
                for s in ("endless-0", "endless-2")
            )
            and rows
        ),
        "slot 0's splits to move past where they were killed",
    )
    assert after["endless-0"]["owner"] == 0
    history = jm.get("/jobs/jm-endless/exceptions")["exceptionHistory"]["entries"]
    assert len(history) == 1
    assert history[0]["subtask"] == 0 and history[0]["exitCode"] == -signal.SIGKILL
    assert "eventapp_restarts_total 1.0" in jm.http.get("/metrics").text
    jm.process.send_signal(signal.SIGTERM)
    assert jm.wait_exit() == 0


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventapp", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_savepoint_then_stop_with_drained_savepoint_then_restore(start_jm, jm_env, tmp_path: Path) -> None:
    jm = start_jm(ENDLESS, 2)
    jm.wait_ready()
    listing = _run_cli("list", "--rest-url", jm.url)
    assert listing.returncode == 0 and "jm-endless  RUNNING" in listing.stdout
    status = _run_cli("status", "jm-endless", "--json", "--rest-url", jm.url)
    assert json.loads(status.stdout)["parallelism"] == 2
    triggered = _run_cli(
        "savepoint", "trigger", "jm-endless", "--target", str(tmp_path / "sp"), "--rest-url", jm.url
    )
    assert triggered.returncode == 0, triggered.stderr
    first = Path(triggered.stdout.split("Path: ")[1].split()[0])
    assert (first / "_metadata").is_file()
    assert jm.get("/jobs/jm-endless")["state"] == "RUNNING"  # a savepoint does not stop the job
    out = Path(jm_env["JM_OUT"])
    assert not any("timer" in p.read_text() for p in out.iterdir())
    stopped = _run_cli(
        "stop", "jm-endless", "--savepoint", str(tmp_path / "sp"), "--drain", "--rest-url", jm.url
    )
    assert stopped.returncode == 0, stopped.stderr
    final = Path(stopped.stdout.split("Path: ")[1].split()[0])
    assert final != first and (final / "_metadata").is_file()
    assert jm.wait_exit() == 0
    assert "FINISHED" in jm.output()
    # Drained: the watermark went to +inf, so every split's far-future timer fired, and its output
    # is in the final checkpoint.
    for split in SPLITS:
        lines = (out / split).read_text().splitlines()
        assert any(line.startswith(f"timer {split} ") for line in lines), split
    inspect = _run_cli("savepoint", "inspect", str(final), "--json")
    meta = json.loads(inspect.stdout)
    positions = {s: info["position"] for s, info in meta["splits"].items()}
    assert sorted(positions) == SPLITS and all(p > 0 for p in positions.values())
    # Restore the job from it, with another parallelism.
    again = start_jm(ENDLESS, 4, "--from-savepoint", str(final))
    job = again.wait_ready()
    assert job["parallelism"] == 4
    rows = wait_for(
        lambda: (
            (r := _splits(again.get("/jobs/jm-endless")))
            and all(r[s]["offset"] >= positions[s] for s in SPLITS)
            and r
        ),
        "the restored splits to report",
    )
    assert all(rows[s]["records_in"] >= 0 for s in SPLITS)
    assert "restored" in again.output() or "savepoint" in again.output()
    again.process.send_signal(signal.SIGINT)
    assert again.wait_exit() == 0


def test_sigterm_takes_a_final_checkpoint_with_every_output(start_jm, jm_env, tmp_path: Path) -> None:
    jm = start_jm(ENDLESS, 2)
    jm.wait_ready()
    wait_for(lambda: all((r["offset"] or 0) > 100 for r in jm.get("/jobs/jm-endless")["splits"]), "progress")
    jm.process.send_signal(signal.SIGTERM)
    assert jm.wait_exit() == 0
    assert '"state": "SUSPENDED"' in jm.output()
    storage = LocalCheckpointStorage(jm_env["JM_CHECKPOINTS"])
    out = Path(jm_env["JM_OUT"])
    for split in SPLITS:
        newest = max(
            (i for i in storage.list_snapshots("jm-endless", split) if i.committed),
            key=lambda i: i.checkpoint_id,
        )
        _, meta = storage.open("jm-endless", split, newest.name)
        # The final checkpoint's position is exactly the records whose output was flushed.
        assert meta["position"] == len((out / split).read_text().splitlines()), split


def test_poison_record_fails_the_job_naming_the_record(start_jm, jm_env) -> None:
    jm = start_jm(
        "tests.daemon.jm_jobs:build_poison", 2, "--restart-strategy", "fixed-delay:attempts=2,delay=0"
    )
    assert jm.wait_exit() == 1
    output = jm.output()
    assert output.count('"event": "slot.failed"') == 3  # the first failure and two restarts
    assert "failed after 3 worker failure(s)" in output
    assert "'poison'" in output and "ValueError: this record is poison" in output
    assert "collection-0" in output or "collection-1" in output


def test_exposed_rest_api_needs_a_token(start_jm) -> None:
    jm = start_jm(ENDLESS, 2, "--rest-host", "0.0.0.0")
    assert jm.wait_exit() == 2
    assert "--rest-token-file" in jm.output()


def test_a_worker_stopped_behind_the_job_managers_back_is_restarted(start_jm) -> None:
    jm = start_jm(ENDLESS, 2, "--restart-strategy", "fixed-delay:attempts=3,delay=0")
    job = jm.wait_ready()
    os.kill(job["slots"][1]["pid"], signal.SIGTERM)  # the worker checkpoints and exits 0 by itself
    wait_for(
        lambda: (
            (j := jm.get("/jobs/jm-endless"))["slots"][1]["attempt"] == 2
            and j["slots"][1]["status"] == "RUNNING"
        ),
        "slot 1 to run again",
    )
    entry = jm.get("/jobs/jm-endless/exceptions")["exceptionHistory"]["entries"][0]
    assert entry["subtask"] == 1 and "exited 0 on its own before its source finished" in entry["stacktrace"]
    jm.process.send_signal(signal.SIGTERM)
    assert jm.wait_exit() == 0


def test_rest_api_over_tls(start_jm, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    jm = start_jm(ENDLESS, 2, "--rest-tls-cert", str(cert), "--rest-tls-key", str(key))
    with httpx.Client(
        base_url=f"https://127.0.0.1:{jm.port}",
        verify=ssl.create_default_context(cafile=str(cert)),
        timeout=30,
    ) as https:
        assert wait_for(lambda: https.get("/healthz").json(), "the HTTPS API") == {"status": "ok"}
        assert https.get("/jobs").json()["jobs"][0]["id"] == "jm-endless"
    with pytest.raises(httpx.HTTPError):
        jm.http.get("/healthz")  # plain HTTP is not served
    jm.process.send_signal(signal.SIGTERM)
    assert jm.wait_exit() == 0
