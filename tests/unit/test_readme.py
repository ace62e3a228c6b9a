"""The README's examples run as written."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
BLOCKS = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", README, re.S)]


def test_first_example_runs_and_prints_the_alert(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(BLOCKS[0], "README.md[example 1]", "exec"), {"__name__": "readme"})
    assert "['fraud on a']" in capsys.readouterr().out


def test_kafka_example_builds_a_job() -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(BLOCKS[0], "README.md[example 1]", "exec"), namespace)
    exec(compile(BLOCKS[1], "README.md[example 2]", "exec"), namespace)
    job = namespace["build_job"]()  # type: ignore[operator]
    assert job.name == "fraud-detection"
    assert [s.name for s in job.sinks] == ["kafka:alerts"]


def test_harness_example_runs() -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(BLOCKS[0], "README.md[example 1]", "exec"), namespace)
    exec(compile(BLOCKS[2], "README.md[example 3]", "exec"), namespace)
