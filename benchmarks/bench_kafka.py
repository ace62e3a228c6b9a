"""eventapp on Kafka against a hand-written raw loop: throughput ratio, checkpoint pause, latency.

    .venv/bin/python -m benchmarks.bench_kafka                 # the reference workload (~10 min)
    .venv/bin/python -m benchmarks.bench_kafka --quick         # a smoke run (~2 min), not for figures
    .venv/bin/python -m benchmarks.bench_kafka --parts many-keys,latency-matrix
    .venv/bin/python -m benchmarks.bench_kafka --profile       # cProfile of the eventapp job in-process

Reference workload (``benchmarks/kafka_cards.py``): ``--records`` (1 M) JSON messages of 87 B
``{"card", "amount", "ts"}`` keyed by card id, ``--cards`` (10,000) cards, one input topic with
``--partitions`` (8) partitions. For every message the card's updated aggregate (count, sum, ts) is
written to an output topic exactly-once, committing every ``--interval-ms`` (1,000 ms):

- **eventapp**: KafkaSource -> key_by(card) -> KeyedProcessFunction (count and sum in a RocksDB
  ValueState) -> KafkaSink(EXACTLY_ONCE), run as one ``eventapp run`` worker process;
- **raw loop**: confluent-kafka + orjson + rocksdict by hand: ``assign()``, ``consume(1000, 0.02)``, a
  dict of dirty aggregates flushed with one RocksDB WriteBatch per commit, one transactional producer,
  ``send_offsets_to_transaction`` + ``commit_transaction`` every interval.

Parts (``--parts``, default ``throughput,workers,latency``):

1. ``throughput``: ``--rounds`` (3) rounds; each produces a fresh input topic, then runs both sides back
   to back (the order alternates) into fresh output topics. Ratio eventapp / raw loop per round; medians.
2. ``workers``: eventapp with ``--workers`` (2) worker processes (splits divided between them) on the
   last round's input, against the medians of part 1. ``shuffle``: eventapp (1 worker) on the same
   input with ``key_by`` shuffling through a repartition topic instead of trusting the Kafka key
   (every message is written to and read back from the shuffle, exactly-once). The checkpoint
   pause distribution of the eventapp runs (parts 1 and 2) comes from their
   ``checkpoint.completed`` log events.
3. ``latency``: end-to-end latency at ``--rate`` (2,000) msg/s, exactly-once, ``--latency-interval-ms``
   (100 ms) checkpoints; ``latency-matrix`` runs the earlier five setups instead.
4. ``many-keys``: checkpoint pause with ``--fill-keys`` (1 M) keys in RocksDB, then restore time.

Every output is audited (committed records only, transaction markers honoured) before a figure is
printed; an audit mismatch fails the run. Nothing is asserted about speed. The broker is an embedded
Tansu (in memory, started here) or ``$EVENTAPP_BENCH_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from eventapp import configure_logging

# Re-exported for benchmarks.bench_restart.
from .kafka_common import (
    UID,
    Broker,
    RecordingKafkaSource,
    RunningCount,
    TimedRocksDBStateBackend,
    Topics,
    broker,
    count_state_entries,
    key_of,
    loadavg,
    percentile,
    produce,
    table,
)
from .kafka_events import SPLIT_STEPS, CheckpointCapture, PauseStats
from .kafka_latency import LATENCY_MATRIX, LatencyResult, LatencySetup, bench_latency
from .kafka_many_keys import ManyKeysResult, bench_many_keys
from .kafka_throughput import ThroughputReport, bench_throughput, profile_eventapp

__all__ = [
    "UID",
    "Broker",
    "RecordingKafkaSource",
    "RunningCount",
    "TimedRocksDBStateBackend",
    "Topics",
    "broker",
    "count_state_entries",
    "key_of",
    "main",
    "produce",
    "table",
]

PARTS = ("throughput", "workers", "shuffle", "latency", "latency-matrix", "many-keys")
MiB = 1 << 20


def number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_throughput(report: ThroughputReport, args: argparse.Namespace) -> None:
    expected = report.expected
    size = "" if expected is None else f"{expected.payload_bytes / expected.messages:.0f} B, "
    print(
        f"1. throughput: {args.records:,} messages ({size}{args.cards:,} cards, {args.partitions} "
        f"partitions), count+sum per card, exactly-once, commit every {args.interval_ms} ms"
    )
    rows = []
    for r in report.rounds:
        naive = [] if not args.naive_raw else [number(r.naive.rate) if r.naive else "-"]
        rows.append(
            [
                str(r.number),
                number(r.raw.rate),
                number(r.eventapp.rate),
                f"{r.ratio:.2f}",
                *naive,
                f"{r.raw.run_s:.2f}",
                f"{r.eventapp.run_s:.2f}",
                f"{r.eventapp.setup_s:.2f}",
                f"{r.raw.commits}/{r.eventapp.commits}",
                f"{r.raw.load.split()[0]}/{r.eventapp.load.split()[0]}",
            ]
        )
    if report.rounds:
        naive = [] if not args.naive_raw else [number(_median_naive(report))]
        rows.append(
            [
                "median",
                number(report.median("raw")),
                number(report.median("eventapp")),
                f"{report.median('ratio'):.2f}",
                *naive,
                *[""] * 5,
            ]
        )
    naive_header = ["naive raw msg/s"] if args.naive_raw else []
    headers = ["round", "raw loop msg/s", "eventapp msg/s", "ratio", *naive_header]
    headers += ["raw s", "eventapp s", "eventapp setup s", "commits raw/ea", "load 1m raw/ea"]
    table(headers, rows)
    multi = report.multi
    if multi is not None and report.rounds:
        spans = " / ".join(f"{s:.2f}" for s in multi.worker_spans)
        print(
            f"   {multi.workers} worker processes: {multi.rate:,.0f} msg/s ({multi.run_s:.2f} s; per worker "
            f"{spans} s; load {multi.load}): {multi.rate / report.median('raw'):.2f} x the raw loop median, "
            f"{multi.rate / report.median('eventapp'):.2f} x 1 worker median"
        )
    for shuffled in report.shuffled if report.rounds else []:
        print(
            f"   {shuffled.what} (1 worker): {shuffled.rate:,.0f} msg/s ({shuffled.run_s:.2f} s; load "
            f"{shuffled.load}): {shuffled.rate / report.median('raw'):.2f} x the raw loop median, "
            f"{shuffled.rate / report.median('eventapp'):.2f} x without the shuffle"
        )
    print(
        "   msg/s = messages / (start of consumption -> the last message's output committed): raw loop from\n"
        "   its first consume() (after init_transactions, assign) to its final commit_transaction; eventapp\n"
        "   from job.started (open() done) to job.finished (final checkpoint committed), first/last worker.\n"
        "   Every output audited: one committed aggregate per message, counts 1..n per card, exact sums."
    )


def _median_naive(report: ThroughputReport) -> float | None:
    rates = [r.naive.rate for r in report.rounds if r.naive is not None]
    return statistics.median(rates) if rates else None


def print_pauses(
    report: ThroughputReport, latency: Sequence[LatencyResult], args: argparse.Namespace
) -> None:
    print(
        "2. checkpoint pause (ms), from the checkpoint.completed events of the eventapp runs "
        "(pause_ms, else duration_ms)"
    )
    rows = []
    one = [e for r in report.rounds for e in r.eventapp.checkpoints]
    groups = [(f"1 worker, {args.interval_ms} ms, {len(report.rounds)} runs", one)]
    if report.multi is not None:
        groups.append((f"{report.multi.workers} workers, {args.interval_ms} ms", report.multi.checkpoints))
    for run in latency:
        groups.append((f"latency run, {run.setup.interval_ms} ms ({run.setup.mode})", run.checkpoints))
    for label, events in groups:
        stats = PauseStats.of(events)
        if stats is None:
            rows.append([label, "0", "-", "-", "-", "-", "-"])
        else:
            cells = [stats.p50, stats.p99, stats.max, stats.mean]
            rows.append([label, str(stats.count), *(number(c, 1) for c in cells), stats.source_field])
    table(["runs", "checkpoints", "p50", "p99", "max", "mean", "field"], rows)
    parts = [
        (what, [v for e in one if (v := getattr(e, attr)) is not None])
        for what, attr in (
            ("synchronous part", "begin_ms"),
            ("waiting for it", "waited_ms"),
            ("writing held outputs", "release_ms"),
        )
    ]
    for what, values in parts:
        if values:
            ordered = sorted(values)
            p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered) + 0.5) - 1)]
            print(
                f"   asynchronous, 1 worker: {what} p50 {statistics.median(values):.1f} ms, "
                f"p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms"
            )


def print_split_steps(report: ThroughputReport) -> None:
    """The steps of the splits' checkpoints in the 1-worker runs (``--checkpoint-steps``). The splits
    of a worker checkpoint in parallel threads, so a pause is about the slowest split's total."""
    steps = [s for r in report.rounds for s in r.eventapp.split_steps]
    if not steps:
        return
    print(f"   steps of one split's checkpoint, 1 worker ({len(steps)} split checkpoints; ms)")
    rows = []
    for name in (*SPLIT_STEPS, "total"):
        values = [sum(s.values()) if name == "total" else s.get(name, 0.0) for s in steps]
        cells = [percentile(values, 0.5), percentile(values, 0.99), max(values), statistics.fmean(values)]
        rows.append([name.removesuffix("_ms"), *(number(c, 1) for c in cells)])
    table(["step", "p50", "p99", "max", "mean"], rows)


def print_goals(report: ThroughputReport, latency: Sequence[LatencyResult], args: argparse.Namespace) -> None:
    """The issue's targets next to what was measured (informative: nothing is asserted)."""
    goals = []

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    if report.rounds:
        ratio = report.median("ratio")
        goals.append(f"ratio >= 0.5: median {ratio:.2f} ({verdict(ratio >= 0.5)})")
        stats = PauseStats.of([e for r in report.rounds for e in r.eventapp.checkpoints])
        if stats is not None:
            goals.append(f"pause p99 < 50 ms (1 worker): {stats.p99:.0f} ms ({verdict(stats.p99 < 50)})")
    for run in latency:
        if (
            run.setup.mode == "exactly-once"
            and run.setup.poll_timeout_s is None
            and run.setup.interval_ms == 100
        ):
            goals.append(
                f"latency p99 < 200 ms at {args.rate:,} msg/s, 100 ms: {run.p99_ms:.0f} ms "
                f"({verdict(run.p99_ms < 200)})"
            )
    if goals:
        quick = " (a --quick run: not for figures)" if args.quick else ""
        print(f"\ngoals (from the issue){quick}: " + "; ".join(goals))


def print_latency(runs: Sequence[LatencyResult], rate: int) -> None:
    print(f"3. end-to-end latency at {rate:,} msg/s: send -> visible to a read_committed consumer (ms)")
    rows = [
        [
            r.setup.mode,
            str(r.setup.interval_ms),
            r.setup.polling,
            f"{r.received:,}",
            number(r.p50_ms),
            number(r.p99_ms),
            number(r.max_ms),
            number(r.checkpoint_period_ms),
            number(None if r.pauses is None else r.pauses.p99, 1),
            number(r.worker_cpu),
            number(r.broker_cpu),
            r.load.split()[0],
        ]
        for r in runs
    ]
    headers = ["mode", "interval", "polling", "records", "p50", "p99", "max", "ckpt every", "pause p99"]
    table([*headers, "job CPU%", "broker CPU%", "load 1m"], rows)
    print(
        "   polling: JobConfig.poll_timeout_s / fetch.wait.max.ms (default 0.1 s / 100 ms); ckpt every:\n"
        "   mean period during the load; CPU%: of one core, during the load"
    )


def print_many_keys(many: ManyKeysResult) -> None:
    print(f"4. checkpoint pause: {many.keys:,} keys in RocksDB, {many.partitions} splits (ms)")
    rows = [
        [
            row.label,
            number(row.call_ms),
            number(row.event_pause_ms),
            number(row.snapshot_ms),
            number(row.commit_ms),
            f"{row.files.new_sst}/{row.files.shared_sst}",
            f"{row.files.new_bytes / MiB:.1f}/{row.files.shared_bytes / MiB:.1f}",
        ]
        for row in many.rows
    ]
    headers = ["checkpoint", "checkpoint()", "event pause", "snapshot sum", "commit sum"]
    table([*headers, "SST new/shared", "MiB new/shared"], rows)
    print(
        f"   loading the keys through the job: {many.fill_s:.1f} s, {many.keys / many.fill_s:,.0f} records/s"
    )
    restore = many.restore
    if restore is not None:
        print(
            f"5. restore: {restore.keys:,} keys ({restore.snapshot_bytes / MiB:.1f} MiB), open() until ready "
            f"{restore.open_ms:,.0f} ms: state restore {restore.state_restore_ms:,.0f} ms (sum over splits), "
            f"commit-point recovery {restore.recover_ms:,.0f} ms (init_transactions "
            f"{restore.init_transactions_ms:,.0f}, read committed {restore.read_committed_ms:,.0f})"
        )


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, set[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--records", type=int, default=1_000_000, help="input messages per round")
    add("--cards", type=int, default=10_000, help="distinct cards (keys)")
    add("--partitions", type=int, default=8, help="partitions (splits) of every topic")
    add("--rounds", type=int, default=3, help="throughput rounds (raw loop + eventapp each)")
    add("--interval-ms", type=int, default=1_000, help="checkpoint/commit interval of parts 1-2")
    add("--workers", type=int, default=2, help="worker processes of part 2")
    add(
        "--asynchronous",
        choices=("default", "on", "off"),
        default="default",
        help="asynchronous checkpoints in parts 1-2 (default: the storage's default, off on local disk)",
    )
    add(
        "--checkpoint-steps",
        action="store_true",
        help="workers of parts 1-2 log at DEBUG; print the steps of each split's checkpoint",
    )
    add("--naive-raw", action="store_true", help="also run the per-record-RocksDB raw loop each round")
    add("--rate", type=int, default=2_000, help="messages/s of the latency load")
    add("--latency-seconds", type=float, default=10.0, help="duration of each latency run")
    add("--latency-interval-ms", type=int, default=100, help="checkpoint interval of the latency run")
    add("--fill-keys", type=int, default=1_000_000, help="keys in state for many-keys")
    add("--updates", type=int, default=10_000, help="updates between incremental checkpoints (many-keys)")
    add("--update-rounds", type=int, default=3, help="incremental checkpoints measured (many-keys)")
    add("--parts", default="throughput,workers,latency", help=f"comma-separated, of {', '.join(PARTS)}")
    add("--quick", action="store_true", help="a small smoke run (30k messages, 2 rounds), not for figures")
    add("--profile", action="store_true", help="only profile the eventapp job (in this process)")
    add("--profile-top", type=int, default=25, help="functions listed by --profile")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.cards, args.rounds, args.fill_keys = 30_000, 2_000, 2, 100_000
        args.updates, args.rate, args.latency_seconds = 2_000, 1_000, 3.0
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - set(PARTS):
        parser.error(f"unknown --parts {sorted(parts - set(PARTS))}; use {', '.join(PARTS)}")
    return args, parts


def main(argv: Sequence[str] | None = None) -> None:
    args, parts = parse_args(argv)
    configure_logging(level="INFO")
    tmp = Path(tempfile.mkdtemp(prefix="eventapp-bench-kafka-"))
    began = time.perf_counter()
    load_before = loadavg()
    try:
        with broker() as broker_, CheckpointCapture() as capture:
            topics = Topics(broker_.bootstrap)
            header = (
                f"eventapp Kafka benchmark: {broker_.description}, {args.partitions} partitions, Python "
                f"{platform.python_version()}, {os.cpu_count()} CPUs"
            )
            print(f"{header}; load {load_before}")
            if args.profile:
                profile_eventapp(broker_, topics, args, tmp)
                return
            report = ThroughputReport()
            if parts & {"throughput", "workers", "shuffle"}:
                report = bench_throughput(
                    broker_, topics, args, tmp, multi="workers" in parts, shuffle="shuffle" in parts
                )
            setups: tuple[LatencySetup, ...] = ()
            if "latency" in parts:  # the required figure: exactly-once, eventapp's default polling
                setups = (LatencySetup("exactly-once", args.latency_interval_ms),)
            if "latency-matrix" in parts:
                setups += tuple(s for s in LATENCY_MATRIX if s not in setups)
            latency = bench_latency(broker_, topics, args, tmp, setups) if setups else []
            many = bench_many_keys(broker_, topics, args, tmp, capture) if "many-keys" in parts else None
            elapsed = time.perf_counter() - began
            line = "=" * 110
            print(
                f"\n{line}\n{header}; {elapsed:.0f} s; load before {load_before}, after {loadavg()}\n{line}"
            )
            sections: list[Callable[[], None]] = []
            if report.rounds:
                sections += [
                    lambda: print_throughput(report, args),
                    lambda: print_pauses(report, latency, args),
                    lambda: print_split_steps(report),
                ]
            if latency:
                sections.append(lambda: print_latency(latency, args.rate))
            if many is not None:
                sections.append(lambda: print_many_keys(many))
            for i, section in enumerate(sections):
                if i:
                    print()
                section()
            print_goals(report, latency, args)
            print(line)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
