"""The ``eventapp savepoint ...`` and ``eventapp checkpoints ...`` commands (shaped like Flink's).

    eventapp savepoint create JOB --target DIR [--type canonical|native]
    eventapp savepoint inspect DIR [--operator UID] [--state NAME] [--key K] [--json]
    eventapp savepoint dispose DIR
    eventapp savepoint copy SRC DST
    eventapp savepoint trigger JOB --target DIR [--type canonical|native]   (a running job manager's job)
    eventapp checkpoints list JOB [--json]

Every DIR, SRC and DST may be an ``s3://bucket/prefix`` URI (:mod:`eventapp.savepoint.remote`).
Restoring is ``eventapp run JOB --from-savepoint DIR [--allow-non-restored-state]
[--rename-uid OLD=NEW]`` (:mod:`eventapp.cli`).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eventapp import cli_daemon
from eventapp.errors import ConfigurationError
from eventapp.savepoint.create import create_savepoint
from eventapp.savepoint.reader import Savepoint
from eventapp.savepoint.remote import (
    copy_savepoint,
    create_savepoint_at,
    dispose_savepoint,
    is_remote,
    path_or_uri,
)
from eventapp.stream import Job

__all__ = ["add_parsers", "parse_renames", "path_or_uri", "run_command"]


def add_parsers(sub: Any) -> None:
    """Add the ``savepoint`` and ``checkpoints`` commands to the ``eventapp`` parser."""
    savepoint = sub.add_parser("savepoint", help="create, inspect and dispose of savepoints")
    actions = savepoint.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="write a savepoint of JOB from every split's newest committed checkpoint (commits "
        "nothing, never a recovery point by itself)",
    )
    create.add_argument("target", help="the job: 'package.module:attribute'")
    create.add_argument(
        "--target",
        dest="directory",
        type=path_or_uri,
        required=True,
        metavar="DIR",
        help="the directory (or s3://bucket/prefix) to write the savepoint under",
    )
    create.add_argument(
        "--type",
        dest="kind",
        choices=("canonical", "native"),
        default="canonical",
        help="canonical (default): portable entries files, restore into any backend and re-shard; "
        "native: the checkpoints' own state backend files, fast to create and to restore into the "
        "same backend on the same splits (Flink's --type)",
    )
    inspect = actions.add_parser("inspect", help="show what a savepoint holds")
    inspect.add_argument("path", type=path_or_uri, metavar="DIR", help="a savepoint directory or s3:// URI")
    inspect.add_argument("--operator", metavar="UID", help="only this operator")
    inspect.add_argument("--state", metavar="NAME", help="only this state (with --operator)")
    inspect.add_argument("--key", metavar="K", help="one key's entries as JSON (with --operator)")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    dispose = actions.add_parser(
        "dispose", help="delete a savepoint directory or s3:// savepoint (checked first)"
    )
    dispose.add_argument("path", type=path_or_uri, metavar="DIR")
    copy = actions.add_parser(
        "copy",
        help="copy a savepoint between a local directory and s3://bucket/prefix (or two s3:// URIs); "
        "SRC is checked first, DST is the new savepoint and must not exist",
    )
    copy.add_argument("source", type=path_or_uri, metavar="SRC")
    copy.add_argument("destination", type=path_or_uri, metavar="DST")
    cli_daemon.add_trigger_parser(actions)
    checkpoints = sub.add_parser("checkpoints", help="list a job's checkpoints")
    cactions = checkpoints.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = cactions.add_parser("list", help="the snapshots of each split in checkpoint storage")
    listing.add_argument("target", help="the job: 'package.module:attribute'")
    listing.add_argument("--json", action="store_true", help="print JSON")


def parse_renames(values: Sequence[str] | None) -> dict[str, str]:
    """``--rename-uid OLD=NEW`` options as a dict."""
    renames: dict[str, str] = {}
    for value in values or ():
        old, sep, new = value.partition("=")
        if not sep or not old or not new:
            raise ConfigurationError(
                f"--rename-uid {value!r} must look like OLD=NEW, for example counts=card-counts"
            )
        renames[old] = new
    return renames


def run_command(args: argparse.Namespace, load_job: Callable[[str], Job]) -> int:
    if args.command == "checkpoints":
        return _list_checkpoints(load_job(args.target), as_json=args.json)
    if args.action == "create":
        return _create(load_job(args.target), args.directory, native=args.kind == "native")
    if args.action == "inspect":
        return _inspect(args)
    if args.action == "copy":
        return _copy(args.source, args.destination)
    return _dispose(args.path)


def _storage(job: Job) -> Any:
    checkpoint = job.config.checkpoint
    if checkpoint is None:
        raise ConfigurationError(
            f"job {job.name!r} has no checkpointing (JobConfig(checkpoint=...)): it has no checkpoints "
            f"and no savepoint can be made of it"
        )
    return checkpoint.resolved_storage()


def _job_splits(job: Job) -> list[str]:
    if job.source_node is None:
        raise ConfigurationError(f"job {job.name!r} has no source")
    return job.splits()


def _create(job: Job, target: Path | str, *, native: bool) -> int:
    storage, splits = _storage(job), _job_splits(job)
    path, created = create_savepoint_at(
        target,
        lambda directory: create_savepoint(
            storage,
            job.name,
            splits,
            directory,
            max_parallelism=job.config.max_parallelism,
            partitioner=job.config.partitioner.describe(),
            native=native,
        ),
    )
    meta = created.metadata
    print(f"Savepoint completed. Path: {path}")
    if native:
        print(f"  job {meta.job!r}, id {meta.id}, {len(meta.splits)} splits, native ({meta.backend} files)")
    else:
        entries = sum(s.entries for s in meta.splits.values())
        print(f"  job {meta.job!r}, id {meta.id}, {len(meta.splits)} splits, {entries} entries")
    if created.never_checkpointed:
        never = ", ".join(created.never_checkpointed)
        print(f"  splits with no committed checkpoint (empty, no position): {never}")
    print(f"Restore with: eventapp run JOB --from-savepoint {path}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    savepoint = Savepoint.open(args.path)
    meta = savepoint.metadata
    if (args.state is not None or args.key is not None) and args.operator is None:
        raise ConfigurationError("--state and --key need --operator UID")
    if args.key is not None:
        found = savepoint.key_entries(args.operator, args.key)
        if args.state is not None:
            found = [e for e in found if e["name"] == args.state]
        print(json.dumps({"operator": args.operator, "key": args.key, "entries": found}, indent=1))
        return 0 if found else 1
    operators = meta.operators
    if args.operator is not None:
        savepoint.check_operator(args.operator)
        operators = {args.operator: operators[args.operator]}
    if args.json:
        data = meta.to_json()
        data["operators"] = {u: o.to_json() for u, o in operators.items()}
        print(json.dumps(data, indent=1, sort_keys=True))
        return 0
    print(f"savepoint {savepoint.source}")
    print(f"  job {meta.job!r}, id {meta.id}, format {meta.format}, origin {meta.origin}")
    print(f"  state from backend {meta.backend}")
    print(f"  max_parallelism {meta.max_parallelism}, partitioner {meta.partitioner}")
    for uid, op in sorted(operators.items()):
        if op.keys < 0:
            print(f"  operator {uid!r}: keys and bytes not counted (native savepoint)")
        else:
            print(f"  operator {uid!r}: {op.keys} keys, {op.bytes} bytes")
        for name, count in op.states.items():
            if args.state is None or args.state == name:
                schema = op.schemas.get(name)
                detail = "" if schema is None else f", {_describe_schema(schema)}"
                counted = "not counted" if count < 0 else f"{count} entries, {op.state_bytes.get(name)} bytes"
                print(f"    state {name!r}: {counted}{detail}")
        for domain, count in op.timers.items():
            print(f"    timers {domain}: {count}")
    print("  splits (position, max timestamp, from checkpoint, entries, bytes):")
    for split, state in sorted(meta.splits.items()):
        print(
            f"    {split}: {state.position}, {state.max_timestamp}, {state.checkpoint_id}, "
            f"{state.entries}, {state.size}"
        )
    return 0


def _describe_schema(schema: dict[str, Any]) -> str:
    """``value state, ttl, dataclass v2 (count: int, label: str = ...)`` from a recorded schema."""
    value = schema.get("value", {})
    ttl = ", ttl" if schema.get("ttl") else ""
    text = f"{schema.get('kind')} state{ttl}, {value.get('name')} v{value.get('version')}"
    fields = value.get("fields")
    if fields:
        text += " (" + ", ".join(f"{n}: {t}{' = ...' if d else ''}" for n, t, d in fields) + ")"
    return text


def _dispose(path: Path | str) -> int:
    if is_remote(path):
        deleted = dispose_savepoint(str(path))
        print(f"Savepoint {path} disposed ({deleted} objects deleted).")
        return 0
    directory = Savepoint.open(path, verify=False).path  # refuses anything that is not a savepoint
    shutil.rmtree(directory)
    print(f"Savepoint {directory} disposed.")
    return 0


def _copy(source: Path | str, destination: Path | str) -> int:
    copied = copy_savepoint(source, destination)
    print(f"Savepoint {source} copied. Path: {copied}")
    return 0


def _list_checkpoints(job: Job, *, as_json: bool) -> int:
    storage = _storage(job)
    listing = {
        split: [
            {"name": i.name, "checkpoint_id": i.checkpoint_id, "committed": i.committed}
            for i in storage.list_snapshots(job.name, split)
        ]
        for split in _job_splits(job)
    }
    if as_json:
        print(json.dumps({"job": job.name, "splits": listing}, indent=1))
        return 0
    print(f"checkpoints of job {job.name!r} in {storage!r}")
    for split, infos in listing.items():
        shown = ", ".join(
            f"{i['checkpoint_id']}{'' if i['committed'] else ' (not committed)'}" for i in infos
        )
        print(f"  {split}: {shown or '(none)'}")
    return 0
