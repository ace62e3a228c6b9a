"""``connect`` with a ``KeyedCoProcessFunction``: state and timers per key across both inputs (a
rules stream and an events stream of one job), each record to the method of its input; and
without keys, with a ``CoProcessFunction``."""

from __future__ import annotations

from typing import Any

import pytest

from eventapp import (
    CoContext,
    Collector,
    ConfigurationError,
    Context,
    CoProcessFunction,
    ErrorPolicy,
    Job,
    JobConfig,
    KeyedCoProcessFunction,
    OnTimerContext,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource

Event = dict[str, Any]


class Threshold(KeyedCoProcessFunction[str, Event, Event, str]):
    """Input 1: payments; input 2: per-account limits. Alerts on a payment over the account's
    limit; an event-time timer at the limit's ``until`` clears it."""

    limit = ValueStateDescriptor[int]("limit")

    def process_element1(self, value: Event, ctx: Context, out: Collector[str]) -> None:
        limit = ctx.get_state(self.limit).value()
        if limit is not None and value["amount"] > limit:
            out.collect(f"{ctx.current_key}: {value['amount']} > {limit}")

    def process_element2(self, value: Event, ctx: Context, out: Collector[str]) -> None:
        ctx.get_state(self.limit).update(value["limit"])
        ctx.timer_service.register_event_time_timer(value["until"])

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[str]) -> None:
        ctx.get_state(self.limit).clear()
        out.collect(f"{ctx.current_key}: limit expired at {timestamp}")


def test_keyed_state_and_timers_are_shared_by_both_inputs() -> None:
    records: list[Event] = [
        {"kind": "pay", "account": "a", "amount": 50, "ts": 1},
        {"kind": "limit", "id": "a", "limit": 100, "until": 20, "ts": 2},
        {"kind": "pay", "account": "a", "amount": 150, "ts": 3},
        {"kind": "pay", "account": "b", "amount": 150, "ts": 4},
        {"kind": "pay", "account": "a", "amount": 99, "ts": 5},
        {"kind": "pay", "account": "b", "amount": 1, "ts": 25},  # the watermark passes 20: expired
        {"kind": "pay", "account": "a", "amount": 500, "ts": 30},
    ]
    job = Job("connect", JobConfig(max_batch_records=1))  # the watermark follows every record
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r["ts"])
    stream = job.from_source(CollectionSource(records), strategy)
    payments = stream.filter(lambda r: r["kind"] == "pay")
    limits = stream.filter(lambda r: r["kind"] == "limit")
    sink: CollectionSink[str] = CollectionSink()
    connected = payments.connect(limits).key_by(lambda p: p["account"], lambda lim: lim["id"])
    connected.process(Threshold(), uid="threshold").sink_to(sink)
    job.run()
    assert sink.values == ["a: 150 > 100", "a: limit expired at 20"]


def test_connect_with_another_job_or_a_plain_function_is_refused() -> None:
    one, other = Job("one"), Job("two")
    a, b = one.from_source(CollectionSource([1])), other.from_source(CollectionSource([2]))
    with pytest.raises(ConfigurationError, match="connect\\(\\) takes a stream of the same job"):
        a.connect(b)
    connected = a.connect(a.map(lambda x: x)).key_by(lambda x: x, lambda x: x)
    with pytest.raises(ConfigurationError, match="needs a KeyedCoProcessFunction"):
        connected.process(lambda x: x, uid="bad")  # type: ignore[arg-type]


class Tagger(CoProcessFunction[int, str, str]):
    def __init__(self) -> None:
        self.opened = self.closed = False

    def open(self) -> None:
        self.opened = True

    def process_element1(self, value: int, ctx: CoContext, out: Collector[str]) -> None:
        out.collect(f"n{value}@{ctx.timestamp}")

    def process_element2(self, value: str, ctx: CoContext, out: Collector[str]) -> None:
        if value == "bad":
            raise ValueError("bad word")
        out.collect(f"w{value}@{ctx.timestamp}")
        out.collect(value.upper())

    def close(self) -> None:
        self.closed = True


def test_connect_without_keys_runs_a_co_process_function_on_both_sources() -> None:
    job = Job("co-process")
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: 7)
    numbers = job.from_source(CollectionSource([1, 2], name="numbers"), strategy)
    words = job.from_source(CollectionSource(["x"], name="words"), strategy)
    sink: CollectionSink[str] = CollectionSink()
    function = Tagger()
    numbers.connect(words).process(function).sink_to(sink)
    job.run()
    assert sorted(sink.values) == ["X", "n1@7", "n2@7", "wx@7"]
    assert all(ts == 7 for _, ts in sink.records)  # outputs carry the input's timestamp
    assert function.opened and function.closed


def test_a_failing_co_process_function_follows_the_error_policy_naming_it() -> None:
    dead: CollectionSink[Any] = CollectionSink()
    job = Job("co-process-fail", JobConfig(error_policy=ErrorPolicy.dead_letter(dead)))
    stream = job.from_source(CollectionSource(["ok", "bad"]))
    sink: CollectionSink[str] = CollectionSink()
    stream.filter(lambda w: False).map(len).connect(stream).process(Tagger(), name="tagger").sink_to(sink)
    job.run()
    assert sink.values == ["wok@None", "OK"]
    assert [d.operator for d in dead.values] == ["tagger"] and "bad word" in dead.values[0].error
    with pytest.raises(ConfigurationError, match="CoProcessFunction instance"):
        stream.connect(stream).process(Threshold())  # type: ignore[arg-type]
