"""How redis-py's errors map onto eventapp's (the one place this connector translates them).

Every Redis call of the connector goes through :func:`redis_failure`, which names what was being
done (the stream, key or script) and says what to do about it.
"""

from __future__ import annotations

import redis
import redis.exceptions

from eventapp.errors import EventAppError, SourceError

__all__ = ["describe_redis_error", "redis_failure", "safe_url", "stream_failure"]


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}://{user}:***@{host}" if user else f"{scheme}://***@{host}"


def describe_redis_error(exc: BaseException) -> str:
    """``ErrorType: message`` with a hint for the common causes."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, redis.exceptions.ResponseError) and "WRONGTYPE" in str(exc):
        return f"{text} (the key holds another type of value: delete or rename it, or write elsewhere)"
    # Authentication and authorization errors are ConnectionErrors too: they go first.
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return f"{text} (check the user and password in the Redis URL)"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"{text} (is the Redis server running and reachable?)"
    if isinstance(exc, redis.exceptions.NoScriptError):
        return f"{text} (the script cache was flushed; it is loaded again on retry)"
    return text


def redis_failure(error_type: type[EventAppError], what: str, url: str, exc: BaseException) -> EventAppError:
    """An ``error_type`` saying that ``what`` failed on the Redis at ``url`` and why."""
    return error_type(f"{what} on Redis {safe_url(url)} failed: {describe_redis_error(exc)}")


def stream_failure(source: str, stream: str, what: str, url: str, exc: BaseException) -> SourceError:
    """The :class:`SourceError` of ``what`` (a command) failing on stream ``stream`` of the stream
    source ``source``: a stream that is gone or holds another type says so, anything else reads as
    :func:`redis_failure`."""
    text = str(exc)
    where = f"Redis stream source {source!r}: stream {stream!r} on Redis {safe_url(url)}"
    if isinstance(exc, redis.exceptions.ResponseError) and "no such key" in text:
        return SourceError(
            f"{where} does not exist (never written, or deleted or expired while the job reads it): "
            f"create it (XADD, or XGROUP CREATE {stream} <group> $ MKSTREAM) or leave it out of the "
            f"source's streams, then restart the job"
        )
    if isinstance(exc, redis.exceptions.ResponseError) and "WRONGTYPE" in text:
        return SourceError(
            f"{where} is not a stream: the key holds another type of value (deleted and written as "
            f"another type?): rename one of them, or leave it out of the source's streams"
        )
    return SourceError(
        f"Redis stream source {source!r}: {what} of stream {stream!r} on Redis {safe_url(url)} failed: "
        f"{describe_redis_error(exc)}"
    )
