"""A real Redis server for integration tests.

:func:`provide_redis_server` picks, in order:

1. ``$EVENTAPP_TEST_REDIS_URL`` set: use it, start nothing;
2. a Docker engine answers: ``testcontainers`` ``RedisContainer``;
3. otherwise: the local ``redis-server`` binary on a free loopback port, in a temp dir, no persistence
   (``--save '' --appendonly no``), in its own process group; stopped (SIGTERM, then SIGKILL) at the end.

If ``redis-server`` is missing the helper fails with a message telling to run
``scripts/install-test-deps.sh``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import redis

from eventapp.embedded_broker import find_free_port
from tests.support.broker import docker_available

__all__ = ["REDIS_URL_ENV", "RedisServer", "provide_redis_server"]

#: Use this Redis (``redis://host:port/db``) instead of starting one.
REDIS_URL_ENV = "EVENTAPP_TEST_REDIS_URL"
REDIS_IMAGE = os.environ.get("EVENTAPP_TEST_REDIS_IMAGE", "redis:7-alpine")
INSTALL_HINT = "run scripts/install-test-deps.sh (installs redis-server with apt-get)"


@dataclass(frozen=True)
class RedisServer:
    """A reachable Redis server and how it was obtained."""

    url: str
    host: str
    port: int
    source: Literal["external", "docker", "local"]
    log_path: Path | None = None
    startup_seconds: float | None = None

    def client(self, **kwargs: object) -> redis.Redis:
        """A new ``redis.Redis`` client for this server (caller closes it)."""
        return redis.Redis.from_url(self.url, **kwargs)


@contextlib.contextmanager
def provide_redis_server(
    work_dir: Path | None = None, startup_timeout: float = 20.0
) -> Iterator[RedisServer]:
    """Yield a :class:`RedisServer`: ``$EVENTAPP_TEST_REDIS_URL``, else Docker, else local binary.

    :param work_dir: directory for the local server's cwd and ``redis.log``; ``None``: a temp dir.
    """
    external = os.environ.get(REDIS_URL_ENV, "").strip()
    if external:
        client = redis.Redis.from_url(external, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.exceptions.RedisError as exc:
            raise RuntimeError(f"${REDIS_URL_ENV}={external} does not answer PING: {exc}") from exc
        finally:
            client.close()
        pool_kwargs = client.connection_pool.connection_kwargs
        yield RedisServer(
            external, str(pool_kwargs.get("host", "")), int(pool_kwargs.get("port", 6379)), "external"
        )
        return

    if docker_available():
        with _docker_redis() as server:
            yield server
        return

    with _local_redis(work_dir, startup_timeout) as server:
        yield server


@contextlib.contextmanager
def _docker_redis() -> Iterator[RedisServer]:
    from testcontainers.community.redis import RedisContainer

    began = time.monotonic()
    with RedisContainer(REDIS_IMAGE) as container:  # __enter__ starts it and waits for PING
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(container.port))
        yield RedisServer(
            f"redis://{host}:{port}/0", host, port, "docker", startup_seconds=time.monotonic() - began
        )


@contextlib.contextmanager
def _local_redis(work_dir: Path | None, startup_timeout: float) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            f"redis-server is not installed (not on PATH) and no Docker engine answers: {INSTALL_HINT}, "
            f"or set ${REDIS_URL_ENV} to an existing server."
        )
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eventapp-redis-")))
        work_dir.mkdir(parents=True, exist_ok=True)
        log_path = work_dir / "redis.log"
        host = "127.0.0.1"
        began = time.monotonic()
        last_error = ""
        for _ in range(3):  # a free port can be taken between find_free_port() and bind(): retry
            port = find_free_port(host)
            process = _spawn(binary, host, port, work_dir, log_path)
            stack.callback(_stop, process)
            ok, last_error = _wait_for_ping(process, host, port, startup_timeout)
            if ok:
                yield RedisServer(
                    f"redis://{host}:{port}/0",
                    host,
                    port,
                    "local",
                    log_path=log_path,
                    startup_seconds=time.monotonic() - began,
                )
                return
            _stop(process)
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise RuntimeError(f"redis-server did not answer PING: {last_error}\nlog {log_path}:\n{tail}")


def _spawn(binary: str, host: str, port: int, work_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        host,
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(work_dir),
        "--logfile",
        "",  # log to stdout, which goes to log_path
    ]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            cwd=work_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_ping(
    process: subprocess.Popen[bytes], host: str, port: int, timeout: float
) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    last_error = "timed out"
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            return False, f"redis-server exited with code {code}"
        client = redis.Redis(host=host, port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            if client.ping():
                return True, ""
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            last_error = str(exc)
        finally:
            client.close()
        time.sleep(0.02)
    return False, last_error


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
