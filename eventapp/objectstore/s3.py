"""The object store seam (:class:`ObjectStore`) and its S3 implementation on boto3.

:class:`S3ObjectStore` reads its endpoint, region and credentials from :class:`S3Settings`; every
setting left ``None`` falls back to boto3's standard chain (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_REGION``,
``~/.aws/config`` and ``~/.aws/credentials``, instance roles). One boto3 client is shared by all
threads (boto3 clients are thread-safe); its connection pool is sized for ``max_workers`` parallel
transfers. Every request's errors are translated by :mod:`eventapp.objectstore.errors`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import structlog

from eventapp.errors import ConfigurationError, ObjectNotFoundError, ObjectStoreError
from eventapp.objectstore.errors import translated

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

__all__ = ["ObjectInfo", "ObjectStore", "S3ObjectStore", "S3Settings"]

log = structlog.get_logger("eventapp.objectstore")

_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
#: Files up to this size are stored with one PutObject; larger ones with a multipart upload.
SINGLE_PUT_MAX_BYTES = 16 * 1024 * 1024
_ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_Style = Literal["path", "virtual", "auto"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object: its key and size in bytes."""

    key: str
    size: int


@runtime_checkable
class ObjectStore(Protocol):
    """A bucket of an object store, addressed by full keys. Implementations are thread-safe."""

    @property
    def bucket(self) -> str: ...

    @property
    def endpoint(self) -> str:
        """Where requests go (for messages)."""
        ...

    def check(self) -> None:
        """Raise :class:`ObjectStoreError` unless the bucket exists and answers."""
        ...

    def put_file(self, key: str, path: Path) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_file(self, key: str, path: Path) -> None:
        """Download ``key`` into ``path``. Raises :class:`ObjectNotFoundError` if it does not exist."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The content of ``key``. Raises :class:`ObjectNotFoundError` if it does not exist."""
        ...

    def head(self, key: str) -> int | None:
        """The size of ``key``, or ``None`` if it does not exist."""
        ...

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""
        ...

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (missing keys are no error)."""
        ...

    def copy(self, source_key: str, target_key: str, *, source_bucket: str | None = None) -> None:
        """Copy an object into this bucket, server-side, from this bucket or ``source_bucket`` (of
        the same endpoint)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach an S3-compatible object store; ``None`` takes boto3's standard chain.

    ``endpoint_url``: e.g. ``http://127.0.0.1:8333`` for SeaweedFS or MinIO (``None``: AWS, or
    ``AWS_ENDPOINT_URL``). ``addressing_style``: ``None`` is ``"path"`` when an endpoint is set (here
    or in the environment; what self-hosted servers need), else boto3's default. ``max_workers``:
    files transferred in parallel per snapshot.
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    addressing_style: _Style | None = None
    max_workers: int = 8
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.endpoint_url is not None and not (
            isinstance(self.endpoint_url, str) and self.endpoint_url.startswith(("http://", "https://"))
        ):
            raise ConfigurationError(
                f"S3Settings.endpoint_url must be an http:// or https:// URL (for example "
                f"'http://127.0.0.1:8333'), got {self.endpoint_url!r}; leave it None for AWS or "
                f"AWS_ENDPOINT_URL"
            )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigurationError(
                "S3Settings needs both access_key_id and secret_access_key, or neither (then the "
                "standard AWS credential chain is used: AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws/credentials)"
            )
        if self.addressing_style not in (None, "path", "virtual", "auto"):
            raise ConfigurationError(
                f"S3Settings.addressing_style must be 'path', 'virtual', 'auto' or None, got "
                f"{self.addressing_style!r}"
            )
        workers = self.max_workers
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigurationError(
                f"S3Settings.max_workers must be an int >= 1 (parallel transfers), got {self.max_workers!r}; "
                f"the default 8 suits most cases"
            )
        if not self.connect_timeout_s > 0 or not self.read_timeout_s > 0:
            raise ConfigurationError(
                f"S3Settings timeouts must be > 0 seconds, got connect_timeout_s={self.connect_timeout_s!r} "
                f"and read_timeout_s={self.read_timeout_s!r}"
            )
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigurationError(
                f"S3Settings.max_attempts must be an int >= 1 (1: no retries), got {self.max_attempts!r}"
            )


def _addressing_style(settings: S3Settings) -> _Style:
    if settings.addressing_style is not None:
        return settings.addressing_style
    has_endpoint = settings.endpoint_url is not None or any(os.environ.get(n) for n in _ENDPOINT_ENV)
    return "path" if has_endpoint else "auto"


class S3ObjectStore:
    """:class:`ObjectStore` on one bucket of an S3-compatible store, through boto3."""

    def __init__(self, bucket: str, settings: S3Settings | None = None) -> None:
        # boto3 is imported here, not with eventapp (it costs ~0.3 s).
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self._bucket = bucket
        self.settings = settings = settings or S3Settings()
        session = boto3.session.Session(
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
            region_name=settings.region,
            profile_name=settings.profile,
        )
        config = Config(
            max_pool_connections=max(10, settings.max_workers * 2),
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            s3={"addressing_style": _addressing_style(settings)},
        )
        with translated("CreateClient", settings.endpoint_url or "(default endpoint)", bucket):
            self._client: S3Client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
        self._endpoint = str(self._client.meta.endpoint_url)
        self._transfer: TransferConfig = TransferConfig(max_concurrency=4)

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self._bucket!r}, endpoint={self._endpoint!r})"

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def check(self) -> None:
        with translated("HeadBucket", self._endpoint, self._bucket):
            self._client.head_bucket(Bucket=self._bucket)

    def put_file(self, key: str, path: Path) -> None:
        with translated("PutObject", self._endpoint, self._bucket, key):
            if path.stat().st_size <= SINGLE_PUT_MAX_BYTES:  # one request: far cheaper than upload_file
                self._client.put_object(Bucket=self._bucket, Key=key, Body=path.read_bytes())
            else:  # multipart, parts in parallel
                self._client.upload_file(str(path), self._bucket, key, Config=self._transfer)

    def put_bytes(self, key: str, data: bytes) -> None:
        with translated("PutObject", self._endpoint, self._bucket, key):
            self._client.put_object(Bucket=self._bucket, Key=key, Body=data)

    def get_file(self, key: str, path: Path) -> None:
        with translated("GetObject", self._endpoint, self._bucket, key):
            self._client.download_file(self._bucket, key, str(path), Config=self._transfer)

    def get_bytes(self, key: str) -> bytes:
        with translated("GetObject", self._endpoint, self._bucket, key):
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            return response["Body"].read()

    def head(self, key: str) -> int | None:
        try:
            with translated("HeadObject", self._endpoint, self._bucket, key):
                response = self._client.head_object(Bucket=self._bucket, Key=key)
        except ObjectNotFoundError:
            return None
        return int(response["ContentLength"])

    def list(self, prefix: str) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        with translated("ListObjectsV2", self._endpoint, self._bucket, prefix or None):
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix
            ):
                for item in page.get("Contents", []):
                    found.append(ObjectInfo(str(item["Key"]), int(item.get("Size", 0))))
        found.sort(key=lambda info: info.key)
        return found

    def delete_many(self, keys: Sequence[str]) -> None:
        unique = sorted(set(keys))
        for start in range(0, len(unique), _DELETE_BATCH):
            batch = unique[start : start + _DELETE_BATCH]
            with translated("DeleteObjects", self._endpoint, self._bucket, batch[0]):
                response = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise ObjectStoreError(
                    f"object store request DeleteObjects at {self._endpoint} could not delete "
                    f"{len(errors)} object(s), first s3://{self._bucket}/{first.get('Key')} "
                    f"({first.get('Code')}: {first.get('Message')}); check that the credentials may "
                    f"delete objects in bucket {self._bucket!r}"
                )

    def copy(self, source_key: str, target_key: str, *, source_bucket: str | None = None) -> None:
        bucket = source_bucket or self._bucket
        with translated("CopyObject", self._endpoint, bucket, source_key):
            self._client.copy(
                {"Bucket": bucket, "Key": source_key}, self._bucket, target_key, Config=self._transfer
            )

    def create_bucket(self) -> None:
        """Create this store's bucket; no error if it exists already (``BucketAlreadyOwnedByYou``, or
        ``BucketAlreadyExists``, which a restarted SeaweedFS answers for its own bucket; on AWS that
        code means another account's bucket, and the requests that follow are refused). Outside
        ``us-east-1`` the bucket is created in the client's region."""
        from typing import Any

        from botocore.exceptions import ClientError

        region = self._client.meta.region_name
        options: dict[str, Any] = {}
        if region and region != "us-east-1":  # AWS refuses a LocationConstraint of us-east-1
            options["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with translated("CreateBucket", self._endpoint, self._bucket):
            try:
                self._client.create_bucket(Bucket=self._bucket, **options)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    raise
                log.debug("objectstore.bucket.exists", endpoint=self._endpoint, bucket=self._bucket)
                return
        log.info("objectstore.bucket.created", endpoint=self._endpoint, bucket=self._bucket)

    def close(self) -> None:
        self._client.close()
