"""The worker's garbage-collector tuning (eventapp.runtime.gc_tuning)."""

from __future__ import annotations

import gc

import pytest

from eventapp.runtime import gc_tuning


def test_tuning_freezes_start_up_objects_and_raises_the_generation_0_threshold() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    try:
        previous = gc_tuning.tune_for_streaming()
        assert previous == before
        assert gc.get_threshold() == (gc_tuning.GEN0_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > frozen_before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("1", True), ("0", False), ("off", False)])
def test_workers_tune_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv("EVENTAPP_GC_TUNING", raising=False)
    else:
        monkeypatch.setenv("EVENTAPP_GC_TUNING", value)
    assert gc_tuning.wanted() is expected
