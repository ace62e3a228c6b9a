"""The fraud-pattern app (examples/fraud_patterns.py): small-then-large, velocity and impossible
travel in event time, each at its boundaries, through the public harness (fixed rules); and rules
updated at run time through broadcast state, through a local run of build_job."""

from __future__ import annotations

from typing import Any

import pytest

from eventapp import ConfigurationError, JobConfig
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.testing import KeyedProcessFunctionHarness
from examples.fraud_patterns import (
    LATE_TRANSACTIONS,
    FraudPatterns,
    FraudRules,
    build_job,
    demo_events,
)

Harness = KeyedProcessFunctionHarness[str, dict[str, Any], dict[str, Any]]
HOUR = 3_600_000


def txn(amount: float, ts: int, country: str = "FR", card: str = "c") -> dict[str, Any]:
    return {"card": card, "amount": amount, "country": country, "ts": ts}


def run(txns: list[dict[str, Any]], rules: FraudRules | None = None) -> Harness:
    """Every transaction, then the watermark past all of them."""
    h: Harness = KeyedProcessFunctionHarness(FraudPatterns(rules), lambda t: t["card"])
    for t in txns:
        h.process_element(t, timestamp=t["ts"])
    h.process_watermark(max(t["ts"] for t in txns))
    return h


def kinds(h: Harness) -> list[str]:
    return [a["type"] for a in h.outputs]


# --- small then large ------------------------------------------------------------------------------
def test_small_then_large_within_a_minute_alerts_once() -> None:
    h = run([txn(0.50, 0), txn(500.01, 59_999)])
    assert h.outputs == [
        {
            "type": "small_then_large",
            "card": "c",
            "ts": 59_999,
            "amount": 500.01,
            "small_amount": 0.5,
            "small_ts": 0,
        }
    ]
    h.process_watermark(10 * HOUR)
    assert len(h.outputs) == 1, "exactly once"


@pytest.mark.parametrize(
    "txns",
    [
        [txn(0.50, 0), txn(500.01, 60_000)],  # a minute apart: outside
        [txn(1.00, 0), txn(900.00, 1_000)],  # 1.00 is not small
        [txn(0.50, 0), txn(500.00, 1_000)],  # 500.00 is not large
        [txn(0.50, 0), txn(50.00, 1_000), txn(900.00, 2_000)],  # not the next one
        [txn(0.50, 0, card="a"), txn(900.00, 1_000, card="b")],  # another card
    ],
)
def test_small_then_large_does_not_alert(txns: list[dict[str, Any]]) -> None:
    assert run(txns).outputs == []


def test_judged_in_event_time_order_not_arrival_order() -> None:
    assert kinds(run([txn(900.00, 10_000), txn(0.50, 5_000)])) == ["small_then_large"]
    assert run([txn(0.50, 10_000), txn(900.00, 5_000)]).outputs == []


def test_nothing_is_judged_before_the_watermark_reaches_it() -> None:
    h: Harness = KeyedProcessFunctionHarness(FraudPatterns(), lambda t: t["card"])
    for t in [txn(0.50, 0), txn(900.0, 1_000)]:
        h.process_element(t, timestamp=t["ts"])
    h.process_watermark(999)
    assert h.outputs == []
    assert sorted(h.state(FraudPatterns.pending, "c")) == [1_000]
    h.process_watermark(1_000)
    assert kinds(h) == ["small_then_large"]
    assert h.output_records[0][1] == 1_000, "stamped with the transaction's time"


# --- velocity --------------------------------------------------------------------------------------
def test_velocity_more_than_five_in_a_minute_alerts_on_each_triggering_one() -> None:
    h = run([txn(10.0, i * 8_000) for i in range(7)])  # 7 in 48 s
    assert [(a["type"], a["ts"], a["count"]) for a in h.outputs] == [
        ("velocity", 40_000, 6),
        ("velocity", 48_000, 7),
    ]
    assert h.outputs[0]["limit"] == 5 and h.outputs[0]["interval_ms"] == 60_000


def test_velocity_exactly_at_the_limit_does_not_alert() -> None:
    assert run([txn(10.0, i * 10_000) for i in range(5)]).outputs == []


def test_velocity_window_is_half_open() -> None:
    assert kinds(run([txn(10.0, round(i * 59_999 / 5)) for i in range(6)])) == ["velocity"]
    assert run([txn(10.0, i * 12_000) for i in range(6)]).outputs == [], "first and sixth 60 s apart"


def test_velocity_counts_transactions_of_the_same_millisecond() -> None:
    assert [a["count"] for a in run([txn(10.0, 0) for _ in range(6)]).outputs] == [6]


def test_velocity_limit_from_the_constructor() -> None:
    h = run([txn(10.0, i) for i in range(4)], FraudRules(velocity_limit=2))
    assert [a["count"] for a in h.outputs] == [3, 4]


# --- impossible travel -----------------------------------------------------------------------------
def test_two_countries_within_an_hour_alert() -> None:
    h = run([txn(10.0, 0, "FR"), txn(10.0, HOUR - 1, "US")])
    assert h.outputs == [
        {
            "type": "impossible_travel",
            "card": "c",
            "ts": HOUR - 1,
            "country": "US",
            "previous_country": "FR",
            "previous_ts": 0,
        }
    ]


@pytest.mark.parametrize(
    "txns",
    [
        [txn(10.0, 0, "FR"), txn(10.0, HOUR, "US")],  # an hour apart: outside
        [txn(10.0, 0, "FR"), txn(10.0, 1_000, "FR")],  # same country
        [txn(10.0, 0, "FR", card="a"), txn(10.0, 1_000, "US", card="b")],
    ],
)
def test_no_impossible_travel(txns: list[dict[str, Any]]) -> None:
    assert run(txns).outputs == []


def test_travel_names_the_latest_other_country() -> None:
    h = run([txn(1.0, 0, "FR"), txn(1.0, 1_000, "DE"), txn(1.0, 2_000, "DE"), txn(1.0, 3_000, "US")])
    travel = [a for a in h.outputs if a["type"] == "impossible_travel"]
    assert [(a["ts"], a["country"], a["previous_country"]) for a in travel] == [
        (1_000, "DE", "FR"),
        (2_000, "DE", "FR"),
        (3_000, "US", "DE"),
    ]
    assert travel[2]["previous_ts"] == 2_000


def test_one_transaction_can_break_several_rules_each_alerts_once() -> None:
    txns = [txn(10.0, i * 1_000, "FR") for i in range(5)] + [txn(0.10, 5_000, "FR")]
    h = run([*txns, txn(999.0, 6_000, "US")])
    assert [(a["type"], a["ts"]) for a in h.outputs] == [
        ("velocity", 5_000),
        ("small_then_large", 6_000),
        ("velocity", 6_000),
        ("impossible_travel", 6_000),
    ]


# --- late data and cleanup -------------------------------------------------------------------------
def test_late_transactions_go_to_the_side_output() -> None:
    h: Harness = KeyedProcessFunctionHarness(FraudPatterns(), lambda t: t["card"])
    h.process_watermark(10_000)
    h.process_element(txn(0.5, 9_999), timestamp=9_999)
    assert h.side_output(LATE_TRANSACTIONS) == [txn(0.5, 9_999)]
    assert h.state(FraudPatterns.pending, "c") == {} and h.num_event_time_timers() == 0
    h.process_element(txn(900.0, 10_000), timestamp=10_000)  # at the watermark: on time
    h.process_watermark(10_001)
    assert h.outputs == [] and len(h.side_output(LATE_TRANSACTIONS)) == 1


def test_timers_remove_all_state_once_nothing_can_match() -> None:
    h = run([txn(0.5, 0, "FR"), txn(10.0, 30_000, "US"), txn(0.2, 40_000, "US")])
    assert h.state(FraudPatterns.recent, "c") == {0: ["FR"], 30_000: ["US"], 40_000: ["US"]}
    assert h.state(FraudPatterns.small, "c") == [0.2, 40_000]
    assert h.state(FraudPatterns.cleanup, "c") == 40_000 + HOUR
    assert h.num_event_time_timers() == 1, "one cleanup timer, the earlier ones deleted"
    h.process_watermark(40_000 + HOUR - 1)
    assert h.state(FraudPatterns.recent, "c") != {}
    h.process_watermark(40_000 + HOUR)
    assert h.state(FraudPatterns.recent, "c") == {}
    assert h.state(FraudPatterns.small, "c") is None
    assert h.state(FraudPatterns.cleanup, "c") is None
    assert h.num_event_time_timers() == 0


def test_old_transactions_are_pruned_while_a_card_stays_busy() -> None:
    h = run([txn(1.0, i * 20 * 60_000) for i in range(10)])  # every 20 min for 3 h
    assert sorted(h.state(FraudPatterns.recent, "c")) == [h_ * 20 * 60_000 for h_ in (7, 8, 9)]


def test_a_transaction_pending_at_the_old_cleanup_time_keeps_its_timer() -> None:
    h: Harness = KeyedProcessFunctionHarness(FraudPatterns(), lambda t: t["card"])
    h.process_element(txn(1.0, 0), timestamp=0)
    h.process_watermark(0)  # judged: cleanup at 1 h
    h.process_element(txn(1.0, HOUR), timestamp=HOUR)  # pending at exactly that time
    h.process_element(txn(1.0, 1_000), timestamp=1_000)  # moves the cleanup to 1 h + 1 s
    h.process_watermark(1_000)
    h.process_watermark(HOUR)
    assert sorted(h.state(FraudPatterns.recent, "c")) == [1_000, HOUR], "judged at its time"


@pytest.mark.parametrize("bad", [{"velocity_limit": -1}, {"travel_within_ms": 0}, {"small_amount": "1"}])
def test_bad_rules_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        FraudRules(**bad)


# --- through the job, with rules in broadcast state ------------------------------------------------
def run_job(
    events: list[dict[str, Any]], *, batch: int = 1
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    alerts: CollectionSink[dict[str, Any]] = CollectionSink()
    late: CollectionSink[dict[str, Any]] = CollectionSink()
    rejected: CollectionSink[dict[str, Any]] = CollectionSink()
    config = JobConfig(max_batch_records=batch, poll_timeout_s=0)
    build_job(CollectionSource(events), alerts, late, rejected, config=config).run()
    return alerts.values, late.values, rejected.values


SEVEN = [txn(10.0, 1_000 + i * 5_000, card="v") for i in range(7)]


def test_job_with_default_rules() -> None:
    alerts, _, _ = run_job(SEVEN)
    assert [a["count"] for a in alerts] == [6, 7]


def test_a_rules_update_changes_what_alerts() -> None:
    alerts, _, rejected = run_job([{"rule": "velocity", "limit": 6}, *SEVEN])
    assert [(a["count"], a["limit"]) for a in alerts] == [(7, 6)]
    assert rejected == []
    alerts, _, _ = run_job([{"rule": "velocity", "limit": 8}, *SEVEN])
    assert alerts == []
    alerts, _, _ = run_job([{"rule": "velocity", "interval_ms": 10_000, "limit": 1}, *SEVEN])
    assert [a["count"] for a in alerts] == [2] * 6, "two in every 10 s"


def test_a_rule_applies_to_the_transactions_that_arrive_after_it() -> None:
    events = [*SEVEN[:5], {"rule": "velocity", "limit": 2}, *SEVEN[5:]]
    alerts, _, _ = run_job(events)
    assert [(a["count"], a["limit"]) for a in alerts] == [(6, 2), (7, 2)]
    alerts, _, _ = run_job([*SEVEN[:5], {"rule": "velocity", "limit": 8}, *SEVEN[5:]])
    assert alerts == []


def test_rules_can_be_turned_off_and_on() -> None:
    fr, us = txn(1.0, 0, "FR", card="t"), txn(1.0, 1_000, "US", card="t")
    off = {"rule": "impossible_travel", "enabled": False}
    alerts, _, _ = run_job([off, fr, us])
    assert alerts == []
    alerts, _, _ = run_job([off, fr, {"rule": "impossible_travel", "enabled": True}, us])
    assert [a["type"] for a in alerts] == ["impossible_travel"]


@pytest.mark.parametrize(
    "update",
    [
        {"rule": "velocity", "limit": -1},
        {"rule": "velocity", "limit": "8"},
        {"rule": "velocity", "speed": 8},
        {"rule": "teleport", "limit": 8},
        {"rule": "velocity"},
        {"rule": 7, "limit": 8},
    ],
)
def test_a_bad_update_is_rejected_and_changes_nothing(update: dict[str, Any]) -> None:
    alerts, _, rejected = run_job([update, *SEVEN])
    assert [r["update"] for r in rejected] == [update]
    assert rejected[0]["reason"]
    assert [a["count"] for a in alerts] == [6, 7], "the defaults still apply"


def test_updates_of_one_rule_accumulate() -> None:
    events = [{"rule": "velocity", "interval_ms": 10_000}, {"rule": "velocity", "limit": 1}, *SEVEN]
    alerts, _, _ = run_job(events)
    assert {(a["limit"], a["interval_ms"]) for a in alerts} == {(1, 10_000)}


def test_the_alerts_do_not_depend_on_how_records_are_batched() -> None:
    events = [e for e in demo_events() if e.get("ts") != 1_767_225_700_000]  # minus the late one
    by_one, _, _ = run_job(events, batch=1)
    assert by_one == run_job(events, batch=1_000)[0]
    assert len(by_one) == 5


def test_main_prints_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.fraud_patterns import main

    main()
    lines = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert [w for w in lines if w in ("ALERT", "LATE", "REJECTED")] == [
        *["ALERT"] * 5,
        "LATE",
        "REJECTED",
    ]


def test_pending_transactions_and_history_survive_a_snapshot_and_restore() -> None:
    h: Harness = KeyedProcessFunctionHarness(FraudPatterns(), lambda t: t["card"])
    h.process_element(txn(0.5, 0), timestamp=0)
    h.process_watermark(0)
    h.process_element(txn(900.0, 1_000), timestamp=1_000)  # pending
    snapshot = h.snapshot()
    h.close()
    restored: Harness = KeyedProcessFunctionHarness(
        FraudPatterns(), lambda t: t["card"], restore_from=snapshot
    )
    restored.process_watermark(1_000)
    assert kinds(restored) == ["small_then_large"]
