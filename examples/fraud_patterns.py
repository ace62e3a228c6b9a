"""Card fraud patterns in event time, with thresholds updated at run time through broadcast state.

Transactions ``{"card", "amount", "country", "ts"}`` (``ts``: epoch ms, the event time), keyed by
card. Three rules, each alerting at most once per triggering transaction:

- ``small_then_large``: a transaction under ``small`` (1.00) whose next transaction of the card,
  less than ``within_ms`` (1 minute) later, is over ``large`` (500.00): Flink's classic example;
- ``velocity``: more than ``limit`` (5) transactions of the card in ``interval_ms`` (60 s), the
  triggering one included: every transaction that makes the count exceed the limit alerts;
- ``impossible_travel``: two transactions in different countries less than ``within_ms`` (1 hour)
  apart.

Transactions are judged in event-time order: each waits in keyed state until the watermark reaches
its timestamp (an event-time timer at ``ts``), so the alerts do not depend on the order the
transactions arrived in within the out-of-orderness bound. A transaction is judged by the rules in
force when it *arrived*: they are stored with it, because ``on_timer`` has no broadcast state.
Transactions behind the watermark go to the side output ``late-transactions``; rule updates that
are not understood to ``rejected-rules``. See ``docs/applications.md``.

    python -m examples.fraud_patterns
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventapp import (
    MIN_WATERMARK,
    BroadcastContext,
    Collector,
    ConfigurationError,
    Context,
    Job,
    JobConfig,
    KeyedBroadcastProcessFunction,
    KeyedProcessFunction,
    MapStateDescriptor,
    OnTimerContext,
    OutputTag,
    ReadOnlyBroadcastContext,
    RuntimeContext,
    Sink,
    Source,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource

__all__ = [
    "LATE_TRANSACTIONS",
    "REJECTED_RULES",
    "RULES",
    "FraudPatterns",
    "FraudPatternsWithRules",
    "FraudRules",
    "build_job",
    "main",
]

Txn = dict[str, Any]
Alert = dict[str, Any]

#: Transactions whose timestamp is behind the watermark: routed here, not judged.
LATE_TRANSACTIONS: OutputTag[Txn] = OutputTag("late-transactions")
#: Rule updates that name an unknown rule or parameter, or a bad value: ``{"update", "reason"}``.
REJECTED_RULES: OutputTag[dict[str, Any]] = OutputTag("rejected-rules")
#: The broadcast state: rule name -> the parameters set by updates so far.
RULES = MapStateDescriptor[str, dict[str, Any]]("fraud-rules")

#: The parameters of each rule in an update, and the field of :class:`FraudRules` each sets.
RULE_PARAMETERS: dict[str, dict[str, str]] = {
    "small_then_large": {
        "small": "small_amount",
        "large": "large_amount",
        "within_ms": "small_then_large_ms",
        "enabled": "small_then_large_enabled",
    },
    "velocity": {
        "limit": "velocity_limit",
        "interval_ms": "velocity_interval_ms",
        "enabled": "velocity_enabled",
    },
    "impossible_travel": {"within_ms": "travel_within_ms", "enabled": "travel_enabled"},
}


@dataclass(frozen=True, slots=True)
class FraudRules:
    """The thresholds of the three rules (the defaults are the constructor's)."""

    small_amount: float = 1.00
    large_amount: float = 500.00
    small_then_large_ms: int = 60_000
    velocity_limit: int = 5
    velocity_interval_ms: int = 60_000
    travel_within_ms: int = 3_600_000
    small_then_large_enabled: bool = True
    velocity_enabled: bool = True
    travel_enabled: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_enabled"):
                ok = isinstance(value, bool)
            elif f.name.endswith("_amount"):
                ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            else:  # a count (>= 0) or a duration (> 0)
                least = 0 if f.name == "velocity_limit" else 1
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= least
            if not ok:
                raise ConfigurationError(f"FraudRules.{f.name}: invalid value {value!r}")

    @property
    def retention_ms(self) -> int:
        """How long a judged transaction can matter to a later one."""
        return max(self.small_then_large_ms, self.velocity_interval_ms, self.travel_within_ms)

    def as_dict(self) -> dict[str, Any]:
        """The rules as stored with a pending transaction (by field name: fields may be added)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(stored: Mapping[str, Any]) -> FraudRules:
        names = {f.name for f in dataclasses.fields(FraudRules)}
        return FraudRules(**{k: v for k, v in stored.items() if k in names})

    def with_parameters(self, rules: Mapping[str, Mapping[str, Any]]) -> FraudRules:
        """These rules with the parameters of ``rules`` (broadcast state) applied."""
        changes: dict[str, Any] = {}
        for rule, params in rules.items():
            fields = RULE_PARAMETERS.get(rule)
            if fields is None:
                raise ConfigurationError(f"unknown rule {rule!r}; the rules are {sorted(RULE_PARAMETERS)}")
            for param, value in params.items():
                if param not in fields:
                    raise ConfigurationError(
                        f"rule {rule!r} has no parameter {param!r}; it has {sorted(fields)}"
                    )
                changes[fields[param]] = value
        return dataclasses.replace(self, **changes) if changes else self


class _PatternLogic:
    """The detection, shared by the function with fixed rules and the one with broadcast rules."""

    pending = MapStateDescriptor[int, list[Any]]("pending")  # ts -> [[txn, rules as a dict]]
    recent = MapStateDescriptor[int, list[str]]("recent")  # ts -> countries of judged transactions
    small = ValueStateDescriptor[list[Any]]("small")  # [amount, ts] when the last one was small
    cleanup = ValueStateDescriptor[int]("cleanup-at")  # the timer that drops everything judged

    def _open(self, ctx: RuntimeContext) -> None:
        self._pending = ctx.get_state(self.pending)
        self._recent = ctx.get_state(self.recent)
        self._small = ctx.get_state(self.small)
        self._cleanup = ctx.get_state(self.cleanup)

    def _accept(self, txn: Txn, ctx: Context, rules: FraudRules) -> None:
        ts = ctx.timestamp
        if ts is None:
            raise ConfigurationError(
                "fraud patterns need event time: read the source with a WatermarkStrategy "
                "with_timestamp_assigner(lambda t, _: t['ts'])"
            )
        if ts < ctx.timer_service.current_watermark():
            ctx.output(LATE_TRANSACTIONS, txn)
            return
        waiting = self._pending.get(ts) or []
        waiting.append([txn, rules.as_dict()])
        self._pending.put(ts, waiting)
        ctx.timer_service.register_event_time_timer(ts)

    def _fire(self, timestamp: int, ctx: OnTimerContext, out: Collector[Alert]) -> None:
        waiting = self._pending.get(timestamp)
        if waiting is not None:
            self._pending.remove(timestamp)
            for txn, rules in waiting:
                self._judge(txn, timestamp, FraudRules.from_dict(rules), ctx, out)
        if self._cleanup.value() == timestamp:  # nothing judged for retention_ms
            self._recent.clear()
            self._small.clear()
            self._cleanup.clear()

    def _judge(self, txn: Txn, ts: int, rules: FraudRules, ctx: Context, out: Collector[Alert]) -> None:
        card = ctx.current_key
        amount, country = float(txn["amount"]), str(txn["country"])
        small = self._small.value()
        if (
            rules.small_then_large_enabled
            and small is not None
            and amount > rules.large_amount
            and ts - small[1] < rules.small_then_large_ms
        ):
            out.collect(
                {"type": "small_then_large", "card": card, "ts": ts, "amount": amount}
                | {"small_amount": small[0], "small_ts": small[1]}
            )
        if amount < rules.small_amount:
            self._small.update([amount, ts])
        elif small is not None:
            self._small.clear()

        count, previous = 1, None  # this one, and the latest one elsewhere within travel range
        for t, countries in list(self._recent.items()):
            if t <= ts - rules.retention_ms:
                self._recent.remove(t)
                continue
            if t > ts - rules.velocity_interval_ms:
                count += len(countries)
            if t > ts - rules.travel_within_ms and (previous is None or t > previous[0]):
                elsewhere = [c for c in countries if c != country]
                if elsewhere:
                    previous = (t, elsewhere[-1])
        self._recent.put(ts, [*(self._recent.get(ts) or []), country])
        if rules.velocity_enabled and count > rules.velocity_limit:
            out.collect(
                {"type": "velocity", "card": card, "ts": ts, "count": count}
                | {"limit": rules.velocity_limit, "interval_ms": rules.velocity_interval_ms}
            )
        if rules.travel_enabled and previous is not None:
            out.collect(
                {"type": "impossible_travel", "card": card, "ts": ts, "country": country}
                | {"previous_country": previous[1], "previous_ts": previous[0]}
            )
        self._move_cleanup(ts + rules.retention_ms, ctx)

    def _move_cleanup(self, due: int, ctx: Context) -> None:
        old = self._cleanup.value()
        if old is not None and old >= due:
            return
        if old is not None and not self._pending.contains(old):  # the timer may be a pending one's
            ctx.timer_service.delete_event_time_timer(old)
        ctx.timer_service.register_event_time_timer(due)
        self._cleanup.update(due)


class FraudPatterns(_PatternLogic, KeyedProcessFunction[str, Txn, Alert]):
    """The rules with fixed thresholds (``rules``), for a stream of transactions alone."""

    def __init__(self, rules: FraudRules | None = None) -> None:
        self.rules = rules or FraudRules()

    def open(self, ctx: RuntimeContext) -> None:
        self._open(ctx)

    def process_element(self, value: Txn, ctx: Context, out: Collector[Alert]) -> None:
        self._accept(value, ctx, self.rules)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Alert]) -> None:
        self._fire(timestamp, ctx, out)


class FraudPatternsWithRules(_PatternLogic, KeyedBroadcastProcessFunction[str, Txn, dict[str, Any], Alert]):
    """The rules with thresholds from broadcast state: an update ``{"rule": "velocity", "limit":
    8}`` changes the parameters it names, for the transactions that arrive after it; parameters
    never updated keep ``defaults``. ``{"rule": name, "enabled": false}`` turns a rule off."""

    def __init__(self, defaults: FraudRules | None = None) -> None:
        self.defaults = defaults or FraudRules()
        self._view: Mapping[str, dict[str, Any]] | None = None
        self._rules = self.defaults

    def open(self, ctx: RuntimeContext) -> None:
        self._open(ctx)

    def process_element(self, value: Txn, ctx: ReadOnlyBroadcastContext, out: Collector[Alert]) -> None:
        view = ctx.get_broadcast_state(RULES)
        if view is not self._view:  # a new view after every broadcast element
            self._view, self._rules = view, self.defaults.with_parameters(view)
        self._accept(value, ctx, self._rules)

    def process_broadcast_element(
        self, value: dict[str, Any], ctx: BroadcastContext, out: Collector[Alert]
    ) -> None:
        state = ctx.get_broadcast_state(RULES)
        rule = value.get("rule")
        params = {k: v for k, v in value.items() if k not in ("rule", "ts")}
        try:
            if not isinstance(rule, str) or not params:
                raise ConfigurationError("an update is {'rule': name, parameter: value, ...}")
            merged = {**(state.get(rule) or {}), **params}
            current = {name: p for name, p in state.items() if name != rule}
            self.defaults.with_parameters({**current, rule: merged})  # validates
        except ConfigurationError as exc:
            ctx.output(REJECTED_RULES, {"update": value, "reason": str(exc)})
            return
        state.put(rule, merged)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Alert]) -> None:
        self._fire(timestamp, ctx, out)


def _event_time(record: dict[str, Any], source_ts: int | None) -> int:
    """A transaction's ``ts``; a rule update's ``ts`` if it has one, else the source's timestamp
    (the earliest possible time without one: it never moves the watermark)."""
    if "ts" in record:
        return int(record["ts"])
    return source_ts if source_ts is not None else MIN_WATERMARK


def build_job(
    source: Source[dict[str, Any]],
    alerts: Sink[Alert] | Sequence[Sink[Alert]],
    late: Sink[Txn] | None = None,
    rejected_rules: Sink[dict[str, Any]] | None = None,
    *,
    rules_source: Source[dict[str, Any]] | None = None,
    defaults: FraudRules | None = None,
    out_of_orderness_ms: int = 5_000,
    config: JobConfig | None = None,
    name: str = "fraud-patterns",
) -> Job:
    """The fraud job: ``source`` holds transactions and, optionally, rule updates (records with a
    ``"rule"`` field); ``rules_source`` is a second source of rule updates (its watermark holds the
    detector's back: give its records a ``ts``, or use a source with idleness). Late transactions go
    to ``late`` and rejected updates to ``rejected_rules`` (dropped when ``None``)."""
    job = Job(name, config)
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(out_of_orderness_ms).with_timestamp_assigner(
        _event_time
    )
    records = job.from_source(source, strategy)
    updates = records.filter(lambda r: "rule" in r, name="rule-updates")
    if rules_source is not None:
        updates = updates.union(job.from_source(rules_source, strategy, name="rules"))
    detected = (
        records.filter(lambda r: "rule" not in r, name="transactions")
        .key_by(lambda t: str(t["card"]))
        .connect(updates.broadcast(RULES))
        .process(FraudPatternsWithRules(defaults), uid="fraud-patterns")
    )
    for index, sink in enumerate([alerts] if not isinstance(alerts, Sequence) else alerts):
        detected.sink_to(sink, name="alerts" if index == 0 else f"alerts-{index + 1}")
    if late is not None:
        detected.side_output(LATE_TRANSACTIONS).sink_to(late, name="late-transactions")
    if rejected_rules is not None:
        detected.side_output(REJECTED_RULES).sink_to(rejected_rules, name="rejected-rules")
    return job


T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def demo_events() -> list[dict[str, Any]]:
    """Transactions of five cards and two rule updates, in arrival order."""
    s = 1_000

    def txn(card: str, amount: float, country: str, at_s: int) -> Txn:
        return {"card": card, "amount": amount, "country": country, "ts": T0 + at_s * s}

    return [
        txn("card-1", 0.50, "FR", 0),
        txn("card-3", 40.00, "FR", 1),
        txn("card-1", 742.00, "FR", 20),  # 20 s after a small one: small_then_large
        *(txn("card-2", 12.00, "DE", 30 + 8 * i) for i in range(7)),  # 7 in 48 s: velocity x2
        txn("card-3", 25.00, "US", 95),  # FR then US 94 s apart: impossible_travel
        {"rule": "velocity", "limit": 8},
        {"rule": "velocity", "limit": -1},  # rejected
        *(txn("card-4", 9.99, "IT", 100 + 5 * i) for i in range(7)),  # 7 in 30 s: under 8
        txn("card-5", 900.00, "ES", 151),  # arrives first, judged second (event-time order):
        txn("card-5", 0.10, "ES", 150),  # small_then_large
        txn("card-4", 9.99, "IT", 100),  # 50 s behind: late
    ]


def main() -> None:
    """Run the job over :func:`demo_events`, one record per poll, and print what it emits."""
    alerts: CollectionSink[Alert] = CollectionSink("alerts")
    late: CollectionSink[Txn] = CollectionSink("late")
    rejected: CollectionSink[dict[str, Any]] = CollectionSink("rejected")
    config = JobConfig(max_batch_records=1, poll_timeout_s=0)
    build_job(CollectionSource(demo_events()), alerts, late, rejected, config=config).run()
    for alert in alerts.values:
        print("ALERT   ", json.dumps(alert))
    for txn in late.values:
        print("LATE    ", json.dumps(txn))
    for update in rejected.values:
        print("REJECTED", json.dumps(update))


if __name__ == "__main__":
    main()
