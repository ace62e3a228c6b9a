"""Logging: JSON lines with stable event names and context when not on a terminal."""

from __future__ import annotations

import json
import re

import pytest
import structlog

from eventapp import Job, JobConfig, configure_logging
from eventapp.connectors.collection import CollectionSink, CollectionSource


def test_json_logs_have_event_names_and_job_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True, level="INFO")
    try:
        job = Job("logged", JobConfig())
        job.from_source(CollectionSource([1, 2])).sink_to(CollectionSink())
        job.run()
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    finally:
        structlog.reset_defaults()
    events = {line["event"]: line for line in lines}
    assert {"job.started", "job.finished", "job.stopped"} <= set(events)
    assert events["job.started"]["job"] == "logged"
    assert events["job.started"]["splits"] == ["collection-0"]
    assert events["job.stopped"]["records"] == 2
    assert all({"level", "timestamp"} <= set(line) for line in lines)


def test_console_logs_are_readable(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=False, level="WARNING")
    try:
        structlog.get_logger("t").warning("checkpoint.slow", split="orders-0", duration_ms=12)
        out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    finally:
        structlog.reset_defaults()
    assert "checkpoint.slow" in out and "split=orders-0" in out and not out.startswith("{")
