"""The fraud example: a small transaction followed by a large one within a minute raises an alert.
Tested through the public harness and through the local runtime, on both state backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventapp import Job, JobConfig, ManualClock, WatermarkStrategy
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.state.store import StateBackend
from eventapp.statebackends import MemoryStateBackend, RocksDBStateBackend
from eventapp.testing import KeyedProcessFunctionHarness
from examples.fraud_detection import LATE_TRANSACTIONS, Alert, FraudDetector


def txn(account: str, amount: float, ts: int = 0) -> dict[str, Any]:
    return {"account": account, "amount": amount, "ts": ts}


@pytest.fixture(params=["memory", "rocksdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StateBackend:
    return MemoryStateBackend() if request.param == "memory" else RocksDBStateBackend(tmp_path)


def test_harness_small_then_large_alerts(backend: StateBackend) -> None:
    h = KeyedProcessFunctionHarness(FraudDetector(), lambda t: t["account"], state_backend=backend)
    h.process_element(txn("alice", 0.5), timestamp=1)
    h.process_element(txn("bob", 800.0), timestamp=2)  # no small one before: no alert
    h.process_element(txn("alice", 700.0), timestamp=3)
    assert h.outputs == [Alert("alice", 0.5, 700.0, 3)]
    assert h.state(FraudDetector.flag, "alice") is None, "the flag is cleared after the large one"
    assert h.num_processing_time_timers() == 0, "and its timer deleted"
    h.close()


def test_harness_timer_clears_the_flag_after_a_minute(backend: StateBackend) -> None:
    h = KeyedProcessFunctionHarness(FraudDetector(), lambda t: t["account"], state_backend=backend)
    h.process_element(txn("alice", 0.5))
    assert h.state(FraudDetector.flag, "alice") == 0.5
    assert h.num_processing_time_timers() == 1
    h.set_processing_time(59_999)
    assert h.state(FraudDetector.flag, "alice") == 0.5
    h.set_processing_time(60_000)
    assert h.state(FraudDetector.flag, "alice") is None
    h.process_element(txn("alice", 700.0))
    assert h.outputs == []
    h.close()


def test_harness_medium_amount_resets_without_alert(backend: StateBackend) -> None:
    h = KeyedProcessFunctionHarness(FraudDetector(), lambda t: t["account"], state_backend=backend)
    h.process_element(txn("alice", 0.5))
    h.process_element(txn("alice", 50.0))
    h.process_element(txn("alice", 900.0))
    assert h.outputs == []
    h.close()


def test_harness_late_transactions_go_to_the_side_output() -> None:
    h = KeyedProcessFunctionHarness(FraudDetector(), lambda t: t["account"])
    h.process_watermark(1_000)
    h.process_element(txn("alice", 0.5), timestamp=500)
    assert h.side_output(LATE_TRANSACTIONS) == [txn("alice", 0.5)]
    assert h.state(FraudDetector.flag, "alice") is None
    h.close()


def test_local_runtime_with_controlled_processing_time(backend: StateBackend) -> None:
    clock = ManualClock(1_000_000)
    source: CollectionSource[dict[str, Any]] = CollectionSource(
        splits=2, partitioner=lambda t: 0 if t["account"] == "alice" else 1, bounded=False
    )
    alerts: CollectionSink[Alert] = CollectionSink()
    late: CollectionSink[dict[str, Any]] = CollectionSink()
    job = Job("fraud", JobConfig(state_backend=backend, clock=clock))
    detected = (
        job.from_source(
            source,
            WatermarkStrategy.for_bounded_out_of_orderness(1_000).with_timestamp_assigner(
                lambda t, _: t["ts"]
            ),
        )
        .key_by(lambda t: t["account"], partitioned_by_source=True)
        .process(FraudDetector(), uid="fraud-detector")
    )
    detected.sink_to(alerts)
    detected.side_output(LATE_TRANSACTIONS).sink_to(late)
    runner = job.runner()

    for t in [txn("alice", 0.3, 10_000), txn("bob", 0.2, 10_100), txn("carol", 999.0, 10_200)]:
        source.add(t)
    runner.run_until_idle()
    clock.advance(30_000)
    source.add(txn("alice", 600.0, 40_000))  # within the minute: alert
    runner.run_until_idle()
    assert alerts.values == [Alert("alice", 0.3, 600.0, 40_000)]

    clock.advance(31_000)  # bob's flag is 61 s old now: its timer fires and clears it
    runner.run_until_idle()
    source.add(txn("bob", 600.0, 71_000))
    source.add(txn("carol", 0.1, 500))  # far behind the watermark: late
    runner.run_until_idle()
    assert alerts.values == [Alert("alice", 0.3, 600.0, 40_000)]
    assert late.values == [txn("carol", 0.1, 500)]
    source.end()
    runner.run_until_idle()
    assert runner.finished
    runner.close()


def test_example_main_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.fraud_detection import main

    main()
    assert "ALERT Alert(account='alice', small_amount=0.5, large_amount=742.0" in capsys.readouterr().out
