"""The daemon tests' fixtures: ``start_jm`` starts job managers (closed after the test) over the
jobs of :mod:`tests.daemon.jm_jobs`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.jobmanager import JobManagerProcess


@pytest.fixture
def jm_env(tmp_path: Path) -> dict[str, str]:
    out = tmp_path / "out"
    out.mkdir()
    return {"JM_CHECKPOINTS": str(tmp_path / "checkpoints"), "JM_OUT": str(out)}


@pytest.fixture
def start_jm(tmp_path: Path, jm_env: dict[str, str]) -> Iterator[Callable[..., JobManagerProcess]]:
    started: list[JobManagerProcess] = []

    def start(
        target: str, parallelism: int = 2, *args: str, env: dict[str, str] | None = None
    ) -> JobManagerProcess:
        jm = JobManagerProcess(tmp_path, target, parallelism, *args, env={**jm_env, **(env or {})})
        started.append(jm)
        return jm

    yield start
    for jm in started:
        jm.close()
