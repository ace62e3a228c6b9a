"""The fraud example with rules in broadcast state (examples/fraud_rules.py): rules added and
retired at run time decide which transactions alert."""

from __future__ import annotations

from eventapp.connectors.collection import CollectionSink
from examples.fraud_rules import EVENTS, build_job


def test_rules_added_and_retired_at_run_time_decide_the_alerts() -> None:
    alerts: CollectionSink[str] = CollectionSink()
    build_job(EVENTS, alerts).run()
    assert alerts.values == [
        "alice transaction 2: 900.00 breaks rule large (> 500.00)",
        "bob transaction 2: 120.00 breaks rule medium (> 100.00)",
        "alice transaction 3: 900.00 breaks rule medium (> 100.00)",
    ]


def test_without_rules_nothing_alerts() -> None:
    alerts: CollectionSink[str] = CollectionSink()
    build_job([e for e in EVENTS if "account" in e], alerts).run()
    assert alerts.values == []
