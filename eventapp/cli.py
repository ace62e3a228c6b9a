"""The ``eventapp`` command line.

    eventapp run examples.fraud_kafka:build_job --parallelism 2 --subtask 0
    eventapp run my_jobs:job --splits orders-0,orders-3
    eventapp splits my_jobs:job
    eventapp savepoint create my_jobs:job --target /savepoints
    eventapp run my_jobs:job --from-savepoint /savepoints/savepoint-...

``run`` imports ``module:attribute`` (a :class:`~eventapp.Job` or a function returning one), picks
the splits of this worker and runs them until the source ends or SIGTERM/SIGINT arrives; a stop
takes a final checkpoint when checkpointing is on. Splits are assigned statically: split ``i`` of
the source's sorted split list goes to subtask ``i % parallelism``. ``--from-checkpoint PATH`` and
``--start-fresh`` decide what splits restore from when the committed checkpoint is not the answer
(:mod:`eventapp.checkpoint.restore`). Exit codes: 0 done or stopped, 1 the job failed (the error
names what and where), 2 wrong usage, 3 superseded: a newer instance of the job took over this
worker's splits (:mod:`eventapp.connectors.kafka.ownership`); do not restart it.
"""

from __future__ import annotations

import argparse
import importlib
import random
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from eventapp import cli_daemon, cli_savepoint
from eventapp.assignment import Subtask, assign_splits, sorted_splits
from eventapp.checkpoint.restore import RestoreRequest
from eventapp.daemon.worker_link import WorkerLink
from eventapp.errors import (
    ConfigurationError,
    EventAppError,
    JobManagerError,
    ProducerFencedError,
    SupersededError,
)
from eventapp.log import configure_logging
from eventapp.runtime import gc_tuning
from eventapp.source import discovers_splits
from eventapp.stream import Job

if TYPE_CHECKING:
    from eventapp.runtime.local import LocalRunner

__all__ = ["load_job", "main"]

log = structlog.get_logger("eventapp.cli")


def load_job(target: str) -> Job:
    """Import ``module:attribute``; the attribute is a Job or a zero-argument callable returning one."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(
            f"job target {target!r} must look like 'package.module:attribute', for example "
            f"'examples.fraud_kafka:build_job'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import module {module_name!r} of job target {target!r}: {exc}. Is it on "
            f"PYTHONPATH (run from the project directory)?"
        ) from exc
    obj = getattr(module, attribute, None)
    if obj is None:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attribute!r}")
    job = obj() if callable(obj) and not isinstance(obj, Job) else obj
    if not isinstance(job, Job):
        raise ConfigurationError(f"{target!r} is not an eventapp Job (got {type(job).__name__})")
    return job


def _check_parallelism(parallelism: int) -> None:
    if parallelism < 1:
        raise ConfigurationError(
            f"--parallelism must be >= 1 (the number of workers), got {parallelism}; for example "
            f"--parallelism 2 --subtask 0 on one worker and --parallelism 2 --subtask 1 on the other"
        )


def _too_many_subtasks(source: str, available: Sequence[str]) -> str:
    """Why some subtasks get no splits, and the fix."""
    count = len(available)
    if count == 0:
        return f"source {source!r} has no splits, so no subtask gets work; check the source's configuration"
    splits = "split" if count == 1 else "splits"
    subtasks = "subtask gets" if count == 1 else "subtasks get"
    return (
        f"source {source!r} has {count} {splits}, so at most {count} {subtasks} work; lower "
        f"--parallelism to <= {count}"
    )


def _subtasks(count: int) -> str:
    return f"{count} subtask" if count == 1 else f"{count} subtasks"


def _chosen_splits(option: str, source: str, available: Sequence[str], target: str) -> list[str]:
    """The split ids of ``--splits``: at least one, each a split of the source."""
    chosen = [s.strip() for s in option.split(",") if s.strip()]
    ordered = sorted_splits(available)
    example = f"--splits {','.join(ordered[:2])}" if ordered else "--splits orders-0,orders-3"
    if not chosen:
        raise ConfigurationError(
            f"--splits {option!r} is empty (it names no split ids): pass comma-separated split ids "
            f"of source {source!r}, for example {example} (eventapp splits {target} lists them)"
        )
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise ConfigurationError(
            f"--splits {option!r}: {', '.join(repr(s) for s in unknown)} "
            f"{'is not a split' if len(unknown) == 1 else 'are not splits'} of source {source!r}; "
            f"its splits are {', '.join(ordered) or '(none)'}. Pass some of these, for example {example}"
        )
    return chosen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventapp", description="Run and inspect eventapp jobs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a job (or some of its splits) in this process")
    run.add_argument("target", help="the job: 'package.module:attribute'")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--splits", help="comma-separated split ids this worker runs (default: all)")
    group.add_argument("--subtask", type=int, help="this worker's index, with --parallelism")
    group.add_argument(
        "--group",
        action="store_true",
        help="let the source's consumer group assign this worker's splits (KafkaSourceConfig("
        "group_assignment=True)): run as many workers as you like, on any machines; with "
        "--parallelism N, a job manager runs N of them",
    )
    run.add_argument(
        "--group-instance-id",
        metavar="ID",
        help="with --group: this worker's static membership id (group.instance.id), stable across "
        "restarts, so a restart does not rebalance",
    )
    run.add_argument(
        "--parallelism",
        type=int,
        default=None,
        help="number of workers. Without --subtask/--splits: start a job manager running that many "
        "supervised worker processes, with a REST API, metrics and dashboard (docs/operations.md)",
    )
    run.add_argument("--json-logs", action=argparse.BooleanOptionalAction, default=None)
    restore = run.add_mutually_exclusive_group()
    restore.add_argument(
        "--from-checkpoint",
        metavar="PATH",
        type=cli_savepoint.path_or_uri,
        help="restore splits from these snapshots (a snapshot, split or job directory of checkpoint "
        "storage, or s3://bucket/prefix/JOB[/SPLIT[/SNAPSHOT]]) instead of their committed "
        "checkpoints; they are never modified or deleted",
    )
    restore.add_argument(
        "--from-savepoint",
        metavar="DIR",
        type=cli_savepoint.path_or_uri,
        help="restore the job from a savepoint (eventapp savepoint create; a directory or an s3:// "
        "URI, downloaded first); it is never modified or "
        "deleted, and the first checkpoint after it is a full one",
    )
    run.add_argument(
        "--allow-non-restored-state",
        action="store_true",
        help="with --from-savepoint: drop the state of operators the job no longer has (listed)",
    )
    run.add_argument(
        "--rename-uid",
        action="append",
        metavar="OLD=NEW",
        help="with --from-savepoint: restore operator OLD's state into operator NEW (repeatable)",
    )
    restore.add_argument(
        "--start-fresh",
        action="store_true",
        help="start splits whose committed checkpoint is unknown (but whose storage holds committed "
        "snapshots) from empty state, archiving those snapshots (never deleting them)",
    )
    cli_daemon.add_run_options(run)
    splits = sub.add_parser("splits", help="list a job's splits and their assignment")
    splits.add_argument("target")
    splits.add_argument("--parallelism", type=int, default=1)
    cli_savepoint.add_parsers(sub)
    cli_daemon.add_client_parsers(sub)
    return parser


#: Exit code of a worker that a newer instance of the same job superseded (do not restart it).
EXIT_SUPERSEDED = 3
#: How often a worker fenced by an *older* instance recovers its splits again before giving up.
FENCED_RECOVERY_ATTEMPTS = 5


def _run_worker(
    job: Job,
    splits: list[str],
    restore: RestoreRequest,
    link: WorkerLink | None = None,
    group: tuple[bool, str | None] = (False, None),
    subtask: Subtask | None = None,
) -> int:
    """Run the worker's splits until done or stopped. Fenced by an older instance of the job (one
    that fenced before it saw this instance's claim, see eventapp.connectors.kafka.ownership), it
    recovers again with backoff, at most FENCED_RECOVERY_ATTEMPTS times; superseded by a newer one,
    it raises SupersededError."""
    # Signal handlers run between two bytecodes of the main thread, which may hold a lock at that
    # moment (structlog's output lock, an Event's condition): they only set plain attributes. The
    # runner logs job.stop_requested from its loop.
    stop_signals: list[str] = []
    attempt = 0
    if gc_tuning.wanted():
        previous = gc_tuning.tune_for_streaming()
        log.debug("worker.gc_tuned", threshold=gc_tuning.GEN0_THRESHOLD, previous=list(previous))
    while True:
        runner = job.runner(
            None if group[0] else splits,
            restore,
            group=group[0],
            group_instance_id=group[1],
            subtask=subtask,
        )

        def stop(signum: int, frame: FrameType | None, runner: LocalRunner = runner) -> None:
            stop_signals.append(signal.Signals(signum).name)
            runner.request_stop(f"signal {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if link is not None:
            link.attach(runner)
        try:
            runner.run(on_step=None if link is None else link.on_step)
            if link is not None:
                link.exiting(runner.finished)
            return 0
        except SupersededError as exc:
            if link is not None:
                link.failed(exc)
            raise
        except ProducerFencedError as exc:
            attempt += 1
            if attempt > FENCED_RECOVERY_ATTEMPTS:
                if link is not None:
                    link.failed(exc)
                raise
            if runner.result().checkpoints:
                restore = RestoreRequest()  # progress was committed: restore that, not the user's snapshot
            backoff = min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            log.warning(
                "job.fenced_recovering",
                job=job.name,
                attempt=attempt,
                attempts=FENCED_RECOVERY_ATTEMPTS,
                backoff_s=round(backoff, 3),
                split=exc.split,
                error=str(exc),
            )
            resume_at = time.monotonic() + backoff
            while not stop_signals and time.monotonic() < resume_at:
                time.sleep(0.05)
            if stop_signals:
                log.info("job.stop_requested", job=job.name, signal=stop_signals[0])
                return 0
        except EventAppError as exc:
            if link is not None:
                link.failed(exc)
            raise


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(json=getattr(args, "json_logs", None))
    try:
        if args.command in ("list", "status", "stop", "cancel") or (
            args.command == "savepoint" and args.action == "trigger"
        ):
            return cli_daemon.run_client_command(args)
        if args.command in ("savepoint", "checkpoints"):
            return cli_savepoint.run_command(args, load_job)
        supervised = (
            args.command == "run"
            and args.parallelism is not None
            and (args.subtask is None and args.splits is None and args.report_fd is None)
        )
        grouped = args.command == "run" and args.group
        if args.command == "run" and args.group_instance_id and not args.group:
            raise ConfigurationError(
                "--group-instance-id needs --group (static membership of a consumer group)"
            )
        if args.parallelism is None:
            args.parallelism = 1
        _check_parallelism(args.parallelism)
        job = load_job(args.target)
        source = job.source_node.source if job.source_node is not None else None
        if source is None:
            raise ConfigurationError(f"job {job.name!r} has no source")
        available = job.splits()
        discovering = discovers_splits(source)  # splits go by owner_of, and may come later
        if args.command == "splits":
            if args.parallelism > len(available) and not discovering:
                raise ConfigurationError(
                    f"--parallelism {args.parallelism} leaves {_subtasks(args.parallelism - len(available))} "
                    f"without splits: "
                    f"{_too_many_subtasks(source.name, available)}"
                )
            for i in range(args.parallelism):
                own = assign_splits(available, args.parallelism, i, discovering=discovering)
                print(f"subtask {i}: {', '.join(own)}")
            return 0
        restore_args = _restore_args(args)
        if supervised:
            return cli_daemon.run_job_manager(job, args, restore_args)
        subtask: Subtask | None = None
        if grouped:
            chosen = []  # the consumer group assigns them
        elif args.splits is not None:
            chosen = _chosen_splits(args.splits, source.name, available, args.target)
        elif args.subtask is not None:
            subtask = Subtask(args.subtask, args.parallelism)
            chosen = assign_splits(available, args.parallelism, args.subtask, discovering=discovering)
            if not chosen and not discovering:
                raise ConfigurationError(
                    f"subtask {args.subtask} of --parallelism {args.parallelism} gets no splits: "
                    f"{_too_many_subtasks(source.name, available)}"
                )
        else:
            if args.parallelism != 1:
                raise ConfigurationError(
                    f"--parallelism {args.parallelism} needs --subtask (this worker's index, 0 to "
                    f"{args.parallelism - 1}), for example --parallelism {args.parallelism} --subtask 0"
                )
            chosen = available
            subtask = Subtask(0, 1)
            if not chosen and not discovering:
                raise ConfigurationError(f"job {job.name!r}: {_too_many_subtasks(source.name, available)}")
        # Every log line of this worker carries its subtask (and the job, bound by the runner).
        structlog.contextvars.bind_contextvars(
            subtask=args.subtask if args.subtask is not None else 0, parallelism=args.parallelism
        )
        restore = RestoreRequest(
            from_checkpoint=args.from_checkpoint,
            start_fresh=args.start_fresh,
            from_savepoint=args.from_savepoint,
            allow_non_restored_state=args.allow_non_restored_state,
            uid_renames=cli_savepoint.parse_renames(args.rename_uid),
        )
        link = None
        if args.report_fd is not None:
            link = WorkerLink(args.report_fd, args.report_interval)
        return _run_worker(job, chosen, restore, link, (grouped, args.group_instance_id), subtask)
    except SupersededError as exc:
        print(f"eventapp: superseded: {exc}", file=sys.stderr)
        return EXIT_SUPERSEDED
    except ConfigurationError as exc:
        print(f"eventapp: configuration error: {exc}", file=sys.stderr)
        return 2
    except JobManagerError as exc:
        print(f"eventapp: {exc}", file=sys.stderr)
        return 1
    except EventAppError as exc:
        print(f"eventapp: job failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        structlog.contextvars.unbind_contextvars("subtask", "parallelism")


def _restore_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The restore options of ``run`` again, for the job manager's workers."""
    out: list[str] = []
    if args.from_checkpoint is not None:
        out += ["--from-checkpoint", str(args.from_checkpoint)]
    if args.from_savepoint is not None:
        out += ["--from-savepoint", str(args.from_savepoint)]
    if args.start_fresh:
        out.append("--start-fresh")
    if args.allow_non_restored_state:
        out.append("--allow-non-restored-state")
    for rename in args.rename_uid or ():
        out += ["--rename-uid", rename]
    return tuple(out)


if __name__ == "__main__":
    sys.exit(main())
