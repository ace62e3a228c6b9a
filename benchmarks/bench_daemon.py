"""The job manager's cost and its recovery time, on the Kafka card workload of ``bench_kafka``.

    .venv/bin/python -m benchmarks.bench_daemon                  # 3 rounds of 500k messages, 5 kills
    .venv/bin/python -m benchmarks.bench_daemon --records 100000 --rounds 1 --kills 2   # smoke run

1. **Supervision and metrics overhead.** Per round the same input (``--records`` card messages, 8
   partitions, exactly-once, checkpoints every second) runs twice, the order alternating: as 2 bare
   ``eventapp run --parallelism 2 --subtask I`` workers, and under a job manager (``eventapp run
   --parallelism 2``) while a scraper reads ``/metrics`` and ``/jobs/{id}`` every second (what
   Prometheus and the dashboard do). Throughput = records / (first ``job.started`` to last
   ``job.finished``) from the workers' JSON logs; the overhead is 1 - supervised / bare, median over
   rounds. Both outputs are audited (committed records, each card's aggregates complete).
2. **Recovery.** A job manager runs the job on an unbounded input; ``--kills`` times a worker is
   SIGKILLed and the time until its slot runs again (its worker restored its splits and reported
   after its first step: ``/jobs/{id}`` shows the new attempt RUNNING) is measured by polling the
   REST API every 10 ms, with the default restart strategy (exponential-delay: 1 s +-10 % first)
   and with ``fixed-delay:delay=0`` (the restart's own cost).

Nothing is asserted; the figures and the load average are printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .kafka_cards import CardJobSpec, audit_cards, card_ids, produce_cards
from .kafka_common import Broker, Topics, broker, cpu_seconds, loadavg
from .kafka_events import log_events, start_workers, stop_workers

TARGET = "benchmarks.kafka_cards:build_worker_job"
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished (waited-for) children and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _span(log: Path) -> tuple[float, float, int]:
    """(first job.started, last job.finished, records) over every worker's lines of ``log``."""
    started: list[float] = []
    finished: list[float] = []
    records = 0
    for event, at in log_events(log):
        name = event.get("event")
        if name == "job.started":
            started.append(at)
        elif name == "job.finished":
            finished.append(at)
            records += int(event.get("records", 0))
    if not started or not finished:
        raise RuntimeError(f"no job.started/job.finished in {log}: {log.read_text()[-2000:]}")
    return min(started), max(finished), records


def _jobmanager(spec: CardJobSpec, port: int, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **spec.environment(), "PYTHONPATH": str(ROOT), "EVENTAPP_LOG_LEVEL": "INFO"}
    command = [sys.executable, "-m", "eventapp", "run", TARGET, "--parallelism", "2"]
    command += ["--rest-port", str(port), "--json-logs", *args]
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def _scrape(url: str, job: str, stop: threading.Event, counts: list[float], pid: int, scrape: bool) -> None:
    """Every second: scrape (unless ``scrape`` is off) and note the job manager's CPU seconds."""
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.wait(1.0):
            counts[1] = cpu_seconds(pid) or counts[1]
            if not scrape:
                continue
            try:
                http.get("/metrics")
                http.get(f"/jobs/{job}")
                counts[0] += 1
            except httpx.HTTPError:
                continue


def _spec(bk: Broker, topics: Topics, tmp: Path, tag: str, input_topic: str, bounded: bool) -> CardJobSpec:
    return CardJobSpec(
        name=f"bench-daemon-{tag}-{topics.run_id}",
        bootstrap=bk.bootstrap,
        input_topic=input_topic,
        output_topic=topics.create(f"{tag}-out", 8),
        state_dir=tmp / f"{tag}-state",
        checkpoint_dir=tmp / f"{tag}-checkpoints",
        interval_ms=1_000,
        bounded=bounded,
    )


def overhead(bk: Broker, topics: Topics, args: argparse.Namespace, tmp: Path) -> None:
    cards = card_ids(10_000)
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    print(f"\n[1] overhead: {args.records:,} messages, 8 partitions, 2 workers, {args.rounds} rounds")
    for number in range(1, args.rounds + 1):
        input_topic = topics.create(f"in-{number}", 8)
        expected = produce_cards(bk.bootstrap, input_topic, args.records, cards)
        rates: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for which in ["bare", "supervised"] if number % 2 else ["supervised", "bare"]:
            tag = f"r{number}-{which}"
            spec = _spec(bk, topics, tmp, tag, input_topic, bounded=True)
            children = _children_cpu()
            if which == "bare":
                workers = start_workers(TARGET, spec.environment(), 2, tmp, tag)
                for worker in workers:
                    worker.process.wait(1_800)
                stop_workers(workers)
                spans = [_span(w.log_path) for w in workers]
                start, end = min(s[0] for s in spans), max(s[1] for s in spans)
                records = sum(s[2] for s in spans)
                scrapes, jm_cpu = 0, 0.0
            else:
                port = _free_port()
                log = tmp / f"{tag}.log"
                jm = _jobmanager(spec, port, log)
                stop, counts = threading.Event(), [0.0, 0.0]
                scraper = threading.Thread(
                    target=_scrape,
                    args=(f"http://127.0.0.1:{port}", spec.name, stop, counts, jm.pid, not args.no_scrape),
                    daemon=True,
                )
                scraper.start()
                code = jm.wait(1_800)
                stop.set()
                scraper.join()
                if code != 0:
                    raise RuntimeError(f"job manager exited {code}: {log.read_text()[-3000:]}")
                start, end, records = _span(log)
                scrapes = int(counts[0])
                jm_cpu = counts[1]
            # CPU of every process of the side (the workers; and the job manager, whose own start-up
            # is included), from the finished children's resource usage: less noisy than wall time.
            cpu[which] = _children_cpu() - children
            if records != args.records:
                raise RuntimeError(f"{tag}: read {records:,} records, expected {args.records:,}")
            summary = audit_cards(tag, bk.bootstrap, spec.output_topic, expected)
            rates[which] = records / (end - start)
            print(
                f"    round {number} {which:>10}: {rates[which]:,.0f} msg/s ({end - start:.2f} s, "
                f"{summary.committed:,} outputs audited, {scrapes} scrapes, CPU {cpu[which]:.2f} s, of it "
                f"the job manager {jm_cpu:.2f} s; load {loadavg()})"
            )
        ratios.append(rates["supervised"] / rates["bare"])
        cpu_ratios.append(cpu["supervised"] / cpu["bare"])
        print(
            f"    round {number}: throughput supervised / bare = {ratios[-1]:.3f}; CPU supervised / bare "
            f"= {cpu_ratios[-1]:.3f}"
        )
    median = statistics.median(ratios)
    shown = ", ".join(f"{r:.3f}" for r in ratios)
    print(
        f"  => throughput overhead (1 - median ratio): {100 * (1 - median):.1f} % (goal <= 3 %); "
        f"ratios {shown}"
    )
    cpu_median = statistics.median(cpu_ratios)
    shown = ", ".join(f"{r:.3f}" for r in cpu_ratios)
    print(f"  => CPU overhead (median ratio - 1): {100 * (cpu_median - 1):.1f} %; ratios {shown}")


def recovery(bk: Broker, topics: Topics, args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n[2] recovery: {args.kills} SIGKILLs of a worker per restart strategy (unbounded input)")
    input_topic = topics.create("recovery-in", 8)
    produce_cards(bk.bootstrap, input_topic, 200_000, card_ids(10_000))
    for strategy in ("exponential-delay", "fixed-delay:attempts=1000,delay=0"):
        tag = "rec-" + strategy.split(":")[0]
        spec = _spec(bk, topics, tmp, tag, input_topic, bounded=False)
        port = _free_port()
        log = tmp / f"{tag}.log"
        jm = _jobmanager(spec, port, log, "--restart-strategy", strategy, "--report-interval", "0.2")
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        times: list[float] = []
        try:
            for kill in range(args.kills):
                slot = kill % 2
                job = _wait(
                    http,
                    spec.name,
                    lambda j, slot=slot: j["ready"] and j["slots"][slot]["attempt"] >= 1,
                    jm,
                    log,
                )
                attempt = job["slots"][slot]["attempt"]
                time.sleep(1.0)  # let it process between kills (a benchmark's pacing, not a test's wait)
                os.kill(job["slots"][slot]["pid"], signal.SIGKILL)
                killed = time.monotonic()
                _wait(
                    http,
                    spec.name,
                    lambda j, slot=slot, attempt=attempt: (
                        j["slots"][slot]["attempt"] > attempt and j["slots"][slot]["status"] == "RUNNING"
                    ),
                    jm,
                    log,
                    interval=0.01,
                )
                times.append(time.monotonic() - killed)
        finally:
            http.close()
            jm.send_signal(signal.SIGTERM)
            jm.wait(120)
        shown = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"    {strategy}: SIGKILL -> splits processing again: median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s ({shown}; load {loadavg()})"
        )


def _wait(
    http: httpx.Client,
    job: str,
    condition: Callable[[dict[str, Any]], bool],
    jm: subprocess.Popen[bytes],
    log: Path,
    interval: float = 0.05,
) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if jm.poll() is not None:
            raise RuntimeError(f"job manager exited {jm.returncode}: {log.read_text()[-3000:]}")
        try:
            state: dict[str, Any] = http.get(f"/jobs/{job}").json()
            if condition(state):
                return state
        except (httpx.HTTPError, KeyError, IndexError):
            pass
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting on the job manager: {log.read_text()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--parts", default="overhead,recovery")
    parser.add_argument("--no-scrape", action="store_true", help="supervised runs without scraping")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"bench_daemon: load average {loadavg()}, {os.cpu_count()} cores")
    with broker() as bk, tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp_dir:
        tmp = Path(tmp_dir)
        topics = Topics(bk.bootstrap)
        if "overhead" in parts:
            overhead(bk, topics, args, tmp)
        if "recovery" in parts:
            recovery(bk, topics, args, tmp)


if __name__ == "__main__":
    main()
