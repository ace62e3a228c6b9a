"""How redis-py's errors map onto eventapp's (the one place this connector translates them).

Every Redis call of the connector goes through :func:`redis_failure`, which names what was being
done (the stream, key or script) and says what to do about it.
"""

from __future__ import annotations

import redis
import redis.exceptions

from eventapp.errors import EventAppError

__all__ = ["describe_redis_error", "redis_failure", "safe_url"]


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
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"{text} (is the Redis server running and reachable?)"
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return f"{text} (check the user and password in the Redis URL)"
    if isinstance(exc, redis.exceptions.NoScriptError):
        return f"{text} (the script cache was flushed; it is loaded again on retry)"
    return text


def redis_failure(error_type: type[EventAppError], what: str, url: str, exc: BaseException) -> EventAppError:
    """An ``error_type`` saying that ``what`` failed on the Redis at ``url`` and why."""
    return error_type(f"{what} on Redis {safe_url(url)} failed: {describe_redis_error(exc)}")
