"""The job the crash tests run as worker processes (``eventapp run tests.crash.eos_job:build_job``).

Configured by environment variables (``CRASH_*``). Input records are JSON
``{"k": key, "id": unique int, "ts": event time}``; malformed input goes to the dead-letter topic.
Per record it emits ``{"t": "count", "k", "id", "n"}`` (the key's running count); an event-time timer
per key and 1-second window emits ``{"t": "window", "k", "w", "c"}`` (records of the key in the
window); a processing-time timer ~50 ms after a key's first pending record emits
``{"t": "flush", "k", "ids"}`` for the ids buffered in list state since the last flush.
With ``CRASH_SHUFFLE=1`` the ``key_by`` shuffles through a repartition topic (the input is then not
partitioned by key); otherwise it is declared partitioned by the source.
The source is bounded (the job exits 0 at the end of its input) unless ``CRASH_BOUNDED=0`` or
``CRASH_GROUP_ASSIGNMENT=1`` (the consumer group assigns the partitions: ``eventapp run --group``).
With ``CRASH_REDIS_URL`` the counter's outputs also go to an exactly-once Redis sink (keys under
``CRASH_REDIS_PREFIX``, see :func:`redis_commands`).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import orjson

from eventapp import (
    AggregateFunction,
    CheckpointConfig,
    CheckpointingMode,
    Collector,
    Context,
    ErrorPolicy,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ListStateDescriptor,
    MapStateDescriptor,
    OnTimerContext,
    RuntimeContext,
    TimeDomain,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
)
from eventapp.statebackends import RocksDBStateBackend
from eventapp.windows import ProcessWindowFunction, TimeWindow, TumblingEventTimeWindows, WindowContext

if TYPE_CHECKING:
    from eventapp.connectors.redis.commands import RedisCommand

WINDOW_MS = 1_000
FLUSH_DELAY_MS = 50
UID = "crash-counter"


class CrashCounter(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    count = ValueStateDescriptor[int]("count")
    windows = MapStateDescriptor[int, int]("windows")
    pending = ListStateDescriptor[int]("pending")
    flush_at = ValueStateDescriptor[int]("flush-at")

    def __init__(self, slow_ms: float = 0.0) -> None:
        self.slow_s = slow_ms / 1000

    def open(self, ctx: RuntimeContext) -> None:
        self.count_state = ctx.get_state(self.count)
        self.window_state = ctx.get_state(self.windows)
        self.pending_state = ctx.get_state(self.pending)
        self.flush_state = ctx.get_state(self.flush_at)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[dict[str, Any]]) -> None:
        if self.slow_s:
            time.sleep(self.slow_s)
        key = ctx.current_key
        n = (self.count_state.value() or 0) + 1
        self.count_state.update(n)
        out.collect({"t": "count", "k": key, "id": value["id"], "n": n})
        assert ctx.timestamp is not None
        window_end = (ctx.timestamp // WINDOW_MS + 1) * WINDOW_MS
        self.window_state.put(window_end, (self.window_state.get(window_end) or 0) + 1)
        ctx.timer_service.register_event_time_timer(window_end)
        self.pending_state.add(value["id"])
        if self.flush_state.value() is None:
            due = ctx.timer_service.current_processing_time() + FLUSH_DELAY_MS
            ctx.timer_service.register_processing_time_timer(due)
            self.flush_state.update(due)

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[dict[str, Any]]) -> None:
        key = ctx.current_key
        if ctx.time_domain is TimeDomain.EVENT_TIME:
            c = self.window_state.get(timestamp)
            self.window_state.remove(timestamp)
            out.collect({"t": "window", "k": key, "w": timestamp, "c": c})
        else:
            ids = self.pending_state.get()
            self.pending_state.clear()
            self.flush_state.clear()
            out.collect({"t": "flush", "k": key, "ids": ids})


class CountRecords(AggregateFunction[Any, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, accumulator: int) -> int:
        return accumulator + 1

    def get_result(self, accumulator: int) -> int:
        return accumulator


class WindowCount(ProcessWindowFunction[int, dict[str, Any], str, TimeWindow]):
    def process(
        self, key: str, context: WindowContext[TimeWindow], elements: Any, out: Collector[dict[str, Any]]
    ) -> None:
        for count in elements:
            out.collect({"t": "twindow", "k": key, "w": context.window.end, "c": count})


def redis_commands(prefix: str) -> Any:
    """Per count: ``INCRBY <prefix>:hits:<k>`` (a duplicate shows) and an entry ``{id, n}`` in the
    stream ``<prefix>:ids``; per window: ``HSET <prefix>:windows:<k> <w> <c>`` and
    ``INCRBY <prefix>:windowed <c>``; flushes write nothing."""
    # Imported here, not at the top: the Redis connector (redis-py) costs ~0.25 s of CPU to import,
    # in each of the hundreds of worker processes the Kafka-only crash tests start.
    from eventapp.connectors.redis.commands import HSet, IncrBy, XAdd

    def commands(value: dict[str, Any]) -> list[RedisCommand] | None:
        kind, key = value["t"], value["k"]
        if kind == "count":
            return [
                IncrBy(f"{prefix}:hits:{key}"),
                XAdd(f"{prefix}:ids", {"id": value["id"], "n": value["n"]}),
            ]
        if kind == "window":
            return [
                HSet(f"{prefix}:windows:{key}", {str(value["w"]): value["c"]}),
                IncrBy(f"{prefix}:windowed", value["c"]),
            ]
        return None

    return commands


def build_job() -> Job:
    env = os.environ
    bootstrap = env["CRASH_BOOTSTRAP"]
    exactly_once = env.get("CRASH_MODE", "exactly_once") == "exactly_once"
    guarantee = DeliveryGuarantee.EXACTLY_ONCE if exactly_once else DeliveryGuarantee.AT_LEAST_ONCE
    job_name = env["CRASH_JOB"]
    group = env.get("CRASH_GROUP_ASSIGNMENT") == "1"
    source = KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=bootstrap,
            topics=[env["CRASH_INPUT"]],
            group_id=env.get("CRASH_GROUP") or f"{job_name}-group",
            value_deserializer="json",
            # CRASH_BOUNDED=0: never finish (a soak writes input while it runs, so the job would
            # otherwise stop the first time it catches up with it).
            bounded=env.get("CRASH_BOUNDED", "1") != "0" and not group,
            checkpoint_topic=env["CRASH_CHECKPOINT_TOPIC"],
            # CRASH_GROUP_ASSIGNMENT=1: the consumer group assigns the partitions (eventapp run --group).
            group_assignment=group,
            consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500} if group else {},
        )
    )
    sink = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=bootstrap,
            topic=env["CRASH_OUTPUT"],
            key_selector=lambda v: str(v["k"]),
            delivery_guarantee=guarantee,
        )
    )
    dead_letters = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=bootstrap,
            topic=env["CRASH_DLQ"],
            value_serializer=lambda d: orjson.dumps(d.to_dict()),
            delivery_guarantee=guarantee,
        )
    )
    job = Job(
        job_name,
        JobConfig(
            state_backend=RocksDBStateBackend(env["CRASH_STATE_DIR"]),
            checkpoint=CheckpointConfig(
                storage=env["CRASH_CHECKPOINT_DIR"],
                interval_ms=int(env.get("CRASH_CHECKPOINT_INTERVAL_MS", "300")),
                mode=CheckpointingMode.EXACTLY_ONCE if exactly_once else CheckpointingMode.AT_LEAST_ONCE,
                asynchronous=True if env.get("CRASH_ASYNC_CHECKPOINTS") == "1" else None,
            ),
            error_policy=ErrorPolicy.dead_letter(dead_letters),
            max_batch_records=500,
            poll_timeout_s=0.05,
        ),
    )
    keyed = job.from_source(
        source,
        WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v["ts"]),
    ).key_by(lambda v: v["k"], partitioned_by_source=env.get("CRASH_SHUFFLE", "0") != "1")
    counted = keyed.process(CrashCounter(float(env.get("CRASH_SLOW_MS", "0"))), uid=UID)
    counted.sink_to(sink)
    if env.get("CRASH_REDIS_URL"):
        from eventapp.connectors.redis.sink import RedisSink
        from eventapp.connectors.redis.sink_config import RedisSinkConfig

        prefix = env["CRASH_REDIS_PREFIX"]
        counted.sink_to(
            RedisSink(
                RedisSinkConfig(
                    url=env["CRASH_REDIS_URL"], mapper=redis_commands(prefix), token_prefix=f"{prefix}:token:"
                )
            )
        )
    windows = keyed.window(TumblingEventTimeWindows.of(WINDOW_MS))
    windows.aggregate(CountRecords(), WindowCount(), uid="crash-windows").sink_to(sink)
    return job
