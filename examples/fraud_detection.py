"""Fraud detection: a small transaction followed by a large one within a minute raises an alert.

The classic Flink example, with a ValueState flag and a processing-time timer that clears it.
Run it locally on an in-memory source::

    python -m examples.fraud_detection

``examples/demo.py`` runs the same function on Kafka (an embedded broker) with exactly-once output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventapp import (
    Collector,
    Context,
    KeyedProcessFunction,
    OnTimerContext,
    OutputTag,
    RuntimeContext,
    ValueStateDescriptor,
)

SMALL_AMOUNT = 1.00
LARGE_AMOUNT = 500.00
ONE_MINUTE_MS = 60_000

#: Transactions that arrive after the watermark passed them: routed here instead of being judged.
LATE_TRANSACTIONS: OutputTag[dict[str, Any]] = OutputTag("late-transactions")


@dataclass(frozen=True, slots=True)
class Alert:
    account: str
    small_amount: float
    large_amount: float
    timestamp: int | None


class FraudDetector(KeyedProcessFunction[str, dict[str, Any], Alert]):
    """Keyed by account id. Input records: ``{"account": str, "amount": float, "ts": int}``."""

    flag = ValueStateDescriptor[float]("small-transaction")
    timer = ValueStateDescriptor[int]("clear-timer")

    def open(self, ctx: RuntimeContext) -> None:
        self.flag_state = ctx.get_state(self.flag)
        self.timer_state = ctx.get_state(self.timer)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[Alert]) -> None:
        timestamp = ctx.timestamp
        if timestamp is not None and timestamp < ctx.timer_service.current_watermark():
            ctx.output(LATE_TRANSACTIONS, value)
            return
        amount = float(value["amount"])
        small = self.flag_state.value()
        if small is not None:
            if amount > LARGE_AMOUNT:
                out.collect(Alert(str(ctx.current_key), small, amount, timestamp))
            self._clear(ctx)
        if amount < SMALL_AMOUNT:
            self.flag_state.update(amount)
            due = ctx.timer_service.current_processing_time() + ONE_MINUTE_MS
            ctx.timer_service.register_processing_time_timer(due)
            self.timer_state.update(due)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Alert]) -> None:
        self.flag_state.clear()
        self.timer_state.clear()

    def _clear(self, ctx: Context) -> None:
        due = self.timer_state.value()
        if due is not None:
            ctx.timer_service.delete_processing_time_timer(due)
        self.flag_state.clear()
        self.timer_state.clear()


def main() -> None:
    from eventapp import Job, WatermarkStrategy, configure_logging
    from eventapp.connectors.collection import CollectionSink, CollectionSource

    configure_logging()
    transactions = [
        {"account": "alice", "amount": 0.50, "ts": 1_000},
        {"account": "bob", "amount": 20.00, "ts": 1_500},
        {"account": "alice", "amount": 742.00, "ts": 2_000},
        {"account": "bob", "amount": 900.00, "ts": 2_500},
    ]
    alerts: CollectionSink[Alert] = CollectionSink("alerts")
    job = Job("fraud-detection")
    (
        job.from_source(
            CollectionSource(transactions, partitioner=lambda t: hash(t["account"])),
            WatermarkStrategy.for_bounded_out_of_orderness(5_000).with_timestamp_assigner(
                lambda t, _: t["ts"]
            ),
        )
        .key_by(lambda t: t["account"], partitioned_by_source=True)
        .process(FraudDetector(), uid="fraud-detector")
        .sink_to(alerts)
    )
    job.run()
    for alert in alerts.values:
        print(f"ALERT {alert}")


if __name__ == "__main__":
    main()
