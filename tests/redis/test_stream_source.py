"""The Redis Streams source against a real redis-server: splits and their fair interleaving, bounded
ends, exact restore from a position, ``latest``, pattern discovery, event time, decode errors as
error records, lost entries (trimmed, deleted, recreated streams) reported, an unreachable server,
and a checkpointed job counting each entry exactly once across a crash."""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from eventapp import (
    CheckpointConfig,
    Collector,
    ConfigurationError,
    Context,
    DeadLetter,
    ErrorPolicy,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ManualClock,
    SerializationError,
    SourceError,
    ValueStateDescriptor,
)
from eventapp.broker_probe import find_free_port
from eventapp.connectors.collection import CollectionSink
from eventapp.connectors.redis.source import RedisStreamSource
from eventapp.connectors.redis.source_config import RedisStreamSourceConfig
from eventapp.connectors.redis.stream_ids import format_id, parse_id
from eventapp.connectors.redis.stream_reader import RedisStreamReader
from eventapp.source import LagReporter, PausableReader, SourceReader, SourceRecord
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

U64 = (1 << 64) - 1


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A unique key prefix without glob or path characters."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]
    return f"es:{name}:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    yield c
    c.close()


def make_source(server: RedisServer, **options: Any) -> RedisStreamSource[Any]:
    return RedisStreamSource(RedisStreamSourceConfig(url=server.url, **options))


def open_reader(
    server: RedisServer, positions: dict[str, int] | None = None, **options: Any
) -> RedisStreamReader:
    source = make_source(server, **options)
    return source.create_reader(source.splits(), positions or {})


def drain(reader: RedisStreamReader, max_records: int = 100) -> list[SourceRecord[Any]]:
    """Every record there is now: until a poll returns nothing (each poll reads every split whose
    buffer is empty, so an empty poll means all were read) or a bounded reader finished."""
    out: list[SourceRecord[Any]] = []
    while True:
        records = reader.poll(max_records, 0)
        out.extend(records)
        if not records or reader.is_finished():
            return out


def add(client: redis.Redis, key: str, count: int, start: int = 0, ms: int = 1) -> None:
    """``count`` entries ``{"n": i}`` with ids ``<ms>-<i+1>``, for ``i`` from ``start``."""
    for i in range(start, start + count):
        client.xadd(key, {"n": str(i)}, id=f"{ms}-{i + 1}")


def ns(records: list[SourceRecord[Any]]) -> list[int]:
    return [int(r.value["n"]) for r in records]


# -- reading ----------------------------------------------------------------------------------------


def test_reads_several_streams_interleaved(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    keys = [f"{prefix}:{i}" for i in range(3)]
    for key in keys:
        add(client, key, 20)
    reader = open_reader(redis_server, streams=keys, batch_size=5)
    protocols: object = reader
    assert isinstance(protocols, SourceReader) and isinstance(protocols, PausableReader)
    first = reader.poll(6, 0)
    assert Counter(r.split for r in first) == dict.fromkeys(keys, 2)  # a share of each, not one drained
    records = first + drain(reader, 7)
    for key in keys:
        mine = [r for r in records if r.split == key]
        assert ns(mine) == list(range(20))
        assert [format_id(r.position or 0) for r in mine] == [f"1-{i + 1}" for i in range(20)]
        assert mine[0].value == {"n": "0"}
    assert reader.finished_splits() == [] and not reader.is_finished()  # unbounded
    reader.close()


def test_paused_split_is_held_back_and_resumes_without_loss(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    a, b = f"{prefix}:a", f"{prefix}:b"
    add(client, a, 4)
    add(client, b, 4)
    reader = open_reader(redis_server, streams=[a, b], batch_size=2)
    reader.pause_or_resume([a], [])
    held = drain(reader)
    assert {r.split for r in held} == {b} and ns(held) == [0, 1, 2, 3]
    reader.pause_or_resume([], [a])
    assert ns(drain(reader)) == [0, 1, 2, 3]
    with pytest.raises(ConfigurationError, match="cannot pause"):
        reader.pause_or_resume(["nope"], [])
    reader.close()


def test_bounded_read_ends_at_the_last_entry_when_the_reader_was_created(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    full, empty = f"{prefix}:full", f"{prefix}:empty"
    add(client, full, 5)
    client.xgroup_create(empty, "g", id="$", mkstream=True)  # exists, never had an entry
    reader = open_reader(redis_server, streams=[full, empty], bounded=True, batch_size=2)
    assert reader.finished_splits() == [empty]
    add(client, full, 2, start=5)  # after the reader's end
    records = drain(reader)
    assert ns(records) == [0, 1, 2, 3, 4]
    assert sorted(reader.finished_splits()) == sorted([full, empty]) and reader.is_finished()
    assert reader.poll(10, 0) == []
    reader.close()


def test_restore_continues_exactly_after_the_position(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    ids = ["7-1", f"7-{U64 - 1}", f"7-{U64}", "8-0", "8-1", "9-3"]
    for i, entry_id in enumerate(ids):
        client.xadd(key, {"n": str(i)}, id=entry_id)
    reader = open_reader(redis_server, streams=[key], batch_size=3)
    first = reader.poll(3, 0)
    assert ns(first) == [0, 1, 2]
    position = (first[-1].position or 0) + 1
    assert format_id(position) == "8-0"  # seq 2**64-1 + 1 carries into the ms part
    reader.close()
    restored = open_reader(redis_server, {key: position}, streams=[key], batch_size=3)
    assert restored.start_positions() == {key: position}
    assert ns(drain(restored)) == [3, 4, 5]  # no entry lost, none repeated
    restored.close()
    bounded = open_reader(redis_server, {key: parse_id("8-1")}, streams=[key], bounded=True)
    assert ns(drain(bounded)) == [4, 5] and bounded.is_finished()
    bounded.close()


def test_latest_starts_after_the_last_entry_and_reports_that_position(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 3)
    reader = open_reader(redis_server, streams=[key], start="latest")
    assert reader.start_positions() == {key: parse_id("1-3") + 1}
    assert reader.poll(10, 0) == []
    add(client, key, 2, start=3)
    assert ns(drain(reader)) == [3, 4]
    reader.close()
    # A reader that started at latest and read nothing: a restart continues at its start position,
    # so what arrived while the job was down is read, not skipped.
    idle = open_reader(redis_server, streams=[key], start="latest")
    started = dict(idle.start_positions())
    idle.close()
    add(client, key, 2, start=5)
    again = open_reader(redis_server, started, streams=[key], start="latest")
    assert ns(drain(again)) == [5, 6]
    again.close()


def test_restart_at_a_start_position_before_any_entry_is_not_a_loss(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    client.xgroup_create(key, "g", id="$", mkstream=True)  # exists, never had an entry
    earliest = open_reader(redis_server, streams=[key])
    assert earliest.start_positions() == {}  # nothing taken yet: a restart starts at the first entry
    earliest.close()
    latest = open_reader(redis_server, streams=[key], start="latest")
    started = dict(latest.start_positions())
    assert started == {key: 1}  # after 0-0
    latest.close()
    add(client, key, 3)  # the first entries come after the position, and none was removed
    restored = open_reader(redis_server, started, streams=[key])
    assert ns(drain(restored)) == [0, 1, 2]
    restored.close()


def test_earliest_reports_the_first_entry_still_there(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 10)
    client.xtrim(key, maxlen=4, approximate=False)  # capped before the job started: not a loss
    reader = open_reader(redis_server, streams=[key])
    assert reader.start_positions() == {key: parse_id("1-7")}
    assert ns(drain(reader)) == [6, 7, 8, 9]
    reader.close()


def test_pattern_finds_the_streams_sorted(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    keys = [f"{prefix}:orders:{{{i}}}" for i in (5, 2, 7, 0, 1, 6, 3, 4)]
    for i, key in enumerate(keys):
        add(client, key, 2, start=10 * i)
    client.set(f"{prefix}:orders:{{x}}", "not a stream")
    add(client, f"{prefix}:other", 1)
    source = make_source(redis_server, pattern=f"{prefix}:orders:*")
    splits = source.splits()
    assert splits == sorted(keys)
    reader = source.create_reader(splits, {})
    assert sorted(ns(drain(reader))) == sorted(n for i in range(8) for n in (10 * i, 10 * i + 1))
    reader.close()
    with pytest.raises(SourceError, match=r"no stream matches pattern .*create the streams first"):
        make_source(redis_server, pattern=f"{prefix}:none:*").splits()
    add(client, f"{prefix}:orders:bad/key", 1)
    with pytest.raises(ConfigurationError, match=r"bad/key.*narrow pattern"):
        source.splits()


# -- event time and values --------------------------------------------------------------------------


def test_event_time_from_the_id_or_a_field(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    client.xadd(key, {"ts": "42"}, id="1700000000000-0")
    client.xadd(key, {"ts": "soon"}, id="1700000000001-5")
    client.xadd(key, {"other": "x"}, id="1700000000002-0")
    by_id = drain(open_reader(redis_server, streams=[key]))
    assert [r.timestamp for r in by_id] == [1700000000000, 1700000000001, 1700000000002]
    assert [r.timestamp for r in drain(open_reader(redis_server, streams=[key], timestamp="none"))] == [
        None
    ] * 3
    ok, bad, missing = drain(open_reader(redis_server, streams=[key], timestamp_field="ts"))
    assert ok.timestamp == 42 and ok.error is None and ok.value == {"ts": "42"}
    assert isinstance(bad.error, SourceError) and bad.value is None and bad.raw == {b"ts": b"soon"}
    assert "'ts'" in str(bad.error) and "1700000000001-5" in str(bad.error)
    assert isinstance(missing.error, SourceError) and "missing" in str(missing.error)
    assert missing.position == parse_id("1700000000002-0")


def test_undecodable_entries_become_error_records(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    client.xadd(key, {"json": orjson.dumps({"a": 1}), "n": "1"}, id="1-1")
    client.xadd(key, {"json": b"{not json", "n": "x"}, id="1-2")
    client.xadd(key, {"n": b"\xff"}, id="1-3")
    good, bad_json, no_json = drain(open_reader(redis_server, streams=[key], value_field="json"))
    assert good.value == {"a": 1} and good.error is None
    assert isinstance(bad_json.error, SerializationError) and bad_json.value is None
    assert bad_json.raw == {b"json": b"{not json", b"n": b"x"} and "1-2" in str(bad_json.error)
    assert isinstance(no_json.error, SerializationError) and "no field 'json'" in str(no_json.error)
    decoded = drain(open_reader(redis_server, streams=[key], value_decoder=lambda f: int(f[b"n"])))
    assert decoded[0].value == 1 and isinstance(decoded[1].error, SerializationError)
    assert "value_decoder" in str(decoded[1].error)
    plain = drain(open_reader(redis_server, streams=[key]))
    assert plain[1].value == {"json": "{not json", "n": "x"}
    assert isinstance(plain[2].error, SerializationError) and "UTF-8" in str(plain[2].error)
    assert plain[2].position == parse_id("1-3")  # the error record still moves the position


# -- lost entries -----------------------------------------------------------------------------------


def test_trim_past_a_restored_position_is_reported(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 10)
    client.xtrim(key, maxlen=5, approximate=False)  # 1-1 .. 1-5 gone; the job had read up to 1-3
    with pytest.raises(SourceError) as failure:
        open_reader(redis_server, {key: parse_id("1-3") + 1}, streams=[key])
    message = str(failure.value)
    assert (
        key in message
        and "checkpointed position 1-4" in message
        and "first entry still there is 1-6" in message
    )
    assert "MAXLEN" in message and "savepoint" in message


def test_trim_past_the_position_while_reading_is_reported_exactly(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 10)
    reader = open_reader(redis_server, streams=[key], batch_size=3)
    assert ns(reader.poll(3, 0)) == [0, 1, 2]
    client.xtrim(key, maxlen=5, approximate=False)  # 1-4 and 1-5 were never read
    with pytest.raises(
        SourceError, match=rf"{re.escape(key)}.*position 1-4 were trimmed .*\(2 entries after"
    ):
        reader.poll(3, 0)
    reader.close()


def test_trimming_what_was_read_is_not_a_loss(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 10)
    reader = open_reader(redis_server, streams=[key])
    assert len(drain(reader)) == 10
    client.xtrim(key, maxlen=2, approximate=False)
    client.xtrim(key, maxlen=0, approximate=False)  # empty, but everything had been read
    assert reader.poll(10, 0) == []
    reader.close()
    restored = open_reader(redis_server, {key: parse_id("1-10") + 1}, streams=[key])
    add(client, key, 1, start=10)
    assert ns(drain(restored)) == [10]
    add(client, key, 1, start=11)
    client.xtrim(key, maxlen=0, approximate=False)  # 1-12 trimmed before it was read
    with pytest.raises(SourceError, match=r"were trimmed .*first entry still there is none.*\(1 entry after"):
        restored.poll(10, 0)
    restored.close()


def test_deleting_an_unread_entry_is_reported(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 10)
    client.xdel(key, "1-2")  # before the reader started: not the job's loss
    reader = open_reader(redis_server, streams=[key], batch_size=3)
    assert ns(reader.poll(3, 0)) == [0, 2, 3]
    client.xdel(key, "1-7")
    with pytest.raises(SourceError, match=rf"{re.escape(key)}.*after the position 1-5 were deleted \(XDEL\)"):
        reader.poll(3, 0)
    reader.close()


def test_deleted_recreated_or_retyped_stream_is_reported(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    with pytest.raises(SourceError, match=rf"stream '{re.escape(key)}' .*does not exist.*XADD"):
        open_reader(redis_server, streams=[key])
    add(client, key, 3)
    reader = open_reader(redis_server, streams=[key], batch_size=2)
    assert ns(reader.poll(2, 0)) == [0, 1]
    assert ns(reader.poll(2, 0)) == [2]
    client.delete(key)
    with pytest.raises(SourceError, match=rf"stream '{re.escape(key)}' .*does not exist"):
        reader.poll(2, 0)
    client.xadd(key, {"n": "9"})  # created again: its entries-added count starts over
    with pytest.raises(SourceError, match=rf"stream '{re.escape(key)}' .*deleted and created again"):
        reader.poll(2, 0)
    client.delete(key)
    client.set(key, "a string now")
    with pytest.raises(SourceError, match=rf"stream '{re.escape(key)}' .*is not a stream"):
        reader.poll(2, 0)
    reader.close()


def test_unreachable_redis_names_the_url_without_the_password(prefix: str) -> None:
    port = find_free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    for options in ({"streams": [f"{prefix}:s"]}, {"pattern": f"{prefix}:*"}):
        source: RedisStreamSource[Any] = RedisStreamSource(RedisStreamSourceConfig(url=url, **options))
        with pytest.raises(SourceError) as failure:
            source.create_reader(source.splits(), {})
        message = str(failure.value)
        assert f"redis://***@127.0.0.1:{port}/0" in message and "hunter2" not in message
        assert "running" in message


# -- waiting and lag ----------------------------------------------------------------------------------


def test_unbounded_poll_waits_for_a_new_entry(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 1)
    reader = open_reader(redis_server, streams=[key], block_ms=2000)
    assert ns(drain(reader)) == [0]
    done = threading.Event()

    def add_once_blocked() -> None:
        watcher = redis_server.client()
        try:  # no sleep: add the entry once the reader is blocked in XREAD (or give up when done)
            while not done.is_set():
                if any(c.get("cmd") == "xread" for c in watcher.client_list()):
                    add(client=watcher, key=key, count=1, start=1)
                    return
        finally:
            watcher.close()

    thread = threading.Thread(target=add_once_blocked, daemon=True)
    thread.start()
    records: list[SourceRecord[Any]] = []
    while not records:
        records = reader.poll(10, 2.0)
    done.set()
    thread.join()
    assert ns(records) == [1]
    reader.close()


def test_lag_counts_the_entries_after_the_position(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 10)
    reader = open_reader(redis_server, streams=[key], batch_size=4)
    protocols: object = reader
    assert isinstance(protocols, LagReporter)
    start = reader.start_positions()[key]
    assert reader.lag({key: start}) == {key: 10}
    records = reader.poll(3, 0)
    position = (records[-1].position or 0) + 1
    assert reader.lag({key: position}) == {key: 7}
    assert reader.lag({key: start}) == {}  # not where the reader handed out up to: unknown
    drain(reader)
    assert reader.lag({key: parse_id("1-10") + 1}) == {key: 0}
    reader.close()


# -- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "exactly one of streams"),
        ({"streams": ["a"], "pattern": "a*"}, "exactly one of streams"),
        ({"streams": "orders"}, r"streams=\['orders'\]"),
        ({"streams": ["a/b"]}, r"'a/b'.*rename the stream"),
        ({"streams": [".."]}, r"'\.\.'"),
        ({"streams": [""]}, "non-empty"),
        ({"streams": ["a", "a"]}, "more than once"),
        ({"streams": ["a"], "start": "newest"}, "'earliest' or 'latest'"),
        ({"streams": ["a"], "batch_size": 0}, "batch_size must be an int >= 1"),
        ({"streams": ["a"], "block_ms": 20_000}, "shorter than timeout_s"),
        ({"streams": ["a"], "timestamp": "field"}, "timestamp_field"),
        ({"streams": ["a"], "timestamp": "none", "timestamp_field": "ts"}, "contradict"),
        ({"streams": ["a"], "value_field": "json", "value_decoder": dict}, "not both"),
        ({"streams": ["a"], "url": "localhost:6379"}, "redis://"),
    ],
)
def test_configuration_is_validated(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisStreamSourceConfig(**options)


def test_create_reader_refuses_foreign_splits_and_positions(redis_server: RedisServer) -> None:
    source = make_source(redis_server, streams=["a"])
    assert source.name == "redis:a" and source.splits() == ["a"]
    with pytest.raises(ConfigurationError, match="not a split"):
        source.create_reader(["b"], {})
    with pytest.raises(SourceError, match="not a stream entry id position"):
        source.create_reader(["a"], {"a": -1})


# -- a job ------------------------------------------------------------------------------------------


class CountPerUser(KeyedProcessFunction[str, dict[str, str], tuple[str, int, int]]):
    """Emits (user, n, how many entries of the user so far)."""

    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(
        self, value: dict[str, str], ctx: Context, out: Collector[tuple[str, int, int]]
    ) -> None:
        state = ctx.get_state(self.count)
        seen = (state.value() or 0) + 1
        state.update(seen)
        out.collect((value["user"], int(value["n"]), seen))


def counting_job(
    server: RedisServer, streams: list[str], storage: Path, sink: CollectionSink[Any], bounded: bool = False
) -> Job:
    job = Job(
        "redis-count",
        JobConfig(clock=ManualClock(), checkpoint=CheckpointConfig(storage=storage, interval_ms=60_000)),
    )
    source: RedisStreamSource[dict[str, str]] = make_source(
        server, streams=streams, bounded=bounded, batch_size=7
    )
    keyed = job.from_source(source).key_by(lambda v: v["user"], partitioned_by_source=True)
    keyed.process(CountPerUser(), uid="count").sink_to(sink)
    return job


def add_orders(client: redis.Redis, streams: list[str], ns_: range) -> None:
    """Entry ``n`` is of user ``u<n % 5>``; a user's entries all go to one stream (its partition)."""
    for n in ns_:
        client.xadd(streams[(n % 5) % len(streams)], {"user": f"u{n % 5}", "n": str(n)})


def assert_counted_once(outputs: list[tuple[str, int, int]], total: int) -> None:
    """The last count of every user is its number of entries among ``range(total)``."""
    last = {user: seen for user, _, seen in outputs}
    assert last == Counter(f"u{n % 5}" for n in range(total))


def test_job_counts_each_entry_once_across_a_crash(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    streams = [f"{prefix}:orders:{{{i}}}" for i in range(3)]
    add_orders(client, streams, range(30))
    sink: CollectionSink[tuple[str, int, int]] = CollectionSink()
    runner = counting_job(redis_server, streams, tmp_path, sink).runner()
    runner.run_until_idle()
    runner.checkpoint()
    add_orders(client, streams, range(30, 45))
    runner.run_until_idle()  # processed, but not checkpointed: lost with the crash
    assert sorted(n for _, n, _ in sink.values) == list(range(45))
    runner.close()  # a crash: no final checkpoint
    add_orders(client, streams, range(45, 60))  # while the job is down

    sink2: CollectionSink[tuple[str, int, int]] = CollectionSink()
    restored = counting_job(redis_server, streams, tmp_path, sink2).runner()
    restored.run_until_idle()
    restored.checkpoint()
    restored.close()
    assert sorted(n for _, n, _ in sink2.values) == list(range(30, 60))  # after the checkpoint, once each
    assert_counted_once(sink2.values, 60)


def test_bounded_job_runs_resume_at_their_checkpoint(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    streams = [f"{prefix}:a", f"{prefix}:b"]
    add_orders(client, streams, range(20))
    first: CollectionSink[tuple[str, int, int]] = CollectionSink()
    counting_job(redis_server, streams, tmp_path, first, bounded=True).run()
    assert sorted(n for _, n, _ in first.values) == list(range(20))
    add_orders(client, streams, range(20, 32))
    second: CollectionSink[tuple[str, int, int]] = CollectionSink()
    counting_job(redis_server, streams, tmp_path, second, bounded=True).run()
    assert sorted(n for _, n, _ in second.values) == list(range(20, 32))
    assert_counted_once(second.values, 32)


def test_undecodable_entry_is_dead_lettered_by_the_job(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    client.xadd(key, {"json": b'{"user": "u1"}'}, id="1-1")
    client.xadd(key, {"json": b"{broken"}, id="1-2")
    client.xadd(key, {"json": b'{"user": "u1"}'}, id="1-3")
    out: CollectionSink[str] = CollectionSink()
    dead: CollectionSink[DeadLetter] = CollectionSink("dead")
    job = Job("redis-dead-letters", JobConfig(error_policy=ErrorPolicy.dead_letter(dead)))
    source: RedisStreamSource[dict[str, str]] = make_source(
        redis_server, streams=[key], value_field="json", bounded=True
    )
    job.from_source(source).map(lambda v: v["user"]).sink_to(out)
    job.run()
    assert out.values == ["u1", "u1"]
    (letter,) = dead.values
    assert letter.split == key and letter.position == parse_id("1-2")
    assert letter.record == {b"json": b"{broken"} and letter.error_type == "SerializationError"
