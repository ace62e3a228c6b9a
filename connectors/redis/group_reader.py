"""The reader of the Redis stream source in consumer-group mode (``group=...``): the same splits,
positions and checks as :class:`~.stream_reader.RedisStreamReader`, read through a consumer group.

**Opening a split.** ``XGROUP CREATE <stream> <group> <id> MKSTREAM`` creates the group unless it
exists, ``<id>`` being the entry id just before the split's start (the restored position minus
one, ``0`` for ``earliest``, ``$`` for ``latest``; the group is created before the stream is looked
at, so for ``latest`` what arrives in between is below the position, acknowledged and skipped).
When other consumers of the group have pending entries, those pending for longer than
``claim_idle_ms`` are taken over (``XAUTOCLAIM``): entries a consumer abandoned (another consumer
name, an older incarnation of the job) become this consumer's. With one consumer name per job,
no other consumer has pending entries and nothing is claimed.

**Reading.** First this consumer's pending entries (``XREADGROUP GROUP <group> <consumer> ...
STREAMS <stream> 0``, then from the last one looked at: entries delivered before a crash and never
acknowledged), then new ones (``>``). Every command names one stream (Cluster-safe); a fetch is one
transaction ``MULTI; XINFO STREAM; XINFO GROUPS; XRANGE ...; XREADGROUP ...; EXEC`` (the ``XRANGE``
is the stream's first entry at the position, or ``batch_size`` entries from it while pending entries
are read), and an unbounded wait is ``XREAD BLOCK`` on one stream, as without a group. The job's
checkpointed position stays the source of truth; the group only mirrors it:

* entries below the split's position (covered by the committed checkpoint) are acknowledged
  (``XACK``), never handed out again;
* while pending entries are read, the records are the stream's own entries after the position
  (``XRANGE``) up to the group's ``last-delivered-id``: an entry another consumer of the group took
  (or acknowledged) is read all the same, with a warning, so exactly-once never depends on who the
  group delivered an entry to;
* a ``>`` read checks, in the same transaction, that the group had not delivered past the position
  (another consumer, or a zombie instance of the job, reading the group): if it had, the reader goes
  back to reading pending entries from the stream, as above;
* a pending entry that was deleted (``XREADGROUP`` returns it without fields; ``XAUTOCLAIM`` lists
  it as deleted) after the position is a :class:`~eventapp.errors.SourceError` naming the stream
  and the entry, like a trim; the trim and XDEL checks of the stream reader apply as they are.

Entries are acknowledged by the commit point once the checkpoint covering them committed
(:mod:`.commit`), never by the reader (except those below the position the split started at, which
a committed checkpoint covers). A bounded read ends at the stream's last id as of the reader's
creation; a ``>`` read can deliver entries after that end, which stay pending (the next run reads
them from the pending list).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import redis
import structlog

from eventapp.errors import ConfigurationError, SourceError

from .errors import stream_failure
from .source_config import RedisStreamSourceConfig
from .stream_ids import MAX_POSITION, format_id, parse_id
from .stream_reader import EntryDecoder, RedisStreamReader
from .stream_state import SplitState, check_no_lost_entries

__all__ = ["RedisGroupStreamReader"]

log = structlog.get_logger("eventapp.connectors.redis.source")

R = TypeVar("R")

_Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass(slots=True)
class _GroupState:
    """Where a split is in reading through the group."""

    #: Reading this consumer's pending entries (and the stream up to the group's last delivery).
    pending: bool = True
    #: Pending entries with ids after this position are still to be looked at.
    cursor: int = 0


class RedisGroupStreamReader(RedisStreamReader):
    """Reads a fixed set of streams through a consumer group (see the module docstring)."""

    def __init__(
        self,
        config: RedisStreamSourceConfig,
        splits: Sequence[str],
        start_positions: Mapping[str, int],
        decode: EntryDecoder,
    ) -> None:
        if config.group is None:
            raise ConfigurationError(
                "RedisGroupStreamReader needs RedisStreamSourceConfig(group=...); without a group, "
                "use RedisStreamReader"
            )
        self._group_name = config.group
        self._group = config.group.encode()
        self._consumer = config.consumer.encode()
        self._states: dict[str, _GroupState] = {}
        super().__init__(config, splits, start_positions, decode)

    # -- opening -------------------------------------------------------------------------------------

    def _open_split(self, key: str, restored: int | None, start: str) -> None:
        self._create_group(key, restored, start)
        super()._open_split(key, restored, start)
        self._states[key] = _GroupState()
        self._claim(self._splits[key])

    def _create_group(self, key: str, restored: int | None, start: str) -> None:
        if restored is not None:
            at = format_id(restored - 1) if restored > 0 else "0"
        else:
            at = "$" if start == "latest" else "0"
        try:
            self._client.xgroup_create(key.encode(), self._group, id=at, mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith("BUSYGROUP"):
                return  # it exists: its pending entries and last delivery are read as they are
            raise stream_failure(self._name, key, "XGROUP CREATE", self._config.url, exc) from exc
        except redis.exceptions.RedisError as exc:
            raise stream_failure(self._name, key, "XGROUP CREATE", self._config.url, exc) from exc
        log.info("redis.source.group_created", source=self._name, split=key, group=self._group_name, at=at)

    def _claim(self, split: SplitState) -> None:
        """Take over the entries other consumers left pending for longer than ``claim_idle_ms``."""
        name, group, consumer = split.name, self._group, self._consumer
        summary = self._group_call(split.key, "XPENDING", lambda: self._client.xpending(name, group))
        others = sorted(_text(c["name"]) for c in summary["consumers"] if c["name"] != consumer)
        if not others:
            return
        idle, count = self._config.claim_idle_ms, self._config.batch_size
        cursor: bytes | str = "0-0"
        claimed, deleted = 0, list[bytes]()

        def claim(start: bytes | str) -> list[Any]:
            return self._client.xautoclaim(name, group, consumer, idle, start, count=count)

        while True:
            reply = self._group_call(split.key, "XAUTOCLAIM", partial(claim, cursor))
            cursor, entries = reply[0], reply[1]
            claimed += len(entries)
            deleted.extend(reply[2] if len(reply) > 2 else [])
            if cursor in (b"0-0", "0-0"):
                break
        lost = sorted(p for p in map(parse_id, deleted) if p >= split.next)
        if lost:
            raise self._deleted_pending(split, lost, "XAUTOCLAIM")
        if not claimed:
            return
        log.info(
            "redis.source.group_claimed",
            source=self._name,
            split=split.key,
            group=self._group_name,
            consumer=self._config.consumer,
            from_consumers=others,
            claimed=claimed,
            claim_idle_ms=idle,
        )

    # -- Redis calls ---------------------------------------------------------------------------------

    def _group_call(self, split: str, what: str, call: Callable[[], R]) -> R:
        try:
            return call()
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise stream_failure(self._name, split, what, self._config.url, exc) from exc
            raise SourceError(
                f"Redis stream source {self._name!r}: stream {split!r} on Redis {self._config.safe_url} "
                f"has no consumer group {self._group_name!r} any more (XGROUP DESTROY, or the stream was "
                f"deleted) ({what}: {exc}); restart the job: it creates the group again at its "
                f"checkpointed position"
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise stream_failure(self._name, split, what, self._config.url, exc) from exc

    def _delivered(self, split: SplitState, groups: Sequence[Mapping[str, Any]]) -> int:
        """The group's ``last-delivered-id`` (position) from an ``XINFO GROUPS`` reply."""
        for group in groups:
            if group.get("name") == self._group:
                return parse_id(group["last-delivered-id"])
        raise SourceError(
            f"Redis stream source {self._name!r}: stream {split.key!r} on Redis {self._config.safe_url} "
            f"has no consumer group {self._group_name!r} any more (XGROUP DESTROY?); restart the job: "
            f"it creates the group again at its checkpointed position"
        )

    def _ack(self, split: SplitState, ids: Sequence[bytes]) -> None:
        if ids:
            name, group = split.name, self._group
            self._group_call(split.key, "XACK", lambda: self._client.xack(name, group, *ids))

    def _deleted_pending(self, split: SplitState, lost: Sequence[int], how: str) -> SourceError:
        more = f" (and {len(lost) - 1} more after it)" if len(lost) > 1 else ""
        return SourceError(
            f"Redis stream source {self._name!r}: stream {split.key!r} on Redis {self._config.safe_url}: "
            f"entry {format_id(lost[0])}{more}, after the position {format_id(split.next)}, was "
            f"delivered to consumer group {self._group_name!r} and deleted (XDEL) before the job "
            f"processed it ({how} reports it deleted). Delete only entries the job has committed "
            f"(before its checkpointed position), or, to accept the loss, restart the job explicitly "
            f"from a savepoint (eventapp run --from-savepoint) or from empty state (a new job name or "
            f"checkpoint storage)"
        )

    # -- reading -------------------------------------------------------------------------------------

    def _fetch(self, split: SplitState) -> None:
        """Read the next entries of ``split`` into its buffer: pending ones first, then new ones. A
        fetch that only acknowledged entries or changed phase is followed by another."""
        state = self._states[split.key]
        while split.next <= MAX_POSITION and not split.at_end:
            fetch = self._fetch_pending if state.pending else self._fetch_new
            progressed = fetch(split, state)
            if split.buffer or not progressed:
                return

    def _fetch_pending(self, split: SplitState, state: _GroupState) -> bool:
        """One read of this consumer's pending entries with the stream's entries after the position;
        returns whether anything moved (entries taken or acknowledged, the cursor, the phase)."""
        name, group, consumer = split.name, self._group_name, self._config.consumer
        count = self._config.batch_size
        cursor = format_id(state.cursor)
        start, end = format_id(split.next), "+" if split.end is None else format_id(split.end)

        def read() -> list[Any]:
            with self._config.transaction(self._client, name) as pipe:
                pipe.xinfo_stream(name)
                pipe.xinfo_groups(name)
                pipe.xreadgroup(group, consumer, {name: cursor}, count=count)
                pipe.xrange(name, start, end, count=count)
                return pipe.execute()

        info, groups, reply, stream = self._group_call(split.key, "XREADGROUP (pending entries)", read)
        snap = self._snapshot(split.key, name, info)
        delivered = self._delivered(split, groups)
        pending = _entries(reply)
        position, bound = split.next, MAX_POSITION if split.end is None else split.end
        lost = [p for p in (parse_id(i) for i, f in pending if not f) if position <= p <= bound]
        if lost:
            raise self._deleted_pending(split, lost, "XREADGROUP")
        check_no_lost_entries(self._name, self._config.safe_url, split, snap)
        full = len(pending) == count
        last = parse_id(pending[-1][0]) if pending else state.cursor
        limit = min(last if full else delivered, bound)
        taken = [e for e in stream if parse_id(e[0]) <= limit]
        ours = {entry_id for entry_id, _ in pending}
        elsewhere = [entry_id for entry_id, _ in taken if entry_id not in ours]
        if elsewhere:
            log.warning(
                "redis.source.group_delivered_elsewhere",
                source=self._name,
                split=split.key,
                group=self._group_name,
                consumer=self._config.consumer,
                entries=len(elsewhere),
                first=elsewhere[0].decode(),
                note="entries after the position that the group delivered to another consumer (or that "
                "were acknowledged) are read from the stream: the job's position decides",
            )
        below = [i for i, _ in pending if parse_id(i) < position]
        self._ack(split, below)
        self._accept(split, snap, taken, caught_up=len(taken) == len(stream) and len(stream) < count)
        moved = bool(taken or below)
        if pending and min(last, split.next - 1) > state.cursor:
            state.cursor, moved = min(last, split.next - 1), True
        # Done once no entry the group delivered is left after the position: the pending list is
        # read to its end and the stream's next entry (if any) comes after the last delivery.
        if not full and (len(taken) < len(stream) or len(stream) < count or split.at_end):
            state.pending, moved = False, True
            log.debug("redis.source.group_pending_read", source=self._name, split=split.key)
        return moved

    def _fetch_new(self, split: SplitState, state: _GroupState) -> bool:
        """One ``>`` read; returns whether anything moved (see :meth:`_fetch_pending`)."""
        name, group, consumer = split.name, self._group_name, self._config.consumer
        count = self._config.batch_size
        start = format_id(split.next)

        def read() -> list[Any]:
            with self._config.transaction(self._client, name) as pipe:
                pipe.xinfo_stream(name)
                pipe.xinfo_groups(name)
                pipe.xrange(name, start, "+", count=1)
                pipe.xreadgroup(group, consumer, {name: ">"}, count=count)
                return pipe.execute()

        info, groups, head, reply = self._group_call(split.key, "XREADGROUP", read)
        snap = self._snapshot(split.key, name, info)
        delivered = self._delivered(split, groups)
        check_no_lost_entries(self._name, self._config.safe_url, split, snap)
        bound = MAX_POSITION if split.end is None else split.end
        first = parse_id(head[0][0]) if head else None
        if first is not None and first <= min(delivered, bound):
            # The group delivered an entry after this split's position elsewhere (another consumer,
            # or a zombie instance of the job, reads the group): read the stream again from the
            # position, and what this read just delivered from the pending list.
            log.warning(
                "redis.source.group_moved_on",
                source=self._name,
                split=split.key,
                group=self._group_name,
                position=format_id(split.next),
                last_delivered=format_id(delivered),
                note="another consumer of the group (or a zombie instance of the job) reads it",
            )
            state.pending, state.cursor = True, max(state.cursor, split.next - 1)
            return True
        entries = _entries(reply)
        position = split.next
        below = [i for i, _ in entries if parse_id(i) < position]
        taken = [e for e in entries if position <= parse_id(e[0]) <= bound]
        done = first is None or first > bound or len(entries) < count
        self._ack(split, below)
        self._accept(split, snap, taken, caught_up=done or len(taken) < len(entries) - len(below))
        return bool(entries)


def _entries(reply: Any) -> list[_Entry]:
    """The entries of an ``XREADGROUP`` reply on one stream (``[]`` when there are none)."""
    if not reply:
        return []
    entries: list[_Entry] = reply[0][1]
    return entries


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
