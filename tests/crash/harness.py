"""Support for the crash tests: input with its oracle, worker processes, and the exactly-once check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from eventapp import LocalCheckpointStorage
from eventapp.connectors.kafka import KafkaCommitConfig, KafkaSourceConfig, read_committed_checkpoints
from eventapp.state.inspect import StateInspector
from eventapp.statebackends import RocksDBStateBackend
from tests.crash.eos_job import UID, WINDOW_MS, CrashCounter
from tests.support.broker import KafkaBroker, unique_topic_name
from tests.support.kafka_audit import audit_topic

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Oracle:
    """What the job must produce for the input that was written."""

    partitions: int
    valid: list[dict[str, Any]] = field(default_factory=list)  # in per-partition order
    malformed: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (partition, offset) -> raw

    def counts(self) -> set[tuple[str, int, int]]:
        seen: Counter[str] = Counter()
        out = set()
        for r in self.valid:
            seen[r["k"]] += 1
            out.add((r["k"], r["id"], seen[r["k"]]))
        return out

    def windows(self) -> Counter[tuple[str, int, int]]:
        per: Counter[tuple[str, int]] = Counter(
            (r["k"], (r["ts"] // WINDOW_MS + 1) * WINDOW_MS) for r in self.valid
        )
        return Counter({(k, w, c): 1 for (k, w), c in per.items()})

    def per_key(self) -> Counter[str]:
        return Counter(r["k"] for r in self.valid)


def produce_input(
    bootstrap: str,
    topic: str,
    partitions: int,
    records: int,
    keys: int,
    *,
    bad_json_every: int = 0,
    bad_type_every: int = 0,
    first_id: int = 0,
    spread: bool = False,
) -> Oracle:
    """Keys ``k<i>`` live in partition ``i % partitions`` (with ``spread``, record ``id`` goes to
    partition ``id % partitions``: every key in every partition); event time grows with the id, so
    it is monotonic per partition. Every ``bad_json_every``-th record is not JSON; every ``bad_type_every``-th
    has a string timestamp. Ids start at ``first_id`` (to append more input to a topic)."""
    writer = _InputWriter(bootstrap, topic, partitions, keys, bad_json_every, bad_type_every, spread=spread)
    for rid in range(first_id, first_id + records):
        writer.write(rid)
    return writer.finish()


class _InputWriter:
    """Writes input records (the format of :func:`produce_input`) and builds their oracle."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        keys: int,
        bad_json_every: int,
        bad_type_every: int,
        linger_ms: int = 20,
        *,
        spread: bool = False,
    ) -> None:
        self.topic, self.partitions, self.keys, self.spread = topic, partitions, keys, spread
        self.bad_json_every, self.bad_type_every = bad_json_every, bad_type_every
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": linger_ms,
                "enable.idempotence": True,
                "acks": "all",
            }
        )
        self.delivered: dict[int, tuple[int, int]] = {}
        self.payloads: dict[int, tuple[bytes, dict[str, Any] | None]] = {}

    def _on_delivery(self, err: Any, msg: Any, rid: int) -> None:
        assert err is None, err
        self.delivered[rid] = (msg.partition(), msg.offset())

    def write(self, rid: int) -> None:
        key_index = rid % self.keys
        key = f"k{key_index}"
        partition = (rid if self.spread else key_index) % self.partitions
        record = {"k": key, "id": rid, "ts": 1_000_000 + rid * 3}
        if self.bad_json_every and rid % self.bad_json_every == self.bad_json_every - 1:
            value, parsed = b'{"k": "' + key.encode() + b'", "id": ', None
        elif self.bad_type_every and rid % self.bad_type_every == self.bad_type_every - 1:
            value, parsed = orjson.dumps({**record, "ts": "soon"}), None
        else:
            value, parsed = orjson.dumps(record), record
        self.payloads[rid] = (value, parsed)
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value,
                    key.encode(),
                    partition=partition,
                    on_delivery=lambda e, m, r=rid: self._on_delivery(e, m, r),
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def finish(self) -> Oracle:
        """Wait for every delivery; the oracle of everything written, in per-partition order."""
        assert self.producer.flush(60) == 0
        assert len(self.delivered) == len(self.payloads), "every record written was delivered"
        oracle = Oracle(self.partitions)
        for rid in sorted(self.payloads, key=lambda r: self.delivered[r]):
            value, parsed = self.payloads[rid]
            if parsed is None:
                oracle.malformed[self.delivered[rid]] = value
            else:
                oracle.valid.append(parsed)
        return oracle


class PacedInput:
    """Input written while a job runs: :func:`produce_input`'s records (ids from ``first_id``), about
    ``rate`` per second from a background thread until :meth:`stop`, which returns the oracle of
    every record written. ``linger_ms``: how long the producer collects records into one batch (a
    slow trickle in tiny batches makes every fetch of the embedded broker slower, see test_soak)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        keys: int,
        rate: float,
        *,
        bad_json_every: int = 0,
        bad_type_every: int = 0,
        first_id: int = 0,
        linger_ms: int = 20,
    ) -> None:
        self._writer = _InputWriter(
            bootstrap, topic, partitions, keys, bad_json_every, bad_type_every, linger_ms
        )
        self._rate = rate
        self._first_id = first_id
        self._next_id = first_id
        self._stopping = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="paced-input", daemon=True)
        self._thread.start()

    @property
    def written(self) -> int:
        return self._next_id - self._first_id

    def _run(self) -> None:
        try:
            began = time.monotonic()
            while not self._stopping.is_set():
                due = self._first_id + int((time.monotonic() - began) * self._rate)
                while self._next_id < due:
                    self._writer.write(self._next_id)
                    self._next_id += 1
                self._writer.producer.poll(0)
                self._stopping.wait(0.02)
        except Exception as exc:  # noqa: BLE001 - re-raised by stop()
            self._error = exc

    def stop(self) -> Oracle:
        self._stopping.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the input thread did not stop"
        if self._error is not None:
            raise self._error
        return self._writer.finish()


@dataclass
class CrashSetup:
    bootstrap: str
    job: str
    input: str
    output: str
    dlq: str
    checkpoint_topic: str
    checkpoint_dir: Path
    work_dir: Path
    partitions: int

    def env(self, state_dir: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRASH_", "EVENTAPP_FAULTS"))}
        env.update(
            CRASH_BOOTSTRAP=self.bootstrap,
            CRASH_JOB=self.job,
            CRASH_INPUT=self.input,
            CRASH_OUTPUT=self.output,
            CRASH_DLQ=self.dlq,
            CRASH_CHECKPOINT_TOPIC=self.checkpoint_topic,
            CRASH_CHECKPOINT_DIR=str(self.checkpoint_dir),
            CRASH_STATE_DIR=str(state_dir),
            PYTHONPATH=str(ROOT),
        )
        env.update(extra)
        return env

    def source_config(self) -> KafkaSourceConfig:
        return KafkaSourceConfig(
            bootstrap_servers=self.bootstrap,
            topics=[self.input],
            group_id=f"{self.job}-group",
            value_deserializer="json",
            checkpoint_topic=self.checkpoint_topic,
        )


class Worker:
    """One ``eventapp run`` worker process; its output goes to a log file per launch."""

    def __init__(
        self,
        setup: CrashSetup,
        subtask: int,
        parallelism: int,
        launch: int,
        faults: str = "",
        *,
        args: Sequence[str] = (),
        target: str = "tests.crash.eos_job:build_job",
        **env: str,
    ) -> None:
        self.subtask = subtask
        self.log = setup.work_dir / f"worker-{subtask}-launch-{launch}.log"
        state_dir = setup.work_dir / f"state-{subtask}-{launch}"
        extra = dict(env)
        if faults:
            extra["EVENTAPP_FAULTS"] = faults
        self.faults = faults
        self.killed_by_us = False
        self._started = False
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "eventapp",
                    "run",
                    target,
                    "--parallelism",
                    str(parallelism),
                    "--subtask",
                    str(subtask),
                    "--json-logs",
                    *args,
                ],
                env=setup.env(state_dir, **extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def poll(self) -> int | None:
        return self.proc.poll()

    def started(self) -> bool:
        """Whether the worker restored its splits and started processing (``job.started`` logged)."""
        if not self._started:
            with open(self.log, "rb") as log:
                self._started = b'"job.started"' in log.read()
        return self._started

    def kill(self) -> None:
        self.killed_by_us = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def audit_json(bootstrap: str, topic: str, timeout: float = 60.0) -> tuple[list[dict[str, Any]], Any]:
    result = audit_topic(bootstrap, topic, verify_crc=False, timeout=timeout)
    values = [orjson.loads(r.value) for r in result.committed if r.value is not None]
    return values, result


def final_state(setup: CrashSetup, splits: list[str]) -> dict[str, dict[str, Any]]:
    """Counts, open windows and pending ids per key, read from each split's committed snapshot."""
    committed = read_committed_checkpoints(
        KafkaCommitConfig.for_source(setup.source_config(), setup.job), splits
    )
    storage = LocalCheckpointStorage(setup.checkpoint_dir)
    state: dict[str, dict[str, Any]] = defaultdict(dict)
    for split in splits:
        checkpoint = committed[split].checkpoint
        assert checkpoint is not None, f"split {split} has no committed checkpoint"
        path, _ = storage.open(setup.job, split, checkpoint.snapshot)
        backend = RocksDBStateBackend(setup.work_dir / "inspect")
        store = backend.open(f"inspect-{split}", restore_from=path / "state")
        inspector = StateInspector(store, UID)
        for key, n in inspector.items(CrashCounter.count):
            state[key]["count"] = n
        for key, windows in inspector.items(CrashCounter.windows):
            state[key]["windows"] = windows
        for key, ids in inspector.items(CrashCounter.pending):
            state[key]["pending"] = ids
        store.close()
    return state


def verify_exactly_once(
    setup: CrashSetup,
    oracle: Oracle,
    splits: list[str],
    *,
    audit_timeout: float = 60.0,
    shuffled: bool = False,
) -> dict[str, int]:
    """Assert output and final state reflect every input exactly once. Returns figures.
    ``audit_timeout``: the deadline for reading each of the output and dead-letter topics.
    ``shuffled``: the job's key_by shuffled a spread input, so a key's records reach its state in
    no fixed order: its counts must be 1..N over exactly its ids (not a fixed id for each count);
    ``splits`` are then the shuffle's, where the state is."""
    outputs, audit = audit_json(setup.bootstrap, setup.output, audit_timeout)
    assert audit.pending_count == 0, "no transaction may be left open"
    counts = [(o["k"], o["id"], o["n"]) for o in outputs if o["t"] == "count"]
    assert len(counts) == len(set(counts)), (
        f"duplicated count outputs: {[c for c, n in Counter(counts).items() if n > 1][:5]}"
    )
    expected = oracle.counts()
    if shuffled:  # compare (key, id) and per key the counts 1..N
        expected_ids = {(k, i) for k, i, _ in expected}
        assert {(k, i) for k, i, _ in counts} == expected_ids and len(counts) == len(expected_ids)
        for key, total in oracle.per_key().items():
            assert sorted(n for k, _, n in counts if k == key) == list(range(1, total + 1)), key
        expected = set(counts)
    missing, extra = expected - set(counts), set(counts) - expected
    assert not missing and not extra, (
        f"count outputs differ: {len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} unexpected (e.g. {sorted(extra)[:3]})"
    )

    windows = Counter((o["k"], o["w"], o["c"]) for o in outputs if o["t"] == "window")
    assert windows == oracle.windows(), "window outputs differ from the oracle"
    windowed = Counter((o["k"], o["w"], o["c"]) for o in outputs if o["t"] == "twindow")
    assert windowed == oracle.windows(), "eventapp.windows outputs differ from the oracle"

    flushed = [i for o in outputs if o["t"] == "flush" for i in o["ids"]]
    assert len(flushed) == len(set(flushed)), "an id was flushed twice"

    state = final_state(setup, splits)
    pending = [i for s in state.values() for i in s.get("pending", [])]
    all_ids = {r["id"] for r in oracle.valid}
    assert not set(flushed) & set(pending), "an id is both flushed and still pending"
    assert sorted(flushed + pending) == sorted(all_ids), (
        "flushed + pending ids must be every valid id exactly once"
    )
    assert {k: s.get("count") for k, s in state.items() if "count" in s} == dict(oracle.per_key()), (
        "final counts differ from the oracle"
    )
    assert all(not s.get("windows") for s in state.values()), "every window fired at the end of input"

    letters, dlq_audit = audit_json(setup.bootstrap, setup.dlq, audit_timeout)
    assert dlq_audit.pending_count == 0
    seen = Counter((int(d["split"].rsplit("-", 1)[1]), d["position"]) for d in letters)
    assert seen == Counter({pos: 1 for pos in oracle.malformed}), (
        "every malformed record is dead-lettered exactly once"
    )
    return {
        "outputs": len(outputs),
        "aborted_output_records": audit.aborted_count,
        # Writes of fenced producer epochs that the broker appended anyway (Tansu; 0 on Apache Kafka).
        "fenced_output_records": audit.fenced_count,
        "dead_letters": len(letters),
        "flushed_ids": len(flushed),
        "pending_ids": len(pending),
    }


def new_crash_setup(
    broker: KafkaBroker, topic_factory: Callable[..., str], tmp_path: Path, name: str, partitions: int
) -> CrashSetup:
    """Fresh topics (input and output with ``partitions`` partitions), a job name and directories."""
    return CrashSetup(
        bootstrap=broker.bootstrap_servers,
        job=unique_topic_name(f"{name}job"),
        input=topic_factory(f"{name}-in", partitions=partitions),
        output=topic_factory(f"{name}-out", partitions=partitions),
        dlq=topic_factory(f"{name}-dlq", partitions=1),
        checkpoint_topic=topic_factory(f"{name}-chk", partitions=1),
        checkpoint_dir=tmp_path / "checkpoints",
        work_dir=tmp_path,
        partitions=partitions,
    )
