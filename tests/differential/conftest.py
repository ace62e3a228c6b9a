"""The Flink side of the differential tests: install PyFlink (``scripts/install-flink.sh``) and run
``flink_programs.py`` once per session, as a subprocess of the Flink virtualenv's python.

Only tests marked ``slow`` ask for ``flink_run``, so a default run (``-m "not slow"``) never installs
or starts Flink. Under ``-m slow`` a failed install or a failed Flink job FAILS the tests with the
script's or the job's output; it never skips them.

``EVENTAPP_FLINK_RESULTS=path.json`` reuses the results of an earlier run (each run leaves its JSON
in pytest's temporary directory and says where); without it every session runs the Flink job.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install-flink.sh"
DRIVER = Path(__file__).with_name("flink_programs.py")
WINDOW_DRIVER = Path(__file__).with_name("flink_window_programs.py")
INSTALL_TIMEOUT_S = 1_800  # the first install downloads ~300 MB of wheels
JOB_TIMEOUT_S = 900  # one Flink job: 20-70 s to start here, ~10 s of paced input, then a margin


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _install_flink(log_dir: Path) -> Path:
    """Run the install script; return the Flink venv's python."""
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/install-flink.sh did not finish within {INSTALL_TIMEOUT_S} s", pytrace=False)
    (log_dir / "install-flink.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        pytest.fail(
            f"Apache Flink (PyFlink) could not be installed for the differential tests: "
            f"scripts/install-flink.sh exited {proc.returncode}. Its output:\n{_tail(proc.stderr + proc.stdout)}",
            pytrace=False,
        )
    python = Path(proc.stdout.strip().splitlines()[-1])
    if not python.is_file():
        pytest.fail(f"scripts/install-flink.sh printed {python}, which is not a file", pytrace=False)
    return python


def _run_flink_job(python: Path, out_dir: Path, driver: Path = DRIVER) -> dict[str, Any]:
    out = out_dir / f"{driver.stem}-results.json"
    env = dict(os.environ)
    # Flink starts its Python workers as `python`: the Flink venv's must come first on PATH.
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    try:
        proc = subprocess.run(
            [str(python), str(driver), str(out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the Flink job ({driver.name}) did not finish within {JOB_TIMEOUT_S} s", pytrace=False)
    (out_dir / f"{driver.stem}-job.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not out.is_file():
        pytest.fail(
            f"the Flink job ({driver.name}) exited {proc.returncode}; full log in "
            f"{out_dir / f'{driver.stem}-job.log'}. Its last lines:\n{_tail(proc.stderr + proc.stdout)}",
            pytrace=False,
        )
    print(f"Flink results: {out} (reuse with EVENTAPP_FLINK_RESULTS={out})")
    results: dict[str, Any] = json.loads(out.read_text())
    return results


@pytest.fixture(scope="session")
def flink_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``{"programs": {output name: [{"value": ..., "ts": ...}]}, "meta": {...}}`` from one Flink job."""
    reuse = os.environ.get("EVENTAPP_FLINK_RESULTS")
    if reuse:
        results: dict[str, Any] = json.loads(Path(reuse).read_text())
        return results
    out_dir = tmp_path_factory.mktemp("flink")
    python = _install_flink(out_dir)
    return _run_flink_job(python, out_dir)


@pytest.fixture(scope="session")
def flink_window_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The window programs' results (``flink_window_programs.py``), from one Flink job;
    ``EVENTAPP_FLINK_WINDOW_RESULTS=path.json`` reuses an earlier run's."""
    reuse = os.environ.get("EVENTAPP_FLINK_WINDOW_RESULTS")
    if reuse:
        results: dict[str, Any] = json.loads(Path(reuse).read_text())
        return results
    out_dir = tmp_path_factory.mktemp("flink-windows")
    python = _install_flink(out_dir)
    return _run_flink_job(python, out_dir, WINDOW_DRIVER)
