"""examples/state_processor.py runs as documented: bootstrapped state reaches the job, the rewrite
keeps only the flags it should, under the renamed uid."""

from __future__ import annotations

import pytest


def test_state_processor_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.state_processor import main

    main()
    out = capsys.readouterr().out
    assert "ALERT Alert(account='bob', small_amount=0.25, large_amount=900.0" in out
    assert "flags {'carol': 0.05}" in out
