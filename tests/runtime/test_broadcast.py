"""Broadcast state in one split: rules updated at run time through a broadcast stream, read by a
keyed function for every element, kept in state and restored from a checkpoint; and read by a
non-keyed function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventapp import (
    BroadcastContext,
    BroadcastProcessFunction,
    CheckpointConfig,
    Collector,
    ConfigurationError,
    Job,
    JobConfig,
    KeyedBroadcastProcessFunction,
    MapStateDescriptor,
    ReadOnlyBroadcastContext,
    ReadOnlyBroadcastTimerContext,
    RecordProcessingError,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource

RULES = MapStateDescriptor[str, float]("limits")


class OverLimit(KeyedBroadcastProcessFunction[str, dict[str, Any], dict[str, Any], str]):
    """Broadcast: ``{"rule": name, "limit": x}`` (``limit`` None removes the rule). Elements:
    ``{"acct", "amount"}``; alerts when an amount is over a rule's limit, with the account's count."""

    seen = ValueStateDescriptor[int]("seen", default=0)

    def process_element(
        self, value: dict[str, Any], ctx: ReadOnlyBroadcastContext, out: Collector[str]
    ) -> None:
        state = ctx.get_state(self.seen)
        n = (state.value() or 0) + 1
        state.update(n)
        rules = ctx.get_broadcast_state(RULES)
        for name, limit in sorted(rules.items()):
            if value["amount"] > limit:
                out.collect(f"{ctx.current_key}#{n} {value['amount']} over {name}={limit}")
        with pytest.raises(TypeError):
            rules["x"] = 1.0  # type: ignore[index]  # read-only in process_element

    def process_broadcast_element(
        self, value: dict[str, Any], ctx: BroadcastContext, out: Collector[str]
    ) -> None:
        state = ctx.get_broadcast_state(RULES)
        if value["limit"] is None:
            state.remove(value["rule"])
        else:
            state.put(value["rule"], value["limit"])


def _job(records: list[dict[str, Any]], storage: Path | None = None) -> tuple[Job, CollectionSink[str]]:
    config = (
        JobConfig()
        if storage is None
        else JobConfig(checkpoint=CheckpointConfig(storage=storage, interval_ms=60_000))
    )
    job = Job("broadcast", config)
    stream = job.from_source(CollectionSource(records))
    updates = stream.filter(lambda r: "rule" in r).broadcast(RULES)
    sink: CollectionSink[str] = CollectionSink()
    stream.filter(lambda r: "acct" in r).key_by(lambda r: r["acct"]).connect(updates).process(
        OverLimit(), uid="over-limit"
    ).sink_to(sink)
    return job, sink


def test_rules_change_at_run_time_and_every_key_reads_them() -> None:
    job, sink = _job(
        [
            {"acct": "a", "amount": 500},  # no rule yet
            {"rule": "big", "limit": 100},
            {"acct": "a", "amount": 150},
            {"acct": "b", "amount": 50},
            {"rule": "small", "limit": 40},
            {"acct": "b", "amount": 60},
            {"rule": "big", "limit": None},
            {"acct": "a", "amount": 150},
        ]
    )
    job.run()
    assert sink.values == [
        "a#2 150 over big=100",
        "b#2 60 over small=40",
        "a#3 150 over small=40",
    ]


def test_broadcast_state_is_restored_from_the_checkpoint(tmp_path: Path) -> None:
    log = [{"rule": "big", "limit": 100}, {"acct": "a", "amount": 1}]
    first, _ = _job(log, tmp_path)
    assert first.run().records_read == 2
    # The same job again over the grown log: it resumes after the rule, which comes back with the
    # broadcast state, as does the account's count.
    second, sink = _job([*log, {"acct": "a", "amount": 101}], tmp_path)
    assert second.run().records_read == 1
    assert sink.values == ["a#2 101 over big=100"]


def test_broadcast_needs_map_state_descriptors_and_the_shuffle() -> None:
    job = Job("broadcast-bad")
    stream = job.from_source(CollectionSource([1]))
    with pytest.raises(ConfigurationError, match="MapStateDescriptor"):
        stream.broadcast(ValueStateDescriptor[int]("x"))  # type: ignore[arg-type]
    keyed = stream.key_by(lambda v: v, partitioned_by_source=True)
    with pytest.raises(ConfigurationError, match="drop partitioned_by_source"):
        keyed.connect(stream.broadcast(RULES)).process(OverLimit(), uid="x")
    with pytest.raises(ConfigurationError, match="KeyedBroadcastProcessFunction instance"):
        stream.key_by(lambda v: v).connect(stream.broadcast(RULES)).process(object(), uid="y")  # type: ignore[arg-type]


class Tag(BroadcastProcessFunction[str, dict[str, Any], str]):
    """Non-keyed: prefixes every word with the current tag rule; asks for keyed state on 'state'."""

    def process_element(self, value: str, ctx: ReadOnlyBroadcastContext, out: Collector[str]) -> None:
        if value == "state":
            ctx.get_state(ValueStateDescriptor[int]("n"))
        out.collect(f"{dict(ctx.get_broadcast_state(RULES)).get('tag', 0):g}:{value}@{ctx.timestamp}")

    def process_broadcast_element(
        self, value: dict[str, Any], ctx: BroadcastContext, out: Collector[str]
    ) -> None:
        ctx.get_broadcast_state(RULES).put("tag", value["limit"])


def test_a_non_keyed_stream_reads_broadcast_state_without_keyed_state() -> None:
    job = Job("broadcast-unkeyed")
    stream = job.from_source(
        CollectionSource(["a", {"rule": "tag", "limit": 7}, "b", "c"], timestamp=lambda _: 5)
    )
    sink: CollectionSink[str] = CollectionSink()
    words = stream.filter(lambda r: isinstance(r, str))
    words.connect(stream.filter(lambda r: isinstance(r, dict)).broadcast(RULES)).process(
        Tag(), uid="tag"
    ).sink_to(sink)
    job.run()
    assert sink.values == ["0:a@5", "7:b@5", "7:c@5"]
    failing = Job("broadcast-unkeyed-state")
    source = failing.from_source(CollectionSource(["state"]))
    source.connect(source.filter(lambda r: False).broadcast(RULES)).process(Tag(), uid="tag").sink_to(sink)
    with pytest.raises(RecordProcessingError, match="no keyed state"):
        failing.run()


class RemindWithTheRule(OverLimit):
    """Registers an event-time timer per element; ``on_timer`` reads the broadcast state (as Flink's
    ``KeyedBroadcastProcessFunction.OnTimerContext`` can), read-only."""

    def process_element(
        self, value: dict[str, Any], ctx: ReadOnlyBroadcastContext, out: Collector[str]
    ) -> None:
        assert ctx.timestamp is not None
        ctx.timer_service.register_event_time_timer(ctx.timestamp + 10)

    def on_timer(self, timestamp: int, ctx: ReadOnlyBroadcastTimerContext, out: Collector[str]) -> None:
        rules = ctx.get_broadcast_state(RULES)
        out.collect(f"{ctx.current_key}@{timestamp} {ctx.time_domain.name} rules={dict(rules)}")
        with pytest.raises(TypeError):
            rules["x"] = 1.0  # type: ignore[index]  # read-only in on_timer


def test_on_timer_reads_the_broadcast_state() -> None:
    records = [
        {"rule": "big", "limit": 100, "ts": 1},
        {"acct": "a", "amount": 5, "ts": 2},
        {"rule": "huge", "limit": 1000, "ts": 3},
    ]
    job = Job("broadcast-timers")
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r["ts"])
    stream = job.from_source(CollectionSource(records), strategy)
    updates = stream.filter(lambda r: "rule" in r).broadcast(RULES)
    sink: CollectionSink[str] = CollectionSink()
    stream.filter(lambda r: "acct" in r).key_by(lambda r: r["acct"]).connect(updates).process(
        RemindWithTheRule(), uid="remind"
    ).sink_to(sink)
    job.run()  # the end of input fires the timer, after both rules arrived
    assert sink.values == ["a@12 EVENT_TIME rules={'big': 100, 'huge': 1000}"]
