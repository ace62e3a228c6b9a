"""The one place where boto3/botocore exceptions become eventapp errors.

Every request of :class:`~eventapp.objectstore.s3.S3ObjectStore` runs inside :func:`translated`,
which raises :class:`~eventapp.errors.ObjectStoreError` (or :class:`~eventapp.errors.ObjectNotFoundError`)
with a message naming the endpoint, bucket and key, and how to fix the usual causes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from eventapp.errors import ObjectNotFoundError, ObjectStoreError

__all__ = ["object_store_error", "translated"]

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}
_CONFIGURE = (
    "Configure it with the standard AWS settings (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY, AWS_REGION, or ~/.aws/config and ~/.aws/credentials) or explicitly with "
    "ObjectCheckpointStorage(uri, settings=S3Settings(...)); see docs/object-storage.md."
)


@contextlib.contextmanager
def translated(operation: str, endpoint: str, bucket: str, key: str | None = None) -> Iterator[None]:
    """Run a request, turning boto3/botocore exceptions into :class:`ObjectStoreError`."""
    from boto3.exceptions import Boto3Error  # boto3 is loaded by then; importing it costs ~0.3 s

    try:
        yield
    except (BotoCoreError, ClientError, Boto3Error) as exc:
        raise object_store_error(exc, operation, endpoint, bucket, key) from exc


def _client_error(exc: BaseException) -> ClientError | None:
    """The ClientError behind ``exc`` (boto3's transfer manager wraps it into S3UploadFailedError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ClientError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def object_store_error(
    exc: BaseException, operation: str, endpoint: str, bucket: str, key: str | None
) -> ObjectStoreError:
    """The eventapp error for ``exc`` raised by ``operation`` on ``bucket``/``key`` at ``endpoint``."""
    where = f"s3://{bucket}/{key}" if key else f"bucket {bucket!r}"
    what = f"object store request {operation} of {where} at {endpoint}"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ObjectStoreError(
            f"{what} failed: no (complete) credentials were found ({exc}). Set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, ~/.aws/credentials), or pass "
            f"S3Settings(access_key_id=..., secret_access_key=...). {_CONFIGURE}"
        )
    if isinstance(exc, ConnectionError):
        return ObjectStoreError(
            f"{what} failed: cannot reach the endpoint ({exc}). Check that the object store runs and "
            f"that the endpoint URL is right (AWS_ENDPOINT_URL or S3Settings(endpoint_url=...)). "
            f"{_CONFIGURE}"
        )
    client_error = _client_error(exc)
    if client_error is None:
        return ObjectStoreError(f"{what} failed: {type(exc).__name__}: {exc}. {_CONFIGURE}")
    error = client_error.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or str(client_error)
    if code == "NoSuchBucket" or (code in _NOT_FOUND and key is None):
        return ObjectStoreError(
            f"{what} failed: the bucket {bucket!r} does not exist at {endpoint}. Create it (for "
            f"example 'aws s3 mb s3://{bucket}'), or fix the bucket name or the endpoint. {_CONFIGURE}"
        )
    if code in _NOT_FOUND:
        return ObjectNotFoundError(f"{what} failed: there is no object s3://{bucket}/{key} ({code}).")
    if code in _DENIED:
        return ObjectStoreError(
            f"{what} was refused ({code}: {message}): the credentials are wrong or may not use "
            f"{where} (some servers answer so for a bucket that does not exist). Check "
            f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the profile) and the bucket's policy. "
            f"{_CONFIGURE}"
        )
    return ObjectStoreError(f"{what} failed ({code or type(exc).__name__}: {message}). {_CONFIGURE}")
