"""The built wheel installs and imports in a fresh virtualenv, with connectors and state backends
inside the eventapp namespace and no generic top-level package names."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once per test run. ``python -m build`` works in the source tree (build/,
    eventapp.egg-info/), so two at once would collide: pytest-xdist workers (scripts/test.sh runs
    two) build it in turn under a lock, in their run's shared base temp, and the later ones reuse it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "wheel-dist"
    with open(shared / "wheel-dist.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not list(out.glob("eventapp-*.whl")):
            subprocess.run(
                [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                check=True,
                capture_output=True,
            )
        (built,) = out.glob("eventapp-*.whl")
    return built


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"eventapp"}, f"only the eventapp package may be installed, got {top_level}"
    for module in (
        "eventapp/connectors/collection.py",
        "eventapp/statebackends/memory.py",
        "eventapp/statebackends/rocksdb.py",
        "eventapp/py.typed",
    ):
        assert module in names


def test_every_package_folder_is_installed_under_its_one_name() -> None:
    """pyproject lists packages explicitly (two folders are mapped into eventapp): a new package
    folder missing from the list would be left out of the wheel."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = {"eventapp": "eventapp", **config["package-dir"]}
    on_disk = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((package, *relative)))
    assert set(config["packages"]) == on_disk
    # Virtualenvs (.venv, and .venv-flink of the differential tests) hold symlinks of their own.
    assert not [
        p for p in ROOT.rglob("*") if p.is_symlink() and not any(part.startswith(".venv") for part in p.parts)
    ]


@pytest.mark.parametrize("folder", ["connectors", "statebackends"])
def test_mapped_folders_refuse_a_second_import_name(folder: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {folder}"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert f"this folder is the package eventapp.{folder}" in done.stderr


def test_wheel_installs_and_imports_in_a_fresh_virtualenv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
    )
    script = (
        "import eventapp, eventapp.connectors.collection, eventapp.statebackends.rocksdb, importlib.util;"
        "from eventapp.statebackends import MemoryStateBackend;"
        "assert importlib.util.find_spec('connectors') is None;"
        "assert importlib.util.find_spec('statebackends') is None;"
        "print(eventapp.__version__, eventapp.__file__)"
    )
    done = subprocess.run(
        [str(python), "-c", script], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert str(env_dir) in done.stdout, "must import the installed copy, not the source tree"
