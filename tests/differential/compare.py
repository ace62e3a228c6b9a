"""How outputs of the two engines are compared.

An output is a list of ``{"value": dict, "ts": int | None}`` in arrival order. Records of different
keys that a timer service fires at the same timestamp come in an unspecified order (Flink's timer
queue does not order them by key), so the comparisons are: the multiset of records, and the order
of each key's records.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

Output = list[dict[str, Any]]


def project(output: Output, fields: Sequence[str], with_ts: bool = True) -> list[dict[str, Any]]:
    """Only ``fields`` of each value (the ones that do not depend on when watermarks came)."""
    rows = []
    for record in output:
        row = {f: record["value"].get(f) for f in fields}
        if with_ts:
            row["@ts"] = record["ts"]
        rows.append(row)
    return rows


def multiset(rows: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def per_key(rows: Iterable[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row[key]].append(row)
    return dict(grouped)


def assert_same(expected: list[dict[str, Any]], actual: list[dict[str, Any]], key: str, what: str) -> None:
    """Same multiset of rows, and the same order of rows within each value of ``key``."""
    missing = sorted(set(multiset(expected)) - set(multiset(actual)))
    extra = sorted(set(multiset(actual)) - set(multiset(expected)))
    assert multiset(actual) == multiset(expected), (
        f"{what}: eventapp's output differs from Flink's\n"
        f"  only in Flink ({len(missing)}): {missing}\n"
        f"  only in eventapp ({len(extra)}): {extra}\n"
        f"  Flink:    {expected}\n"
        f"  eventapp: {actual}"
    )
    assert per_key(actual, key) == per_key(expected, key), f"{what}: same records, another order per {key}"


def processing_rows(output: Output) -> list[dict[str, Any]]:
    """The fired processing-time timers of program 3, without wall-clock values: what is compared is
    whether ``ctx.timestamp`` was the timer's timestamp."""
    return [
        {
            "key": r["value"]["key"],
            "kind": r["value"]["kind"],
            "domain": r["value"]["domain"],
            "far": r["value"]["far"],
            "ctx_timestamp_is_timer": r["value"]["ctx_timestamp"] == r["value"]["timer"],
        }
        for r in output
        if r["value"]["kind"] == "fired"
    ]
