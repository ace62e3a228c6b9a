"""The Redis stream source's consumer-group mode against a real redis-server: entries delivered
through the group, acknowledged only once a checkpoint committed, a crashed job's pending entries
read again from the consumer's pending list (each entry counted once), abandoned entries of another
consumer claimed, entries another reader of the group took still read, deleted pending entries
reported, bounded reads, and the configuration checks."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from eventapp import (
    CheckpointConfig,
    Collector,
    ConfigurationError,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ManualClock,
    SourceError,
    ValueStateDescriptor,
)
from eventapp.checkpoint.commit import CommittedCheckpoint
from eventapp.connectors.collection import CollectionSink
from eventapp.connectors.redis.group_reader import RedisGroupStreamReader
from eventapp.connectors.redis.source import RedisStreamSource
from eventapp.connectors.redis.source_config import RedisStreamSourceConfig
from eventapp.connectors.redis.stream_ids import parse_id
from eventapp.connectors.redis.stream_reader import RedisStreamReader
from eventapp.source import SourceRecord
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

GROUP = "jobs"
ME = "eventapp"


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A unique key prefix without glob or path characters."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]
    return f"eg:{name}:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    yield c
    c.close()


def make_source(server: RedisServer, prefix: str, **options: Any) -> RedisStreamSource[Any]:
    options.setdefault("group", GROUP)
    return RedisStreamSource(
        RedisStreamSourceConfig(url=server.url, commit_prefix=f"{prefix}:committed:", **options)
    )


def open_reader(
    server: RedisServer, prefix: str, positions: dict[str, int] | None = None, **options: Any
) -> RedisStreamReader:
    source = make_source(server, prefix, **options)
    return source.create_reader(source.splits(), positions or {})


def drain(reader: RedisStreamReader, max_records: int = 100) -> list[SourceRecord[Any]]:
    """Every record there is now (until a poll returns nothing, or a bounded reader finished)."""
    out: list[SourceRecord[Any]] = []
    while True:
        records = reader.poll(max_records, 0)
        out.extend(records)
        if not records or reader.is_finished():
            return out


def add(client: redis.Redis, key: str, count: int, start: int = 0) -> None:
    """``count`` entries ``{"n": i}`` with ids ``1-<i+1>``, for ``i`` from ``start``."""
    with client.pipeline(transaction=False) as pipe:
        for i in range(start, start + count):
            pipe.xadd(key, {"n": str(i)}, id=f"1-{i + 1}")
        pipe.execute()


def ns(records: list[SourceRecord[Any]]) -> list[int]:
    return [int(r.value["n"]) for r in records]


def pending(client: redis.Redis, key: str, group: str = GROUP) -> dict[str, tuple[str, int]]:
    """``{entry id: (consumer, times delivered)}`` of the group's pending entries of ``key``."""
    entries = client.xpending_range(key, group, "-", "+", 10_000)
    return {e["message_id"].decode(): (e["consumer"].decode(), int(e["times_delivered"])) for e in entries}


def group_info(client: redis.Redis, key: str, group: str = GROUP) -> dict[str, Any]:
    (info,) = [g for g in client.xinfo_groups(key) if g["name"] == group.encode()]
    return info


def ids(first: int, last: int) -> list[str]:
    """Entry ids ``1-<first>`` .. ``1-<last>``."""
    return [f"1-{i}" for i in range(first, last + 1)]


def wait_idle(client: redis.Redis, key: str, group: str, idle_ms: int, deadline_s: float = 10.0) -> None:
    """Until every pending entry of ``group`` has been idle for more than ``idle_ms`` (no sleeping
    for a fixed time: XPENDING is asked until it says so, or the deadline passes)."""
    deadline = time.monotonic() + deadline_s
    while True:
        entries = client.xpending_range(key, group, "-", "+", 10_000)
        if entries and all(int(e["time_since_delivered"]) > idle_ms for e in entries):
            return
        assert time.monotonic() < deadline, f"pending entries of {key} never became idle: {entries}"
        time.sleep(0.001)  # yield the CPU; the loop condition is what synchronizes


# -- reading through the group ----------------------------------------------------------------------


def test_entries_are_read_through_the_group(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    a, b = f"{prefix}:a", f"{prefix}:b"
    add(client, a, 10)
    add(client, b, 4)
    reader = open_reader(redis_server, prefix, streams=[a, b], batch_size=3)
    assert isinstance(reader, RedisGroupStreamReader)
    assert group_info(client, a)["last-delivered-id"] == b"0-0"  # created at earliest, nothing read
    records = drain(reader, 5)
    assert ns([r for r in records if r.split == a]) == list(range(10))
    assert ns([r for r in records if r.split == b]) == list(range(4))
    for key, count in ((a, 10), (b, 4)):
        info = group_info(client, key)
        assert info["last-delivered-id"] == f"1-{count}".encode() and info["pending"] == count
        assert pending(client, key) == {i: (ME, 1) for i in ids(1, count)}
    assert [c["name"] for c in client.xinfo_consumers(a, GROUP)] == [ME.encode()]
    reader.close()


def test_the_group_is_created_just_before_the_split_start(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    restored, latest, new = f"{prefix}:restored", f"{prefix}:latest", f"{prefix}:new"
    add(client, restored, 6)
    add(client, latest, 3)
    reader = open_reader(redis_server, prefix, {restored: parse_id("1-4")}, streams=[restored])
    assert group_info(client, restored)["last-delivered-id"] == b"1-3"
    assert ns(drain(reader)) == [3, 4, 5]
    reader.close()
    reader = open_reader(redis_server, prefix, streams=[latest], start="latest")
    assert group_info(client, latest)["last-delivered-id"] == b"1-3"
    assert reader.start_positions() == {latest: parse_id("1-3") + 1}
    add(client, latest, 2, start=3)
    assert ns(drain(reader)) == [3, 4]
    reader.close()
    reader = open_reader(redis_server, prefix, streams=[new])  # MKSTREAM: the stream is created
    assert client.exists(new) and group_info(client, new)["last-delivered-id"] == b"0-0"
    add(client, new, 2)
    assert ns(drain(reader)) == [0, 1]
    reader.close()


def test_an_existing_group_behind_the_position_is_acknowledged_up_to_it(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 8)
    client.xgroup_create(key, GROUP, id="0")
    client.xreadgroup(GROUP, ME, {key: ">"}, count=2)  # 1-1, 1-2: pending, below the position
    reader = open_reader(redis_server, prefix, {key: parse_id("1-6")}, streams=[key], batch_size=2)
    assert ns(drain(reader)) == [5, 6, 7]  # nothing below the position handed out again
    assert pending(client, key) == {i: (ME, 1) for i in ids(6, 8)}  # 1-1 .. 1-5 acknowledged
    reader.close()


# -- acknowledgement after the commit ---------------------------------------------------------------


def test_entries_are_acknowledged_only_after_their_checkpoint_committed(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 2500)
    source = make_source(redis_server, prefix, streams=[key], batch_size=1000)
    point = source.create_commit_point("job", key, True)
    assert (point.group, point.consumer) == (GROUP, ME)
    assert point.recover() is None
    reader = source.create_reader([key], {})
    records = drain(reader, 1000)
    assert len(records) == 2500
    assert len(pending(client, key)) == 2500  # read, nothing acknowledged
    position = (records[2199].position or 0) + 1  # the job processed up to 1-2200
    point.commit(CommittedCheckpoint(1, "chk-1", position))
    assert sorted(pending(client, key), key=parse_id) == ids(2201, 2500)  # in batches of 1000
    point.commit(CommittedCheckpoint(2, "chk-2", position))  # nothing more below it
    assert len(pending(client, key)) == 300
    point.commit(CommittedCheckpoint(3, "chk-3", (records[-1].position or 0) + 1))
    assert pending(client, key) == {}
    reader.close()


def test_a_failed_acknowledgement_does_not_fail_the_commit(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 3)
    source = make_source(redis_server, prefix, streams=[key])
    point = source.create_commit_point("job", key, True)
    point.recover()
    reader = source.create_reader([key], {})
    assert len(drain(reader)) == 3
    client.xgroup_destroy(key, GROUP)
    with capture_logs() as logs:
        point.commit(CommittedCheckpoint(1, "chk-1", parse_id("1-3") + 1))
    (warning,) = [e for e in logs if e["event"] == "redis.commit_point.ack_failed"]
    assert warning["log_level"] == "warning" and warning["up_to"] == "1-3"
    assert "NOGROUP" in warning["error"] and "next commit" in warning["effect"]
    assert source.create_commit_point("job", key, True).recover() == CommittedCheckpoint(
        1, "chk-1", parse_id("1-3") + 1
    )
    add(client, key, 1, start=3)
    with pytest.raises(SourceError, match=rf"{re.escape(key)}.*no consumer group 'jobs'.*restart the job"):
        reader.poll(10, 0)
    reader.close()


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
    server: RedisServer, prefix: str, streams: list[str], storage: Path, sink: CollectionSink[Any]
) -> Job:
    job = Job(
        "redis-group-count",
        JobConfig(clock=ManualClock(), checkpoint=CheckpointConfig(storage=storage, interval_ms=60_000)),
    )
    source: RedisStreamSource[dict[str, str]] = make_source(server, prefix, streams=streams, batch_size=7)
    keyed = job.from_source(source).key_by(lambda v: v["user"], partitioned_by_source=True)
    keyed.process(CountPerUser(), uid="count").sink_to(sink)
    return job


def add_orders(client: redis.Redis, streams: list[str], ns_: range) -> None:
    """Entry ``n`` (id ``1-<n+1>``) is of user ``u<n % 5>``, in the stream of that user."""
    for n in ns_:
        client.xadd(streams[(n % 5) % len(streams)], {"user": f"u{n % 5}", "n": str(n)}, id=f"1-{n + 1}")


def test_a_crashed_job_reads_its_pending_entries_again_and_counts_each_once(
    redis_server: RedisServer, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    streams = [f"{prefix}:orders:{{{i}}}" for i in range(3)]
    add_orders(client, streams, range(30))
    sink: CollectionSink[tuple[str, int, int]] = CollectionSink()
    runner = counting_job(redis_server, prefix, streams, tmp_path, sink).runner()
    runner.run_until_idle()
    assert sum(len(pending(client, s)) for s in streams) == 30  # delivered, not yet committed
    runner.checkpoint()
    assert all(pending(client, s) == {} for s in streams)  # all acknowledged by the commit
    add_orders(client, streams, range(30, 45))
    runner.run_until_idle()  # processed and delivered, but not checkpointed: lost with the crash
    runner.close()  # a crash: no final checkpoint
    before_crash = {s: pending(client, s) for s in streams}
    assert sorted(parse_id(i) for p in before_crash.values() for i in p) == [
        parse_id(f"1-{n + 1}") for n in range(30, 45)
    ]
    add_orders(client, streams, range(45, 60))  # while the job is down

    sink2: CollectionSink[tuple[str, int, int]] = CollectionSink()
    restored = counting_job(redis_server, prefix, streams, tmp_path, sink2).runner()
    restored.run_until_idle()
    assert sorted(n for _, n, _ in sink2.values) == list(range(30, 60))  # after the checkpoint, once each
    for stream in streams:
        now = pending(client, stream)
        # the entries delivered before the crash were read again from the consumer's pending list
        assert {i: now[i] for i in before_crash[stream]} == dict.fromkeys(before_crash[stream], (ME, 2))
        assert {i: d for i, (_, d) in now.items() if i not in before_crash[stream]} == {
            i: 1 for i in now if i not in before_crash[stream]
        }
    assert sum(len(pending(client, s)) for s in streams) == 30
    restored.checkpoint()
    restored.close()
    assert all(pending(client, s) == {} for s in streams)
    last = {user: seen for user, _, seen in sink2.values}
    assert last == Counter(f"u{n % 5}" for n in range(60))


# -- other consumers of the group -------------------------------------------------------------------


def test_entries_abandoned_by_another_consumer_are_claimed(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 6)
    client.xgroup_create(key, GROUP, id="0")
    client.xreadgroup(GROUP, "crashed", {key: ">"}, count=4)  # 1-1 .. 1-4 pending at "crashed"
    wait_idle(client, key, GROUP, idle_ms=1)
    with capture_logs() as logs:
        reader = open_reader(redis_server, prefix, {key: parse_id("1-3")}, streams=[key], claim_idle_ms=1)
    (claimed,) = [e for e in logs if e["event"] == "redis.source.group_claimed"]
    assert claimed["claimed"] == 4 and claimed["from_consumers"] == ["crashed"]
    assert pending(client, key) == {i: (ME, 2) for i in ids(1, 4)}  # taken over when the reader opened
    assert ns(drain(reader)) == [2, 3, 4, 5]  # from the position: 1-1 and 1-2 are committed
    assert pending(client, key) == {"1-3": (ME, 3), "1-4": (ME, 3), "1-5": (ME, 1), "1-6": (ME, 1)}
    reader.close()


def test_entries_another_consumer_holds_are_read_all_the_same(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 6)
    client.xgroup_create(key, GROUP, id="0")
    client.xreadgroup(GROUP, "busy", {key: ">"}, count=3)  # not idle long enough to be claimed
    with capture_logs() as logs:
        reader = open_reader(redis_server, prefix, streams=[key])  # claim_idle_ms: 60 s
        records = drain(reader)
    assert ns(records) == [0, 1, 2, 3, 4, 5]  # the job's position decides, not the group
    assert any(e["event"] == "redis.source.group_delivered_elsewhere" for e in logs)
    assert pending(client, key) == {
        **{i: ("busy", 1) for i in ids(1, 3)},
        **{i: (ME, 1) for i in ids(4, 6)},
    }
    reader.close()


def test_a_reader_of_the_group_taking_entries_past_the_position_loses_none(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 10)
    reader = open_reader(redis_server, prefix, streams=[key], batch_size=3)
    first = reader.poll(3, 0)
    assert ns(first) == [0, 1, 2]
    stolen = client.xreadgroup(GROUP, ME, {key: ">"}, count=4)  # a zombie of the job: 1-4 .. 1-7
    assert [i.decode() for i, _ in stolen[0][1]] == ids(4, 7)
    with capture_logs() as logs:
        rest = drain(reader, 3)
    assert ns(rest) == list(range(3, 10))  # each once, in order
    assert any(e["event"] == "redis.source.group_moved_on" for e in logs)
    assert sorted(pending(client, key), key=parse_id) == ids(1, 10)
    reader.close()


# -- lost entries -----------------------------------------------------------------------------------


def test_a_deleted_pending_entry_is_reported(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 5)
    reader = open_reader(redis_server, prefix, streams=[key])
    assert len(drain(reader)) == 5  # delivered, never committed
    reader.close()
    client.xdel(key, "1-3")
    # A fresh start (no checkpoint): the stream check does not count XDELs from before the start,
    # but the pending list shows that an entry the job was given is gone.
    again = open_reader(redis_server, prefix, streams=[key])
    with pytest.raises(SourceError) as failure:
        again.poll(10, 0)
    message = str(failure.value)
    assert key in message and "entry 1-3" in message and "deleted (XDEL)" in message
    assert "savepoint" in message
    again.close()
    # Restored before it: reported when the reader opens.
    with pytest.raises(SourceError, match=rf"{re.escape(key)}.*deleted \(XDEL\).*1-3"):
        open_reader(redis_server, prefix, {key: parse_id("1-2")}, streams=[key])
    # Restored after it: committed, so not a loss; it is acknowledged.
    after = open_reader(redis_server, prefix, {key: parse_id("1-4")}, streams=[key])
    assert ns(drain(after)) == [3, 4]
    assert sorted(pending(client, key)) == ["1-4", "1-5"]
    after.close()


def test_a_deleted_entry_pending_at_another_consumer_is_reported(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 4)
    client.xgroup_create(key, GROUP, id="0")
    client.xreadgroup(GROUP, "crashed", {key: ">"}, count=3)
    client.xdel(key, "1-2")
    wait_idle(client, key, GROUP, idle_ms=1)
    with pytest.raises(SourceError) as failure:
        open_reader(redis_server, prefix, streams=[key], claim_idle_ms=1)
    message = str(failure.value)
    assert key in message and "entry 1-2" in message and "XAUTOCLAIM" in message


def test_trimming_unread_entries_is_reported_in_group_mode(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 10)
    reader = open_reader(redis_server, prefix, streams=[key], batch_size=3)
    assert ns(reader.poll(3, 0)) == [0, 1, 2]
    client.xtrim(key, maxlen=5, approximate=False)  # 1-4 and 1-5 were never read
    with pytest.raises(
        SourceError, match=rf"{re.escape(key)}.*position 1-4 were trimmed .*\(2 entries after"
    ):
        reader.poll(3, 0)
    reader.close()


# -- bounded and waiting ----------------------------------------------------------------------------


def test_bounded_group_read_ends_at_the_last_entry_when_the_reader_was_created(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    full, empty = f"{prefix}:full", f"{prefix}:empty"
    add(client, full, 5)
    client.xgroup_create(empty, "other", id="$", mkstream=True)
    reader = open_reader(redis_server, prefix, streams=[full, empty], bounded=True, batch_size=2)
    assert reader.finished_splits() == [empty]
    add(client, full, 2, start=5)  # after the reader's end
    assert ns(drain(reader)) == [0, 1, 2, 3, 4]
    assert sorted(reader.finished_splits()) == sorted([full, empty]) and reader.is_finished()
    reader.close()
    # A restored bounded run: pending entries first, up to its end.
    add(client, full, 1, start=7)
    again = open_reader(redis_server, prefix, {full: parse_id("1-5") + 1}, streams=[full], bounded=True)
    assert ns(drain(again)) == [5, 6, 7] and again.is_finished()
    again.close()


def test_unbounded_group_poll_waits_for_a_new_entry(
    redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    add(client, key, 1)
    reader = open_reader(redis_server, prefix, streams=[key], block_ms=2000)
    assert ns(drain(reader)) == [0]
    done = threading.Event()

    def add_once_blocked() -> None:
        watcher = redis_server.client()
        try:  # no sleep: add the entry once the reader is blocked in XREAD (or give up when done)
            while not done.is_set():
                if any(c.get("cmd") == "xread" for c in watcher.client_list()):
                    add(watcher, key, 1, start=1)
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
    assert ns(records) == [1] and pending(client, key) == {"1-1": (ME, 1), "1-2": (ME, 1)}
    reader.close()


# -- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"group": ""}, "group must be a consumer group name"),
        ({"group": 7}, "group must be a consumer group name"),
        ({"group": "g", "consumer": ""}, "consumer must be a consumer name.*one name per job"),
        ({"group": "g", "claim_idle_ms": 0}, r"claim_idle_ms must be an int >= 1"),
        ({"group": "g", "claim_idle_ms": True}, r"claim_idle_ms must be an int >= 1"),
        ({"group": "g", "claim_idle_ms": 1.5}, r"claim_idle_ms must be an int >= 1"),
        ({"consumer": "worker-1"}, r"apply only to a consumer group: set group="),
        ({"claim_idle_ms": 5}, r"apply only to a consumer group: set group="),
    ],
)
def test_group_configuration_is_validated(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisStreamSourceConfig(streams=["a"], **options)


def test_group_configuration_defaults() -> None:
    config = RedisStreamSourceConfig(streams=["a"], group="g")
    assert (config.group, config.consumer, config.claim_idle_ms) == ("g", "eventapp", 60_000)
    assert RedisStreamSourceConfig(streams=["a"]).group is None
    source: RedisStreamSource[Any] = RedisStreamSource(RedisStreamSourceConfig(streams=["a"]))
    point = source.create_commit_point("job", "a", True)
    assert (point.group, point.consumer) == (None, None)
