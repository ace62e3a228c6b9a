"""Fraud detection with rules updated at run time through broadcast state.

A rules stream (``{"rule": name, "limit": amount}``, ``limit`` None deletes the rule) reaches every
parallel instance of the keyed detector, which keeps the rules in broadcast state
(``eventapp.broadcast``). For every transaction the detector counts the account's transactions in
keyed state and alerts once per rule the amount is over. Rules and transactions here come from one
in-memory source; on Kafka they are two sources of one job and the rules reach every split of the
detector through the key_by shuffle (``tests/kafka/test_broadcast.py``).

    python -m examples.fraud_rules
"""

from __future__ import annotations

from typing import Any

from eventapp import (
    BroadcastContext,
    Collector,
    Job,
    KeyedBroadcastProcessFunction,
    MapStateDescriptor,
    ReadOnlyBroadcastContext,
    ValueStateDescriptor,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource

RULES = MapStateDescriptor[str, float]("rules")


class RuleDetector(KeyedBroadcastProcessFunction[str, dict[str, Any], dict[str, Any], str]):
    transactions = ValueStateDescriptor[int]("transactions", default=0)

    def process_element(
        self, value: dict[str, Any], ctx: ReadOnlyBroadcastContext, out: Collector[str]
    ) -> None:
        count = ctx.get_state(self.transactions)
        n = (count.value() or 0) + 1
        count.update(n)
        for name, limit in sorted(ctx.get_broadcast_state(RULES).items()):
            if value["amount"] > limit:
                out.collect(
                    f"{ctx.current_key} transaction {n}: {value['amount']:.2f} breaks rule {name} "
                    f"(> {limit:.2f})"
                )

    def process_broadcast_element(
        self, value: dict[str, Any], ctx: BroadcastContext, out: Collector[str]
    ) -> None:
        rules = ctx.get_broadcast_state(RULES)
        if value["limit"] is None:
            rules.remove(value["rule"])
        else:
            rules.put(value["rule"], float(value["limit"]))


EVENTS: list[dict[str, Any]] = [
    {"account": "alice", "amount": 900.0},  # no rule yet: no alert
    {"rule": "large", "limit": 500},
    {"account": "alice", "amount": 900.0},
    {"account": "bob", "amount": 120.0},
    {"rule": "medium", "limit": 100},
    {"account": "bob", "amount": 120.0},
    {"rule": "large", "limit": None},  # retired at run time
    {"account": "alice", "amount": 900.0},
]


def build_job(events: list[dict[str, Any]], alerts: CollectionSink[str]) -> Job:
    job = Job("fraud-rules")
    stream = job.from_source(CollectionSource(events))
    rules = stream.filter(lambda e: "rule" in e).broadcast(RULES)
    transactions = stream.filter(lambda e: "account" in e)
    transactions.key_by(lambda t: t["account"]).connect(rules).process(
        RuleDetector(), uid="rule-detector"
    ).sink_to(alerts)
    return job


def main() -> None:
    alerts: CollectionSink[str] = CollectionSink()
    build_job(EVENTS, alerts).run()
    for alert in alerts.values:
        print(alert)


if __name__ == "__main__":
    main()
