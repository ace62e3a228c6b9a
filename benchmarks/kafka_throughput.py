"""Throughput rounds of ``bench_kafka``: the raw loop and eventapp back to back on the same input.

Each round produces a fresh input topic (``--records`` messages, not timed), then runs the raw loop
and eventapp as ``eventapp run`` worker processes (alternating which goes first), each into its own
fresh output topic, and audits both outputs. The ratio eventapp / raw loop is taken inside the round;
medians over rounds are reported. A run with several worker processes (the splits divided between
them) follows on the last round's input.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import pstats
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from eventapp.connectors.kafka.quirks import BrokerQuirks

from .kafka_cards import (
    CardJobSpec,
    Expected,
    SideResult,
    audit_cards,
    build_card_job,
    card_ids,
    produce_cards,
)
from .kafka_common import Broker, Topics, loadavg
from .kafka_events import CheckpointCapture, log_tail, read_worker_log, start_workers, stop_workers
from .kafka_raw import run_raw

WORKER_TARGET = "benchmarks.kafka_cards:build_worker_job"


@dataclass
class Round:
    """One round: the same input through the raw loop and eventapp (1 worker process)."""

    number: int
    input_topic: str
    produce_s: float
    raw: SideResult
    eventapp: SideResult
    #: The earlier, per-record-RocksDB raw loop (``--naive-raw``), for reference only.
    naive: SideResult | None = None

    @property
    def ratio(self) -> float:
        return self.eventapp.rate / self.raw.rate


@dataclass
class ThroughputReport:
    rounds: list[Round] = field(default_factory=list)
    multi: SideResult | None = None
    #: eventapp, 1 worker, with key_by shuffling through a repartition topic (part ``shuffle``): with
    #: the broker's quirks, and on Tansu also with librdkafka reading the shuffle (Apache Kafka's path).
    shuffled: list[SideResult] = field(default_factory=list)
    expected: Expected | None = None

    def median(self, attribute: str) -> float:
        if attribute == "ratio":
            return statistics.median(r.ratio for r in self.rounds)
        sides: list[SideResult] = [getattr(r, attribute) for r in self.rounds]
        return statistics.median(side.rate for side in sides)


def run_eventapp_workers(
    spec: CardJobSpec,
    workers: int,
    records: int,
    tmp: Path,
    tag: str,
    timeout_s: float = 1_800,
    log_level: str = "INFO",
) -> SideResult:
    """Run the bounded job in ``workers`` ``eventapp run`` processes until each reached its input's end
    (they exit after the final checkpoint), then read the figures from their JSON logs."""
    processes = start_workers(WORKER_TARGET, spec.environment(), workers, tmp, tag, log_level)
    deadline = time.monotonic() + timeout_s
    try:
        for worker in processes:
            try:
                worker.process.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise RuntimeError(f"{tag}: worker not done after {timeout_s} s: {log_tail(worker)}") from exc
    finally:
        stop_workers(processes)
    logs = [read_worker_log(w.log_path) for w in processes]
    for worker, log in zip(processes, logs, strict=True):
        if worker.process.returncode != 0 or log.started is None or log.finished is None:
            raise RuntimeError(
                f"{tag}: worker exited with {worker.process.returncode} (started {log.started}, finished "
                f"{log.finished}): {log_tail(worker)}"
            )
    read = sum(log.records or 0 for log in logs)
    reads = records * (2 if spec.shuffle else 1)  # a shuffle reads every record twice
    if read != reads:
        raise RuntimeError(f"{tag}: the workers read {read:,} records, expected {reads:,}")
    started = min(log.started for log in logs if log.started is not None)
    finished = max(log.finished for log in logs if log.finished is not None)
    return SideResult(
        f"eventapp, {workers} worker{'s' if workers > 1 else ''}",
        records,
        setup_s=started - min(w.launched for w in processes),
        run_s=finished - started,
        commits=sum(len(log.checkpoints) for log in logs),
        workers=workers,
        checkpoints=[event for log in logs for event in log.checkpoints],
        worker_spans=[(log.finished or 0.0) - (log.started or 0.0) for log in logs],
        split_steps=[steps for log in logs for steps in log.split_steps],
    )


def card_spec(
    broker: Broker, topics: Topics, args: argparse.Namespace, tmp: Path, tag: str, input_topic: str
) -> CardJobSpec:
    return CardJobSpec(
        name=f"bench-cards-{tag}-{topics.run_id}",
        bootstrap=broker.bootstrap,
        input_topic=input_topic,
        output_topic=topics.create(f"{tag}-out", args.partitions),
        state_dir=tmp / f"{tag}-state",
        checkpoint_dir=tmp / f"{tag}-checkpoints",
        interval_ms=args.interval_ms,
        bounded=True,
        asynchronous={"default": None, "on": True, "off": False}[args.asynchronous],
    )


def audited(side: SideResult, broker: Broker, topic: str, expected: Expected) -> SideResult:
    began = time.perf_counter()
    summary = audit_cards(side.what, broker.bootstrap, topic, expected)
    side.outputs, side.aborted = summary.committed, summary.aborted
    print(
        f"      {side.what}: {side.rate:,.0f} msg/s ({side.records:,} in {side.run_s:.2f} s, setup "
        f"{side.setup_s:.2f} s, {side.commits} commits; load {side.load}); output audited "
        f"({side.outputs:,} committed, {side.aborted} aborted) in {time.perf_counter() - began:.0f} s"
    )
    return side


def raw_side(
    broker: Broker,
    topics: Topics,
    args: argparse.Namespace,
    tmp: Path,
    tag: str,
    input_topic: str,
    naive: bool,
) -> tuple[SideResult, str]:
    output = topics.create(f"{tag}-out", args.partitions)
    side = run_raw(
        broker.bootstrap, input_topic, output, args.partitions, tmp / f"{tag}-db", args.interval_ms, naive
    )
    side.load = loadavg()
    return side, output


def eventapp_side(
    broker: Broker,
    topics: Topics,
    args: argparse.Namespace,
    tmp: Path,
    tag: str,
    input_topic: str,
    workers: int,
) -> tuple[SideResult, str]:
    spec = card_spec(broker, topics, args, tmp, tag, input_topic)
    level = "DEBUG" if args.checkpoint_steps else "INFO"
    side = run_eventapp_workers(spec, workers, args.records, tmp, tag, log_level=level)
    side.load = loadavg()
    return side, spec.output_topic


def bench_throughput(
    broker: Broker, topics: Topics, args: argparse.Namespace, tmp: Path, multi: bool, shuffle: bool = False
) -> ThroughputReport:
    """``--rounds`` rounds (raw loop and eventapp with 1 worker, order alternating), then, if ``multi``,
    eventapp with ``--workers`` worker processes on the last round's input."""
    report = ThroughputReport()
    cards = card_ids(args.cards)
    print(
        f"\n[1] throughput: {args.records:,} messages over {args.cards:,} cards, {args.partitions} "
        f"partitions, checkpoint/commit every {args.interval_ms} ms, {args.rounds} rounds"
    )
    for number in range(1, args.rounds + 1):
        input_topic = topics.create(f"cards-in-{number}", args.partitions)
        began = time.perf_counter()
        expected = produce_cards(broker.bootstrap, input_topic, args.records, cards)
        produce_s = time.perf_counter() - began
        report.expected = expected
        print(
            f"    round {number}: input produced in {produce_s:.1f} s "
            f"({expected.payload_bytes / expected.messages:.1f} B per message; load {loadavg()})"
        )
        sides: dict[str, SideResult] = {}
        order = ["raw", "eventapp"] if number % 2 else ["eventapp", "raw"]
        if args.naive_raw:
            order.append("naive")
        for which in order:
            tag = f"r{number}-{which}"
            if which == "eventapp":
                side, output = eventapp_side(broker, topics, args, tmp, tag, input_topic, 1)
            else:
                side, output = raw_side(broker, topics, args, tmp, tag, input_topic, which == "naive")
            sides[which] = audited(side, broker, output, expected)
        round_ = Round(number, input_topic, produce_s, sides["raw"], sides["eventapp"], sides.get("naive"))
        report.rounds.append(round_)
        print(f"      ratio eventapp / raw loop: {round_.ratio:.2f}")
    if multi and report.rounds and report.expected is not None:
        last = report.rounds[-1]
        print(f"\n    eventapp with {args.workers} worker processes on round {last.number}'s input")
        side, output = eventapp_side(
            broker, topics, args, tmp, f"w{args.workers}", last.input_topic, args.workers
        )
        report.multi = audited(side, broker, output, report.expected)
        spans = ", ".join(f"{s:.2f}" for s in side.worker_spans)
        print(f"      per worker, job.started -> job.finished: {spans} s")
    if shuffle and report.rounds and report.expected is not None:
        last = report.rounds[-1]
        quirks = BrokerQuirks.from_environment()
        variants: list[tuple[str, str | None]] = [("", None)]
        if quirks.aborted_records_visible:
            variants = [
                (", shuffle read by the marker reader (Tansu quirk)", None),
                (
                    ", shuffle read by librdkafka (Apache Kafka's path; no aborts in this run)",
                    ",".join(n for n in quirks.names if n != "aborted-records-visible"),
                ),
            ]
        for index, (what, quirk_spec) in enumerate(variants):
            print(
                f"\n    eventapp, 1 worker, key_by shuffled through a repartition topic{what}, "
                f"on round {last.number}'s input"
            )
            spec = dataclasses.replace(
                card_spec(broker, topics, args, tmp, f"shuffle{index}", last.input_topic),
                shuffle=True,
                broker_quirks=quirk_spec,
            )
            side = run_eventapp_workers(spec, 1, args.records, tmp, f"shuffle{index}")
            side.what, side.load = f"eventapp, shuffled key_by{what}", loadavg()
            report.shuffled.append(audited(side, broker, spec.output_topic, report.expected))
    return report


def profile_eventapp(broker: Broker, topics: Topics, args: argparse.Namespace, tmp: Path) -> None:
    """``--profile``: the eventapp job in this process under cProfile (after ``open()``); prints the
    top functions by own time."""
    input_topic = topics.create("profile-in", args.partitions)
    expected = produce_cards(broker.bootstrap, input_topic, args.records, card_ids(args.cards))
    spec = dataclasses.replace(
        card_spec(broker, topics, args, tmp, "profile", input_topic), shuffle="shuffle" in args.parts
    )
    runner = build_card_job(spec).runner()
    profiler = cProfile.Profile()
    with CheckpointCapture():
        runner.open()
        try:
            began = time.perf_counter()
            profiler.enable()
            while not runner.finished:
                runner.step()
            profiler.disable()
            elapsed = time.perf_counter() - began
        finally:
            runner.close()
    audit_cards("profiled job", broker.bootstrap, spec.output_topic, expected)
    print(
        f"\nprofile of the eventapp job: {args.records:,} messages, {args.records / elapsed:,.0f} msg/s "
        "under cProfile"
    )
    stats = pstats.Stats(profiler)
    own: dict[str, float] = {}
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = function if filename == "~" else "/".join(Path(filename).parts[-2:])
        own[where] = own.get(where, 0.0) + tottime
    total = sum(own.values())
    print(f"\nown time by module (C functions by name), of {total:.2f} s:")
    for where, seconds in sorted(own.items(), key=lambda item: -item[1])[: args.profile_top]:
        print(f"  {seconds:6.2f} s {100 * seconds / total:5.1f} %  {where}")
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(args.profile_top)
        print(text.getvalue())
