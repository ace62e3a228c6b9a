"""The job manager's REST API, dashboard and health endpoints (Starlette, served by uvicorn in a
thread of the job manager).

Flink-shaped JSON (``docs/operations.md`` lists every endpoint), at ``/`` and under ``/v1``:
``GET /overview``, ``/config``, ``/jobs``, ``/jobs/overview``, ``/jobs/{id}`` (status, slots, and
per split: owner, offset, lag, watermark, state size, last checkpoint), ``/jobs/{id}/checkpoints``,
``/jobs/{id}/exceptions?maxExceptions=N``, ``/jobs/{id}/metrics?get=a,b``; ``POST
/jobs/{id}/savepoints`` ``{"target-directory", "format", "triggerId"}`` and ``POST
/jobs/{id}/stop`` ``{"targetDirectory", "drain", "format", "triggerId"}`` answer 202 with a
``request-id`` to poll at ``GET /jobs/{id}/savepoints/{triggerId}``; ``PATCH
/jobs/{id}?mode=cancel`` cancels. Plus ``/metrics`` (Prometheus), ``/healthz`` (the process and
HTTP are up: never fails during a restore), ``/readyz`` (every split assigned, restored and
processing) and the dashboard at ``/``.

Errors are JSON ``{"errors": [message]}`` with 400 (bad request), 401 (no or wrong token), 404
(unknown job or path) or 409 (the job cannot do it now). With a token configured, every non-GET
request needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from eventapp.daemon.metrics import JobMetrics
from eventapp.daemon.status import JobStatus
from eventapp.errors import ConfigurationError, JobManagerError

if TYPE_CHECKING:
    from eventapp.daemon.jobmanager import JobManager

__all__ = ["RestServer", "create_app"]

VERSION = "0.1.0"
_STATIC = Path(str(resources.files("eventapp.daemon") / "static"))
_FORMATS = ("canonical", "native")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errors": [message]}, status_code=status)


class _TokenAuth(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str | None) -> None:
        super().__init__(app)
        self._token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self._token and request.method not in ("GET", "HEAD", "OPTIONS"):
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            expected = self._token.encode()
            if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected):
                return _error(401, "this job manager's control calls need 'Authorization: Bearer <token>'")
        return await call_next(request)


def create_app(jm: JobManager) -> Starlette:
    """The ASGI application of ``jm``."""
    state = jm.state
    metrics = JobMetrics(state)

    def job_of(request: Request) -> None:
        jid = request.path_params["jid"]
        if jid != state.job_name:
            raise HTTPException(404, f"job {jid!r} not found; this job manager runs job {state.job_name!r}")

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HTTPException(400, f"the request body must be a JSON object, got {type(body).__name__}")
        return body

    def overview(request: Request) -> JSONResponse:
        return JSONResponse({"eventapp-version": VERSION, **state.overview()})

    def config(request: Request) -> JSONResponse:
        cfg = jm.config
        return JSONResponse(
            {
                "eventapp-version": VERSION,
                "job": state.job_name,
                "target": cfg.target,
                "parallelism": cfg.parallelism,
                "restart-strategy": cfg.restart_strategy.describe(),
                "report-interval-s": cfg.report_interval_s,
                "checkpointing": jm.job.config.checkpoint is not None,
                "pid": os.getpid(),
            }
        )

    def jobs(request: Request) -> JSONResponse:
        with state.lock:
            return JSONResponse({"jobs": [{"id": state.job_name, "status": state.status.value}]})

    def jobs_overview(request: Request) -> JSONResponse:
        job = state.job_summary()
        return JSONResponse({"jobs": [job]})

    def job(request: Request) -> JSONResponse:
        job_of(request)
        return JSONResponse(state.job())

    def checkpoints(request: Request) -> JSONResponse:
        job_of(request)
        return JSONResponse(state.checkpoint_summary())

    def exceptions(request: Request) -> JSONResponse:
        job_of(request)
        raw = request.query_params.get("maxExceptions", "16")
        if not raw.isdigit():
            raise HTTPException(400, f"maxExceptions must be a number, got {raw!r}")
        return JSONResponse(state.exception_history(int(raw)))

    def job_metrics(request: Request) -> JSONResponse:
        job_of(request)
        values = state.flink_metrics()
        wanted = request.query_params.get("get")
        if wanted is None:
            return JSONResponse([{"id": name} for name in values])
        names = [n.strip() for n in wanted.split(",") if n.strip()]
        known = [n for n in names if values.get(n) is not None]  # unknown yet: left out, as in Flink
        return JSONResponse([{"id": n, "value": str(values[n])} for n in known])

    async def trigger_savepoint(request: Request) -> JSONResponse:
        job_of(request)
        body = await body_of(request)
        target = body.get("target-directory")
        return _trigger(body, "savepoint", target, drain=False)

    async def stop(request: Request) -> JSONResponse:
        job_of(request)
        body = await body_of(request)
        drain = body.get("drain", False)
        if not isinstance(drain, bool):
            raise HTTPException(400, f"drain must be true or false, got {drain!r}")
        if body.get("targetDirectory") is None and not drain:
            # No savepoint: stop with final checkpoints (as on SIGTERM).
            jm.request("signal", "POST /stop")
            return JSONResponse({}, status_code=202)
        return _trigger(body, "stop", body.get("targetDirectory"), drain=drain)

    def _trigger(body: dict[str, Any], kind: str, target: Any, *, drain: bool) -> JSONResponse:
        key = "target-directory" if kind == "savepoint" else "targetDirectory"
        if not isinstance(target, str) or not target:
            raise HTTPException(400, f"{key} is required: the directory to write the savepoint under")
        fmt = body.get("format", "canonical")
        if fmt not in _FORMATS:
            raise HTTPException(400, f"format must be one of {list(_FORMATS)}, got {fmt!r}")
        client_id = body.get("triggerId")
        if client_id is not None:
            client_id = str(client_id)
            with state.lock:
                existing = state.triggers.get(str(client_id))
            if existing is not None:
                return JSONResponse({"request-id": existing.id}, status_code=202)
        try:
            trigger = jm.new_trigger(kind, target, fmt == "native", drain, trigger_id=client_id)
        except JobManagerError as exc:
            raise HTTPException(409, str(exc)) from None
        return JSONResponse({"request-id": trigger.id}, status_code=202)

    def savepoint_status(request: Request) -> JSONResponse:
        job_of(request)
        tid = request.path_params["tid"]
        with state.lock:
            trigger = state.triggers.get(tid)
            if trigger is None:
                raise HTTPException(404, f"no savepoint operation {tid!r} on job {state.job_name!r}")
            if trigger.status != "IN_PROGRESS":
                trigger.fetched = True
            answer = trigger.to_json()
        jm.request("fetched")
        return JSONResponse(answer)

    def patch_job(request: Request) -> JSONResponse:
        job_of(request)
        mode = request.query_params.get("mode", "cancel")
        if mode != "cancel":
            raise HTTPException(400, f"mode must be 'cancel', got {mode!r}")
        with state.lock:
            if state.status.terminal or state.status in (JobStatus.FAILING, JobStatus.CANCELLING):
                raise HTTPException(409, f"job {state.job_name!r} is already {state.status.value}")
        jm.request("cancel")
        return JSONResponse({}, status_code=202)

    def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    def readyz(request: Request) -> JSONResponse:
        ready = state.ready()
        with state.lock:
            status = state.status.value
        return JSONResponse({"ready": ready, "state": status}, status_code=200 if ready else 503)

    def dashboard(request: Request) -> FileResponse:
        return FileResponse(_STATIC / "index.html")

    api: list[BaseRoute] = [
        Route("/overview", overview),
        Route("/config", config),
        Route("/jobs", jobs),
        Route("/jobs/overview", jobs_overview),
        Route("/jobs/{jid}", job),
        Route("/jobs/{jid}", patch_job, methods=["PATCH"]),
        Route("/jobs/{jid}/checkpoints", checkpoints),
        Route("/jobs/{jid}/exceptions", exceptions),
        Route("/jobs/{jid}/metrics", job_metrics),
        Route("/jobs/{jid}/savepoints", trigger_savepoint, methods=["POST"]),
        Route("/jobs/{jid}/savepoints/{tid}", savepoint_status),
        Route("/jobs/{jid}/stop", stop, methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail))

    return Starlette(
        routes=[
            *api,
            Mount("/v1", routes=api),
            Route("/metrics", prometheus),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/", dashboard),
            Mount("/static", StaticFiles(directory=_STATIC), name="static"),
        ],
        middleware=[Middleware(_TokenAuth, token=jm.config.rest_token)],
        exception_handlers={HTTPException: http_error},
    )


class RestServer:
    """Serves :func:`create_app` in a thread; :meth:`start` binds before returning."""

    def __init__(self, jm: JobManager) -> None:
        cfg = jm.config
        self._socket = free_port_socket(cfg.rest_host, cfg.rest_port)
        host, port = self._socket.getsockname()[:2]
        scheme = "https" if cfg.tls_certfile is not None else "http"
        self.url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(jm),
                log_level="warning",
                access_log=False,
                ssl_certfile=None if cfg.tls_certfile is None else str(cfg.tls_certfile),
                ssl_keyfile=None if cfg.tls_keyfile is None else str(cfg.tls_keyfile),
                lifespan="off",
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="eventapp-rest", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def free_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (the REST API's), or a ConfigurationError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot serve the REST API on {host}:{port}: {exc.strerror or exc}. Another job manager "
            f"(or program) uses that port: pass another --rest-port (0 picks a free one)"
        ) from exc
    sock.listen(128)
    os.set_inheritable(sock.fileno(), False)
    return sock
