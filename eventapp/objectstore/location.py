"""Where in an object store something lives: ``s3://bucket/prefix`` parsed and validated."""

from __future__ import annotations

import re
from dataclasses import dataclass

from eventapp.errors import ConfigurationError

__all__ = ["ObjectLocation"]

#: S3's bucket naming rules (3-63 characters, lowercase letters, digits, dots and hyphens, starting
#: and ending with a letter or digit).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SCHEME = "s3://"


@dataclass(frozen=True, slots=True)
class ObjectLocation:
    """A bucket and a key prefix inside it (``""``: the whole bucket; never with a slash at either
    end). :meth:`parse` reads ``s3://bucket/prefix``."""

    bucket: str
    prefix: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.bucket, str) or not _BUCKET.match(self.bucket) or ".." in self.bucket:
            raise ConfigurationError(
                f"{self.bucket!r} is not a valid S3 bucket name: use 3 to 63 lowercase letters, digits, "
                f"dots and hyphens, starting and ending with a letter or digit "
                f"(for example 's3://my-checkpoints/jobs')"
            )
        if not isinstance(self.prefix, str) or self.prefix != self.prefix.strip("/"):
            raise ConfigurationError(
                f"the key prefix {self.prefix!r} must not start or end with '/': write "
                f"{self.prefix.strip('/')!r} (s3://{self.bucket}/{self.prefix.strip('/')})"
            )
        parts = self.prefix.split("/") if self.prefix else []
        if any(part in ("", ".", "..") for part in parts) or "\x00" in self.prefix:
            raise ConfigurationError(
                f"the key prefix {self.prefix!r} has an empty, '.' or '..' component; write it as "
                f"'name/name' (for example 's3://{self.bucket}/checkpoints/prod')"
            )

    @classmethod
    def parse(cls, uri: str) -> ObjectLocation:
        """``s3://bucket`` or ``s3://bucket/prefix/path`` (a trailing slash is ignored)."""
        if not isinstance(uri, str) or not uri.startswith(_SCHEME):
            raise ConfigurationError(
                f"{uri!r} is not an object store URI: write 's3://bucket' or 's3://bucket/prefix' "
                f"(for example 's3://my-checkpoints/jobs')"
            )
        rest = uri[len(_SCHEME) :]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigurationError(
                f"{uri!r} names no bucket: write 's3://bucket' or 's3://bucket/prefix' "
                f"(for example 's3://my-checkpoints/jobs')"
            )
        return cls(bucket, prefix.rstrip("/"))

    def key(self, *parts: str) -> str:
        """The key of ``parts`` (joined with ``/``) under the prefix."""
        return "/".join(p for p in (self.prefix, *parts) if p)

    def uri(self, key: str = "") -> str:
        """``s3://bucket/key`` (``key`` defaults to the prefix itself)."""
        return f"{_SCHEME}{self.bucket}/{key or self.prefix}".rstrip("/")

    def __str__(self) -> str:
        return self.uri()
