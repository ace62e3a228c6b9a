"""Bad input: handler exceptions stop the job with a precise error, or go to a dead-letter sink
with their effects rolled back; malformed source records follow the same policy."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from eventapp import (
    Collector,
    ConfigurationError,
    Context,
    DeadLetter,
    ErrorPolicy,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ManualClock,
    OnTimerContext,
    RecordProcessingError,
    SerializationError,
    SourceRecord,
    ValueStateDescriptor,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource


class Fragile(KeyedProcessFunction[str, dict[str, Any], str]):
    """Counts per key, emits before it may fail, fails on amount < 0, fails in on_timer for key 'boom'."""

    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[str]) -> None:
        state = ctx.get_state(self.count)
        state.update((state.value() or 0) + 1)
        out.collect(f"{value['k']}:{state.value()}")
        ctx.timer_service.register_processing_time_timer(1_000)
        if value["amount"] < 0:
            raise ValueError(f"negative amount {value['amount']}")

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[str]) -> None:
        ctx.get_state(self.count).update(999)
        out.collect(f"timer:{ctx.current_key}")
        if ctx.current_key == "boom":
            raise RuntimeError("timer failed")


RECORDS = [
    {"k": "a", "amount": 1},
    {"k": "a", "amount": -5},
    {"k": "a", "amount": 2},
]


def build(
    records: list[dict[str, Any]], policy: ErrorPolicy, clock: ManualClock | None = None, bounded: bool = True
) -> tuple[Job, CollectionSink[str]]:
    sink: CollectionSink[str] = CollectionSink("out")
    job = Job("errors", JobConfig(error_policy=policy, clock=clock or ManualClock()))
    job.from_source(CollectionSource(records, bounded=bounded)).key_by(lambda v: v["k"]).process(
        Fragile(), uid="fragile"
    ).sink_to(sink)
    return job, sink


def test_handler_exception_stops_the_job_naming_operator_key_record_and_position() -> None:
    job, _ = build(RECORDS, ErrorPolicy.fail())
    with pytest.raises(RecordProcessingError) as info:
        job.run()
    err = info.value
    assert (err.operator, err.key, err.split, err.position) == ("fragile", "a", "collection-0", 1)
    assert isinstance(err.cause, ValueError)
    text = str(err)
    for part in (
        "'fragile'",
        "key 'a'",
        "'amount': -5",
        "collection-0",
        "offset 1",
        "negative amount",
        "dead_letter",
    ):
        assert part in text


def test_dead_letter_policy_rolls_back_state_and_output_of_the_failed_record() -> None:
    dead: CollectionSink[DeadLetter] = CollectionSink("dlq")
    job, sink = build(RECORDS, ErrorPolicy.dead_letter(dead))
    result = job.run()
    assert sink.values == ["a:1", "a:2"], "the failed record's output is discarded, its count rolled back"
    assert result.dead_letters == 1
    (letter,) = dead.values
    assert letter.operator == "fragile" and letter.key == "a"
    assert letter.record == {"k": "a", "amount": -5}
    assert letter.error_type == "ValueError" and "negative amount" in letter.error
    assert (letter.split, letter.position) == ("collection-0", 1)
    assert letter.to_dict()["record"] == {"k": "a", "amount": -5}


def test_a_dead_letter_of_raw_bytes_inside_containers_is_json_friendly() -> None:
    """An undecodable Redis entry's raw record is its fields as ``dict[bytes, bytes]``."""
    import orjson

    letter = DeadLetter(
        operator="source redis:s", key=None, record={b"json": b"{not json", b"n": b"\xff"}, error_type="E",
        error="bad", split="s", position=1, timestamp=None,
    )  # fmt: skip
    data = letter.to_dict()
    assert data["record"] == {"json": "{not json", "n": "\ufffd"}
    orjson.dumps(data)


def test_failing_timer_is_dead_lettered_once_and_rolled_back() -> None:
    dead: CollectionSink[DeadLetter] = CollectionSink("dlq")
    clock = ManualClock()
    records = [{"k": "boom", "amount": 1}, {"k": "ok", "amount": 1}]
    job, sink = build(records, ErrorPolicy.dead_letter(dead), clock, bounded=False)
    runner = job.runner()
    runner.run_until_idle()
    clock.set(5_000)
    runner.run_until_idle()
    runner.run_until_idle()
    assert sink.values == ["boom:1", "ok:1", "timer:ok"]
    assert [d.record for d in dead.values] == ["<processing_time timer @ 1000>"]
    assert dead.values[0].key == "boom"
    assert (
        runner.operator("fragile").timers.count(
            __import__("eventapp").TimeDomain.PROCESSING_TIME, runner.store("collection-0")
        )
        == 0
    ), "the failed timer is consumed, not retried forever"
    runner.close()


def test_errors_in_map_and_key_selector_name_the_operator() -> None:
    job = Job("maps")
    job.from_source(CollectionSource(["1", "x"])).map(int, name="parse-int").sink_to(CollectionSink())
    with pytest.raises(
        RecordProcessingError, match="operator 'parse-int' failed on record 'x' from collection-0 at offset 1"
    ):
        job.run()

    job = Job("keys")
    job.from_source(CollectionSource([{"k": 1, "amount": 1}, {"amount": 1}])).key_by(
        lambda v: v["k"]
    ).process(Fragile(), uid="needs-key")
    with pytest.raises(
        RecordProcessingError,
        match=re.escape(
            "operator 'needs-key' failed on record {'amount': 1} from collection-0 at offset 1: KeyError"
        ),
    ):
        job.run()


class BrokenSource:
    """A source whose second record could not be decoded."""

    name = "broken"

    def splits(self) -> Sequence[str]:
        return ["broken-0"]

    def create_reader(self, splits: Sequence[str], start_positions: Mapping[str, int]) -> Any:
        records = [
            SourceRecord("broken-0", {"k": "a", "amount": 1}, None, 0),
            SourceRecord(
                "broken-0", None, None, 1, raw=b"{not json", error=SerializationError("invalid JSON")
            ),
            SourceRecord("broken-0", {"k": "a", "amount": 2}, None, 2),
        ]

        class Reader:
            done = False

            def poll(self, max_records: int, timeout: float) -> Sequence[SourceRecord[Any]]:
                if self.done:
                    return []
                self.done = True
                return records

            def is_finished(self) -> bool:
                return self.done

            def finished_splits(self) -> list[str]:
                return ["broken-0"] if self.done else []

            def start_positions(self) -> Mapping[str, int]:
                return dict(start_positions)

            def close(self) -> None:
                return None

        return Reader()


def test_malformed_source_record_fails_with_its_position_or_is_dead_lettered() -> None:
    job = Job("malformed")
    job.from_source(BrokenSource()).key_by(lambda v: v["k"]).process(Fragile(), uid="f")
    with pytest.raises(
        RecordProcessingError,
        match=re.escape("operator 'broken' failed on record b'{not json' from broken-0 at offset 1"),
    ):
        job.run()

    dead: CollectionSink[DeadLetter] = CollectionSink("dlq")
    sink: CollectionSink[str] = CollectionSink()
    job = Job("malformed-dlq", JobConfig(error_policy=ErrorPolicy.dead_letter(dead), clock=ManualClock()))
    job.from_source(BrokenSource()).key_by(lambda v: v["k"]).process(Fragile(), uid="f").sink_to(sink)
    job.run()
    assert sink.values == ["a:1", "a:2"], "nothing else is lost"
    assert [(d.record, d.position, d.error_type) for d in dead.values] == [
        (b"{not json", 1, "SerializationError")
    ]


def test_dead_letter_policy_needs_a_sink() -> None:
    with pytest.raises(ConfigurationError, match="needs a Sink"):
        ErrorPolicy.dead_letter(None)  # type: ignore[arg-type]


def test_timestamp_assigner_returning_a_non_int_is_a_bad_record() -> None:
    from eventapp import WatermarkStrategy

    dead: CollectionSink[DeadLetter] = CollectionSink("dlq")
    sink: CollectionSink[str] = CollectionSink()
    job = Job("bad-ts", JobConfig(error_policy=ErrorPolicy.dead_letter(dead), clock=ManualClock()))
    job.from_source(
        CollectionSource([{"k": "a", "amount": 1, "ts": 5}, {"k": "a", "amount": 1, "ts": "soon"}]),
        WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v["ts"]),
    ).key_by(lambda v: v["k"]).process(Fragile(), uid="f").sink_to(sink)
    job.run()
    assert sink.values == ["a:1"]
    (letter,) = dead.values
    assert letter.error_type == "SerializationError" and "returned 'soon' (str)" in letter.error


def test_failing_timestamp_assigner_is_named_as_the_operator() -> None:
    from eventapp import WatermarkStrategy

    def job_with_assigner(name: str, config: JobConfig) -> Job:
        job = Job(name, config)
        records = [{"k": "a", "amount": 1, "ts": 5}, {"k": "a", "amount": 1}]
        strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
            lambda v, _: int(v["ts"])
        )
        job.from_source(CollectionSource(records), strategy).key_by(lambda v: v["k"]).process(
            Fragile(), uid="f"
        )
        return job

    with pytest.raises(RecordProcessingError) as info:
        job_with_assigner("failing-ts", JobConfig(clock=ManualClock())).run()
    err = info.value
    assert (err.operator, err.split, err.position) == (
        "timestamp assigner of source collection",
        "collection-0",
        1,
    )
    assert str(err).startswith(
        "operator 'timestamp assigner of source collection' failed on record {'k': 'a', 'amount': 1} "
        "from collection-0 at offset 1: KeyError: 'ts'. Fix the function"
    )

    dead: CollectionSink[DeadLetter] = CollectionSink("dlq")
    job_with_assigner(
        "failing-ts-dlq", JobConfig(error_policy=ErrorPolicy.dead_letter(dead), clock=ManualClock())
    ).run()
    assert [(d.operator, d.position) for d in dead.values] == [("timestamp assigner of source collection", 1)]
