"""The job manager's commands: ``eventapp run JOB --parallelism N`` (start it) and its REST
clients ``eventapp list | status | stop | cancel`` and ``eventapp savepoint trigger``.

    eventapp run my_jobs:job --parallelism 4 [--rest-port 8081] [--restart-strategy fixed-delay:attempts=3]
    eventapp list
    eventapp status JOB [--json]
    eventapp stop JOB [--savepoint DIR [--drain]]
    eventapp cancel JOB
    eventapp savepoint trigger JOB --target DIR [--type canonical|native]

Clients talk to ``--rest-url`` (default ``http://127.0.0.1:8081``, or ``EVENTAPP_REST_URL``) with
the token of ``--token-file`` (or ``EVENTAPP_REST_TOKEN``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventapp.daemon.config import DEFAULT_URL
from eventapp.errors import ConfigurationError
from eventapp.stream import Job

if TYPE_CHECKING:
    from eventapp.daemon.client import JobManagerClient

# The job manager and the client (starlette, uvicorn, prometheus-client, httpx) are imported when
# used: a worker process starts without them.

__all__ = ["add_client_parsers", "add_run_options", "run_client_command", "run_job_manager"]

TOKEN_ENV = "EVENTAPP_REST_TOKEN"
URL_ENV = "EVENTAPP_REST_URL"


def add_run_options(run: argparse.ArgumentParser) -> None:
    """The job manager's options of ``eventapp run``."""
    group = run.add_argument_group("job manager (--parallelism N without --subtask/--splits)")
    group.add_argument("--rest-host", default="127.0.0.1", help="REST API address (default 127.0.0.1)")
    group.add_argument("--rest-port", type=int, default=8081, help="REST API port (default 8081; 0: any)")
    group.add_argument(
        "--rest-token-file",
        type=Path,
        metavar="PATH",
        help=f"file holding the token non-GET REST calls must send (or set {TOKEN_ENV}); required "
        f"with a --rest-host other than loopback",
    )
    group.add_argument("--rest-tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this cert")
    group.add_argument("--rest-tls-key", type=Path, metavar="PEM", help="... and this key")
    group.add_argument(
        "--restart-strategy",
        default="exponential-delay",
        metavar="SPEC",
        help="how a failed worker restarts (Flink's): exponential-delay (default: 1 s, x1.5 per failure, "
        "at most 60 s, jitter 0.1), fixed-delay:attempts=3,delay=2s, failure-rate:max-failures=3,"
        "interval=60s,delay=1s, none",
    )
    # Internal: the job manager starts its workers with these.
    run.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)
    run.add_argument("--report-interval", type=float, default=1.0, help=argparse.SUPPRESS)


def _token(path: Path | None) -> str | None:
    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the REST token file {path}: {exc.strerror}") from exc
        if not token:
            raise ConfigurationError(f"the REST token file {path} is empty; write a random token into it")
        return token
    return os.environ.get(TOKEN_ENV) or None


def run_job_manager(job: Job, args: argparse.Namespace, restore_args: tuple[str, ...]) -> int:
    from eventapp.daemon.config import JobManagerConfig
    from eventapp.daemon.jobmanager import JobManager
    from eventapp.daemon.restart import parse_restart_strategy

    config = JobManagerConfig(
        target=args.target,
        parallelism=args.parallelism,
        restart_strategy=parse_restart_strategy(args.restart_strategy),
        rest_host=args.rest_host,
        rest_port=args.rest_port,
        rest_token=_token(args.rest_token_file),
        tls_certfile=args.rest_tls_cert,
        tls_keyfile=args.rest_tls_key,
        report_interval_s=args.report_interval,
        restore_args=restore_args,
        json_logs=args.json_logs,
        group=args.group,
    )
    return JobManager(job, config).run()


def add_client_parsers(sub: Any) -> None:
    def client_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--rest-url", default=None, help=f"the job manager (default {DEFAULT_URL} or ${URL_ENV})"
        )
        parser.add_argument("--token-file", type=Path, help=f"REST token file (or ${TOKEN_ENV})")

    listing = sub.add_parser("list", help="the jobs of a running job manager")
    client_options(listing)
    status = sub.add_parser("status", help="a job's state, slots and splits")
    status.add_argument("job", help="the job's name (its id in the REST API)")
    status.add_argument("--json", action="store_true")
    client_options(status)
    stop = sub.add_parser("stop", help="stop a job (with --savepoint: stop-with-savepoint)")
    stop.add_argument("job")
    stop.add_argument("--savepoint", metavar="DIR", help="write a savepoint under DIR as the job stops")
    stop.add_argument("--drain", action="store_true", help="emit the maximum watermark first (fires timers)")
    stop.add_argument("--type", dest="kind", choices=("canonical", "native"), default="canonical")
    stop.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    client_options(stop)
    cancel = sub.add_parser("cancel", help="cancel a job (no final checkpoint)")
    cancel.add_argument("job")
    client_options(cancel)


def add_trigger_parser(actions: Any) -> None:
    """``eventapp savepoint trigger`` (beside create/inspect/dispose)."""
    trigger = actions.add_parser("trigger", help="take a savepoint of a job running in a job manager")
    trigger.add_argument("job", help="the job's name")
    trigger.add_argument("--target", dest="directory", required=True, metavar="DIR")
    trigger.add_argument("--type", dest="kind", choices=("canonical", "native"), default="canonical")
    trigger.add_argument("--timeout", type=float, default=600.0)
    trigger.add_argument("--rest-url", default=None)
    trigger.add_argument("--token-file", type=Path)


def _client(args: argparse.Namespace) -> JobManagerClient:
    from eventapp.daemon.client import JobManagerClient

    url = args.rest_url or os.environ.get(URL_ENV) or DEFAULT_URL
    return JobManagerClient(url, _token(args.token_file))


def run_client_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.command == "list":
            for job in client.jobs():
                print(f"{job['jid']}  {job['state']}  tasks {job['tasks']}")
            return 0
        if args.command == "status":
            job = client.job(args.job)
            if args.json:
                print(json.dumps(job, indent=2))
                return 0
            print(
                f"job {job['name']}: {job['state']} (parallelism {job['parallelism']}, "
                f"restarts {job['restarts']})"
            )
            for slot in job["slots"]:
                print(
                    f"  slot {slot['subtask']}: {slot['status']} attempt {slot['attempt']} pid {slot['pid']}"
                )
            for split in job["splits"]:
                print(
                    f"  {split['split']}: slot {split['owner']} offset {split['offset']} lag {split['lag']} "
                    f"watermark {split['watermark']} checkpoint {split['last_checkpoint']}"
                )
            return 0
        if args.command == "cancel":
            client.cancel(args.job)
            print(f"cancelling job {args.job}")
            return 0
        if args.command == "stop":
            if args.savepoint is None:
                if args.drain:
                    raise ConfigurationError("--drain needs --savepoint DIR (stop-with-savepoint)")
                client.stop_without_savepoint(args.job)
                print(f"stopping job {args.job} (final checkpoints, no savepoint)")
                return 0
            trigger = client.stop(args.job, args.savepoint, drain=args.drain, native=args.kind == "native")
            location = client.wait_for_savepoint(args.job, trigger, args.timeout)
            print(f"Savepoint completed. Path: {location}")
            return 0
        # savepoint trigger
        trigger = client.trigger_savepoint(args.job, str(args.directory), native=args.kind == "native")
        location = client.wait_for_savepoint(args.job, trigger, args.timeout)
        print(f"Savepoint completed. Path: {location}")
        return 0
