"""The reference workload of ``bench_kafka``: per-card count and sum, eventapp against a raw loop.

Input: JSON messages ``{"card": "<uuid>", "amount": 1717.12, "ts": 1700000009999}`` (87 B on
average), Kafka key = card id. Output, for every message: the card's updated aggregate
``{"card", "count", "sum", "ts"}`` keyed by card, written exactly-once.

- :func:`build_worker_job` is eventapp's side (``eventapp run benchmarks.kafka_cards:build_worker_job``,
  configured by ``BENCH_*`` environment variables): KafkaSource -> key_by(card) ->
  :class:`CardAggregate` (count and sum in one RocksDB ValueState) -> KafkaSink(EXACTLY_ONCE).
- :func:`benchmarks.kafka_raw.run_raw` is the raw loop it is compared with.
- :func:`audit_cards` checks a run's committed output against what the input implies.
"""

from __future__ import annotations

import os
import random
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from eventapp import (
    CheckpointConfig,
    CheckpointingMode,
    Collector,
    Context,
    DataStream,
    Job,
    JobConfig,
    KeyedProcessFunction,
    RuntimeContext,
    ValueStateDescriptor,
)
from eventapp.connectors.kafka import (
    DeliveryGuarantee,
    KafkaSink,
    KafkaSinkConfig,
    KafkaSource,
    KafkaSourceConfig,
)
from eventapp.connectors.kafka.quirks import QUIRKS_ENVIRONMENT_VARIABLE
from eventapp.connectors.kafka.txnlog import audit_topic
from eventapp.statebackends import RocksDBStateBackend

from .kafka_common import produce
from .kafka_events import CheckpointEvent

CARD_UID = "card-aggregate"
BASE_TS = 1_700_000_000_000
#: The raw loop's RocksDB value: count (int64), sum (float64).
AGGREGATE = struct.Struct("<qd")


# -- the workload --------------------------------------------------------------------------------------


def card_ids(cards: int, seed: int = 7) -> list[str]:
    """``cards`` deterministic UUID-shaped card ids."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(cards)]


def card_payload(card: str, amount: float, ts: int) -> bytes:
    """One input message (JSON with spaces, as ``json.dumps`` writes it: 87 B on average)."""
    return b'{"card": "%s", "amount": %r, "ts": %d}' % (card.encode(), amount, ts)


@dataclass
class Expected:
    """What the output must hold: per card, its number of messages and the sum of their amounts
    (added in input order, as both sides do, so the float is exact)."""

    counts: dict[str, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    messages: int = 0
    payload_bytes: int = 0

    def add(self, card: str, amount: float, size: int) -> None:
        self.counts[card] = self.counts.get(card, 0) + 1
        self.sums[card] = self.sums.get(card, 0.0) + amount
        self.messages += 1
        self.payload_bytes += size


def card_messages(
    n: int, cards: list[str], expected: Expected, seed: int = 11
) -> Iterator[tuple[str, bytes]]:
    """``n`` messages over ``cards`` (uniformly random card, amount 1-2000 with 2 decimals)."""
    rng = random.Random(seed)
    choose, uniform = rng.randrange, rng.uniform
    count = len(cards)
    for i in range(n):
        card = cards[choose(count)]
        amount = round(uniform(1, 2000), 2)
        payload = card_payload(card, amount, BASE_TS + i)
        expected.add(card, amount, len(payload))
        yield card, payload


def produce_cards(bootstrap: str, topic: str, n: int, cards: list[str]) -> Expected:
    """Produce the input (batched; not part of any measurement) and return what it implies."""
    expected = Expected()
    produce(bootstrap, topic, card_messages(n, cards, expected))
    return expected


# -- eventapp's side ---------------------------------------------------------------------------------


class CardAggregate(KeyedProcessFunction[str, dict[str, Any], dict[str, Any]]):
    """Keeps ``[count, sum]`` per card in keyed state and emits the updated aggregate per message."""

    aggregate = ValueStateDescriptor[list[Any]]("aggregate")

    def open(self, ctx: RuntimeContext) -> None:
        self.state = ctx.get_state(self.aggregate)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector[dict[str, Any]]) -> None:
        current = self.state.value()
        if current is None:
            count, total = 1, 0.0 + value["amount"]
        else:
            count, total = current[0] + 1, current[1] + value["amount"]
        self.state.update([count, total])
        out.collect({"card": value["card"], "count": count, "sum": total, "ts": value["ts"]})


def card_of(value: dict[str, Any]) -> str:
    card: str = value["card"]
    return card


@dataclass(frozen=True)
class CardJobSpec:
    """What :func:`build_card_job` needs (passed to workers as ``BENCH_*`` environment variables)."""

    name: str
    bootstrap: str
    input_topic: str
    output_topic: str
    state_dir: Path
    checkpoint_dir: Path
    interval_ms: int
    bounded: bool
    #: ``JobConfig.poll_timeout_s`` and the source's ``fetch.wait.max.ms``; ``None``: eventapp's defaults.
    poll_timeout_s: float | None = None
    fetch_wait_max_ms: int | None = None
    exactly_once: bool = True
    #: ``key_by`` shuffles through a repartition topic instead of trusting the Kafka key.
    shuffle: bool = False
    #: ``EVENTAPP_KAFKA_BROKER_QUIRKS`` for the workers (``None``: inherited).
    broker_quirks: str | None = None
    #: ``CheckpointConfig.asynchronous`` (``None``: the storage's default, synchronous on local disk).
    asynchronous: bool | None = None

    def environment(self) -> dict[str, str]:
        return {
            "BENCH_JOB": self.name,
            "BENCH_BOOTSTRAP": self.bootstrap,
            "BENCH_INPUT": self.input_topic,
            "BENCH_OUTPUT": self.output_topic,
            "BENCH_STATE_DIR": str(self.state_dir),
            "BENCH_CHECKPOINT_DIR": str(self.checkpoint_dir),
            "BENCH_INTERVAL_MS": str(self.interval_ms),
            "BENCH_BOUNDED": "1" if self.bounded else "",
            "BENCH_POLL_TIMEOUT_S": "" if self.poll_timeout_s is None else str(self.poll_timeout_s),
            "BENCH_FETCH_WAIT_MS": "" if self.fetch_wait_max_ms is None else str(self.fetch_wait_max_ms),
            "BENCH_EXACTLY_ONCE": "1" if self.exactly_once else "",
            "BENCH_SHUFFLE": "1" if self.shuffle else "",
            "BENCH_ASYNC": {None: "", True: "1", False: "0"}[self.asynchronous],
            **({} if self.broker_quirks is None else {QUIRKS_ENVIRONMENT_VARIABLE: self.broker_quirks}),
        }

    @classmethod
    def from_environment(cls) -> CardJobSpec:
        env = os.environ
        return cls(
            name=env["BENCH_JOB"],
            bootstrap=env["BENCH_BOOTSTRAP"],
            input_topic=env["BENCH_INPUT"],
            output_topic=env["BENCH_OUTPUT"],
            state_dir=Path(env["BENCH_STATE_DIR"]),
            checkpoint_dir=Path(env["BENCH_CHECKPOINT_DIR"]),
            interval_ms=int(env["BENCH_INTERVAL_MS"]),
            bounded=bool(env.get("BENCH_BOUNDED")),
            poll_timeout_s=float(env["BENCH_POLL_TIMEOUT_S"]) if env.get("BENCH_POLL_TIMEOUT_S") else None,
            fetch_wait_max_ms=int(env["BENCH_FETCH_WAIT_MS"]) if env.get("BENCH_FETCH_WAIT_MS") else None,
            exactly_once=bool(env.get("BENCH_EXACTLY_ONCE")),
            shuffle=bool(env.get("BENCH_SHUFFLE")),
            asynchronous={"": None, "1": True, "0": False}[env.get("BENCH_ASYNC", "")],
        )


def build_card_job(spec: CardJobSpec) -> Job:
    """KafkaSource (JSON) -> key_by(card) -> CardAggregate (RocksDB) -> KafkaSink, checkpoints."""
    source: KafkaSource[Any] = KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=spec.bootstrap,
            topics=[spec.input_topic],
            group_id=f"{spec.name}-group",
            value_deserializer="json",
            bounded=spec.bounded,
            consumer_config={}
            if spec.fetch_wait_max_ms is None
            else {"fetch.wait.max.ms": spec.fetch_wait_max_ms},
        )
    )
    guarantee = DeliveryGuarantee.EXACTLY_ONCE if spec.exactly_once else DeliveryGuarantee.AT_LEAST_ONCE
    sink: KafkaSink[dict[str, Any]] = KafkaSink(
        KafkaSinkConfig(
            bootstrap_servers=spec.bootstrap,
            topic=spec.output_topic,
            key_selector=card_of,
            delivery_guarantee=guarantee,
        )
    )
    mode = CheckpointingMode.EXACTLY_ONCE if spec.exactly_once else CheckpointingMode.AT_LEAST_ONCE
    extra: dict[str, Any] = {} if spec.poll_timeout_s is None else {"poll_timeout_s": spec.poll_timeout_s}
    config = JobConfig(
        state_backend=RocksDBStateBackend(spec.state_dir),
        checkpoint=CheckpointConfig(
            storage=spec.checkpoint_dir,
            interval_ms=spec.interval_ms,
            mode=mode,
            asynchronous=spec.asynchronous,
        ),
        **extra,
    )
    job = Job(spec.name, config)
    stream: DataStream[dict[str, Any]] = job.from_source(source)
    keyed = stream.key_by(card_of, partitioned_by_source=not spec.shuffle)
    keyed.process(CardAggregate(), uid=CARD_UID).sink_to(sink)
    return job


def build_worker_job() -> Job:
    """The job of a worker process (``eventapp run benchmarks.kafka_cards:build_worker_job``)."""
    return build_card_job(CardJobSpec.from_environment())


# -- results -----------------------------------------------------------------------------------------


@dataclass
class SideResult:
    """One measured run of one side.

    ``run_s``: from the start of consumption (raw loop: after ``init_transactions`` and ``assign``;
    eventapp: the ``job.started`` event, i.e. after ``open()``: recovery, ``init_transactions``,
    consumer created) to the commit of the transaction holding the last input message's output (raw
    loop: the final ``commit_transaction`` returned; eventapp: ``job.finished``, logged after the final
    checkpoint committed). With several workers: the first ``job.started`` to the last ``job.finished``.
    """

    what: str
    records: int
    setup_s: float
    run_s: float
    commits: int
    load: str = ""
    workers: int = 1
    outputs: int = 0
    aborted: int = 0
    checkpoints: list[CheckpointEvent] = field(default_factory=list)
    #: Per worker: seconds from its job.started to its job.finished.
    worker_spans: list[float] = field(default_factory=list)
    #: Per split checkpoint, the duration of each step (``--checkpoint-steps``: workers log at DEBUG).
    split_steps: list[dict[str, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.run_s


# -- the audit --------------------------------------------------------------------------------------


@dataclass
class AuditSummary:
    committed: int
    aborted: int


def audit_cards(what: str, bootstrap: str, topic: str, expected: Expected) -> AuditSummary:
    """Check ``topic``'s committed records (transaction markers honoured: aborted and open
    transactions are left out, see :func:`audit_topic`): for every card, its aggregates with counts
    ``1..n`` each exactly once, keyed by the card, the one with count ``n`` carrying the exact sum of
    the card's amounts; no other card and no open transaction. Raises ``RuntimeError`` otherwise."""
    result = audit_topic(bootstrap, topic, verify_crc=False, timeout=900, max_bytes=16 << 20)
    if result.pending_count:
        raise RuntimeError(f"{what}: {result.pending_count} records of open transactions in {topic}")
    seen: dict[str, set[int]] = {}
    problems: list[str] = []
    committed = 0
    counts, sums = expected.counts, expected.sums
    for record in result.committed:
        committed += 1
        assert record.value is not None
        output = orjson.loads(record.value)
        card, count = output["card"], output["count"]
        numbers = seen.setdefault(card, set())
        if count in numbers or not 1 <= count <= counts.get(card, 0):
            problems.append(f"card {card}: count {count} duplicated or out of range")
        elif record.key is None or record.key.decode() != card:
            problems.append(f"card {card}: output keyed {record.key!r}")
        elif count == counts[card] and output["sum"] != sums[card]:
            problems.append(f"card {card}: final sum {output['sum']!r}, expected {sums[card]!r}")
        numbers.add(count)
        if len(problems) > 20:
            break
    missing = [card for card, n in counts.items() if len(seen.get(card, ())) != n]
    if missing:
        problems.append(f"{len(missing)} cards with missing counts, e.g. {missing[:3]}")
    if problems or committed != expected.messages:
        raise RuntimeError(
            f"{what}: audit of {topic} failed ({committed:,} committed outputs for "
            f"{expected.messages:,} messages): {problems[:5]}"
        )
    return AuditSummary(committed, result.aborted_count)
