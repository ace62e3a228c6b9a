"""A client of the job manager's REST API (httpx), used by ``eventapp list | status | stop |
cancel | savepoint trigger``. Every failure is a :class:`~eventapp.errors.JobManagerError` that
says what to do."""

from __future__ import annotations

import time
from typing import Any

import httpx

from eventapp.daemon.config import DEFAULT_URL
from eventapp.errors import JobManagerError

__all__ = ["JobManagerClient"]


class JobManagerClient:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {} if not token else {"Authorization": f"Bearer {token}"}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JobManagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise JobManagerError(
                f"cannot reach the job manager at {self.url} ({type(exc).__name__}: {exc}); is "
                f"'eventapp run JOB --parallelism N' running there? Pass --rest-url if it serves "
                f"another address"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            errors = body.get("errors") if isinstance(body, dict) else None
            message = "; ".join(map(str, errors)) if errors else response.text[:300]
            raise JobManagerError(f"{method} {path} answered {response.status_code}: {message}")
        return body

    def jobs(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/jobs/overview")["jobs"])

    def job(self, jid: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{jid}"))

    def checkpoints(self, jid: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{jid}/checkpoints"))

    def exceptions(self, jid: str, limit: int = 16) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{jid}/exceptions", params={"maxExceptions": limit}))

    def cancel(self, jid: str) -> None:
        self._call("PATCH", f"/jobs/{jid}", params={"mode": "cancel"})

    def trigger_savepoint(self, jid: str, target: str, *, native: bool = False) -> str:
        body = {"target-directory": target, "format": "native" if native else "canonical"}
        return str(self._call("POST", f"/jobs/{jid}/savepoints", json=body)["request-id"])

    def stop(self, jid: str, target: str, *, drain: bool = False, native: bool = False) -> str:
        body = {"targetDirectory": target, "drain": drain, "format": "native" if native else "canonical"}
        return str(self._call("POST", f"/jobs/{jid}/stop", json=body)["request-id"])

    def stop_without_savepoint(self, jid: str) -> None:
        self._call("POST", f"/jobs/{jid}/stop", json={})

    def savepoint_status(self, jid: str, trigger: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{jid}/savepoints/{trigger}"))

    def wait_for_savepoint(self, jid: str, trigger: str, timeout_s: float) -> str:
        """The savepoint's location once the operation completed; JobManagerError if it failed or
        did not complete within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.savepoint_status(jid, trigger)
            state = status.get("status", {}).get("id")
            if state == "COMPLETED":
                operation = status.get("operation", {})
                if "failure-cause" in operation:
                    raise JobManagerError(f"the savepoint failed: {operation['failure-cause']}")
                return str(operation["location"])
            if time.monotonic() >= deadline:
                raise JobManagerError(
                    f"the savepoint {trigger} did not complete within {timeout_s:g} s; poll it with GET "
                    f"/jobs/{jid}/savepoints/{trigger} or pass a longer --timeout"
                )
            time.sleep(0.2)
