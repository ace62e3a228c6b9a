"""Event time over Redis streams: a stream that receives nothing holds the job's watermark back,
unless the watermark strategy declares idleness (Flink's ``withIdleness``): then the active streams
drive event-time timers on their own."""

from __future__ import annotations

import uuid

import pytest

from eventapp import (
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ManualClock,
    OnTimerContext,
    WatermarkStrategy,
)
from eventapp.connectors.collection import CollectionSink
from eventapp.connectors.redis import RedisStreamSource, RedisStreamSourceConfig
from tests.support.redis_server import RedisServer

T0 = 1_780_000_000_000


class RemindAfterASecond(KeyedProcessFunction[str, dict[str, str], str]):
    def process_element(self, value: dict[str, str], ctx: Context, out: Collector[str]) -> None:
        assert ctx.timestamp is not None
        ctx.timer_service.register_event_time_timer(ctx.timestamp + 1_000)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[str]) -> None:
        out.collect(f"{ctx.current_key}@{timestamp}")


@pytest.mark.parametrize("idleness_ms", [None, 5_000], ids=["no-idleness", "idleness"])
def test_an_idle_stream_holds_event_time_back_unless_idleness_is_declared(
    redis_server: RedisServer, idleness_ms: int | None
) -> None:
    prefix = f"idle:{uuid.uuid4().hex[:8]}"
    active, idle = f"{prefix}:active", f"{prefix}:idle"
    client = redis_server.client()
    client.xadd(idle, {"k": "b", "ts": T0})  # one early entry: then the stream goes quiet
    for i in range(5):
        client.xadd(active, {"k": "a", "ts": T0 + i * 1_000})
    client.close()
    strategy = WatermarkStrategy.for_monotonous_timestamps()
    if idleness_ms is not None:
        strategy = strategy.with_idleness(idleness_ms)
    clock = ManualClock(0)
    sink: CollectionSink[str] = CollectionSink()
    job = Job(f"idle-{idleness_ms}", JobConfig(clock=clock, poll_timeout_s=0.01))
    source = RedisStreamSource(
        RedisStreamSourceConfig(
            url=redis_server.url, streams=[active, idle], timestamp_field="ts", block_ms=10
        )
    )
    job.from_source(source, strategy).key_by(lambda v: v["k"], partitioned_by_source=True).process(
        RemindAfterASecond(), uid="remind"
    ).sink_to(sink)
    runner = job.runner()
    runner.run_until_idle()
    assert sink.values == []  # the idle stream's watermark (T0) holds the job's back
    clock.advance(10_000)  # longer than the idleness timeout, in processing time
    client = redis_server.client()
    client.xadd(active, {"k": "a", "ts": T0 + 5_000})  # the active stream goes on, the other does not
    client.close()
    runner.run_until_idle()
    runner.close()
    if idleness_ms is None:
        assert sink.values == []
    else:  # the idle stream no longer counts: the active one's watermark (T0 + 5 s - 1) fires
        assert sorted(sink.values) == sorted(
            [f"b@{T0 + 1_000}"] + [f"a@{T0 + i * 1_000}" for i in range(1, 5)]
        )
