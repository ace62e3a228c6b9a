"""A real Redis Cluster for integration tests.

:func:`provide_redis_cluster` uses ``$EVENTAPP_TEST_REDIS_CLUSTER_URL`` (any node of an existing
cluster) if set; otherwise it starts three local ``redis-server`` primaries with cluster mode on
(free loopback ports whose cluster-bus twin, port + 10000, is free too), joins them with
``redis-cli --cluster create`` and waits until every node reports ``cluster_state:ok``. They are
stopped (SIGTERM, then SIGKILL) at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from eventapp.embedded_broker import find_free_port

__all__ = ["REDIS_CLUSTER_URL_ENV", "RedisClusterServers", "provide_redis_cluster"]

REDIS_CLUSTER_URL_ENV = "EVENTAPP_TEST_REDIS_CLUSTER_URL"
NODES = 3


@dataclass(frozen=True)
class RedisClusterServers:
    url: str  # one node; cluster clients discover the others


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = find_free_port()
        if port < 55_536 and port not in ports and _bindable(port + 10_000):
            ports.append(port)
    return ports


@contextlib.contextmanager
def provide_redis_cluster(work_dir: Path, startup_timeout: float = 60.0) -> Iterator[RedisClusterServers]:
    external = os.environ.get(REDIS_CLUSTER_URL_ENV)
    if external:
        yield RedisClusterServers(external)
        return
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise RuntimeError("redis-server and redis-cli are needed: run scripts/install-test-deps.sh")
    ports = _ports(NODES)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = work_dir / f"node-{port}"
            node_dir.mkdir(parents=True)
            processes.append(
                subprocess.Popen(
                    [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"],
                    cwd=node_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                )
            )  # fmt: skip
        deadline = time.monotonic() + startup_timeout
        for port in ports:
            _wait(lambda port=port: redis.Redis(port=port).ping(), deadline, f"node {port} to answer")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=startup_timeout,
        )  # fmt: skip
        for port in ports:
            _wait(lambda port=port: _cluster_ok(port), deadline, f"node {port} to report cluster_state:ok")
        yield RedisClusterServers(f"redis://127.0.0.1:{ports[0]}/0")
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _cluster_ok(port: int) -> bool:
    info = redis.Redis(port=port).execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
    state = info.get("cluster_state") if isinstance(info, dict) else None
    return state in ("ok", b"ok")


def _wait(check: object, deadline: float, what: str) -> None:
    """Poll ``check`` until it is true (errors mean: not up yet) or the deadline passes."""
    assert callable(check)
    last: BaseException | None = None
    while True:
        try:
            if check():
                return
        except (redis.exceptions.RedisError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the test Redis Cluster did not come up: waited for {what} (last error: {last})"
            )
        time.sleep(0.05)
