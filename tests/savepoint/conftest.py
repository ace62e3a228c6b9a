"""Fixtures of the savepoint tests: ``kind``, each state backend in turn."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["memory", "rocksdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
