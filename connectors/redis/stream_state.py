"""What the Redis stream reader knows of each stream (:class:`StreamInfo`, :class:`SplitState`) and
the check that no entry after a split's position was lost (see :mod:`.stream_reader`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from eventapp.errors import SourceError
from eventapp.source import SourceRecord

from .stream_ids import format_id

__all__ = ["SplitState", "StreamInfo", "check_no_lost_entries"]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What ``XINFO STREAM`` says about a stream (Redis 7 fields)."""

    length: int
    last: int
    max_deleted: int
    added: int
    #: The first entry still there; ``None`` when the stream is empty.
    first: int | None


@dataclass(slots=True)
class SplitState:
    """One stream's reading state."""

    key: str
    name: bytes
    #: The position of the next entry to fetch.
    next: int
    #: ``next`` is the restored (checkpointed) position.
    restored: bool
    #: XDELs of ids up to this one happened before the split started (0, none, when restored).
    floor: int
    #: ``entries-added`` of the last snapshot.
    added: int
    #: Entries ever added with ids before ``next``, once known (see the module docstring).
    counted: int | None
    #: Bounded reads: the position of the last entry to read.
    end: int | None
    #: The position after the last record handed out (where the runtime's position is).
    handed: int = 0
    at_end: bool = False
    buffer: deque[SourceRecord[Any]] = field(default_factory=deque)


def check_no_lost_entries(source: str, url: str, split: SplitState, snap: StreamInfo) -> None:
    """Raise a :class:`SourceError` if entries after ``split``'s position were deleted or trimmed
    before the job read them, or the stream was deleted and created again (see
    :mod:`.stream_reader`)."""
    position = split.next
    where = f"Redis stream source {source!r}: stream {split.key!r} on Redis {url}"
    at = f"the {'checkpointed ' if split.restored else ''}position {format_id(position)}"
    first = "none (the stream is empty)" if snap.first is None else format_id(snap.first)
    restart = (
        "restart the job explicitly from a savepoint (eventapp run --from-savepoint) or from "
        "empty state (a new job name or checkpoint storage)"
    )
    if snap.added < split.added or snap.last + 1 < position:
        raise SourceError(
            f"{where} was deleted and created again (entries added went from {split.added} to "
            f"{snap.added}, its last id is {format_id(snap.last)}, the reader is at {at}): to "
            f"read the new stream, {restart}"
        )
    if snap.max_deleted >= position and snap.max_deleted > split.floor:
        raise SourceError(
            f"{where}: entries after {at} were deleted (XDEL) before the job read them: the "
            f"stream's max-deleted-entry-id is {format_id(snap.max_deleted)}; the first entry still "
            f"there is {first}. Delete only entries the job has committed (before its checkpointed "
            f"position), or, to accept the loss, {restart}"
        )
    head_past = snap.first is None or snap.first > position
    if not head_past or snap.last < position:
        return
    if split.counted is None:
        removed = snap.added - snap.length
        if removed == 0:
            return  # no entry was ever removed
        verb = "may have been"
        detail = (
            f", and {removed} entries were removed from it (a restored position does not tell "
            f"whether any of them came after it)"
        )
    else:
        removed = snap.added - split.counted - snap.length
        if removed <= 0:
            return
        gone = (
            "1 entry after the position is" if removed == 1 else f"{removed} entries after the position are"
        )
        verb, detail = "were", f" ({gone} gone)"
    raise SourceError(
        f"{where}: entries after {at} {verb} trimmed (XTRIM, MAXLEN or MINID) before the job read "
        f"them: the first entry still there is {first}{detail}. Raise the stream's MAXLEN (or trim "
        f"only below what the job has committed), or, to accept the loss, {restart}"
    )
