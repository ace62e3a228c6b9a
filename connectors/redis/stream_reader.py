"""The reader of the Redis stream source: a fixed set of streams (splits), each read with its own
commands, handed out split by split in turn.

**One stream per command.** Every read is ``MULTI; XINFO STREAM key; XRANGE key <position> <end>
COUNT n; EXEC`` on one key, and a wait for new entries is ``XREAD BLOCK`` on one key. With Redis
Cluster the keys of one command (and one transaction) must hash to one slot; reading each stream
with its own commands is what makes the reader Cluster-safe, whatever slots a family of streams
(``orders:{0}`` .. ``orders:{7}``) hashes to. It costs one round trip per stream read. (With a
consumer group configured, :class:`~.group_reader.RedisGroupStreamReader` reads instead.)

**Positions.** A split's position is the next entry id to read (:mod:`.stream_ids`), so reading
resumes with an inclusive ``XRANGE`` from it: a restored split continues exactly after the last
entry it processed. Entries are fetched ``batch_size`` at a time into one buffer per split, and each
poll hands them out in shares over the splits that have some, starting from a different split each
poll. With nothing to hand out an unbounded poll waits on one stream (in turn) for up to
``block_ms`` and the poll's timeout; entries of the other streams wait for the next poll.

**Lost entries are reported, never skipped.** ``XINFO STREAM`` is read in the same transaction as
the entries, and each read (and the reader's creation) checks what happened after the position:

* ``max-deleted-entry-id`` at or after the position: an unread entry was deleted (``XDEL``);
* the first entry still there (``recorded-first-entry-id``) after the position, with entries added
  after it: entries may have been trimmed (``XTRIM``, ``MAXLEN``, ``MINID``; trimming does not move
  ``max-deleted-entry-id``). Once the reader knows how many entries precede its position (it
  started at ``latest``, at the first entry of a stream without tombstones, at position 0, or has
  read everything there was), the check is exact: entries added after the position minus those
  still there. A restored split cannot count until it has caught up: if entries were ever removed
  from the stream, it cannot tell an entry trimmed right after its position from none having been
  there, and reports the possible loss (conservative: the last entry it processed is gone, so the
  trimming has reached the job's position);
* ``entries-added`` going down, or the last id falling before the position: the stream was deleted
  and created again.

Each is a :class:`~eventapp.errors.SourceError` naming the stream, the position and the first entry
still there. So is a stream that no longer exists or holds another type. XDELs the job could not
have read (they happened before the split started) are not reported, unless the split was restored:
a checkpoint does not say when the split started.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import structlog

from eventapp.errors import ConfigurationError, SourceError
from eventapp.source import SourceRecord

from .errors import stream_failure
from .source_config import RedisStreamSourceConfig
from .stream_ids import MAX_POSITION, format_id, parse_id

__all__ = ["EntryDecoder", "RedisStreamReader"]

log = structlog.get_logger("eventapp.connectors.redis.source")

R = TypeVar("R")

#: ``decode(split, entry_id, fields) -> record`` (see :class:`~.source.RedisStreamSource`).
EntryDecoder = Callable[[str, bytes, dict[bytes, bytes]], SourceRecord[Any]]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What ``XINFO STREAM`` says about a stream (Redis 7 fields)."""

    length: int
    last: int
    max_deleted: int
    added: int
    #: The first entry still there; ``None`` when the stream is empty.
    first: int | None


@dataclass(slots=True)
class _Split:
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


class RedisStreamReader:
    """Reads a fixed set of streams (see the module docstring); implements ``SourceReader``,
    ``PausableReader`` and ``LagReporter`` (lag only for unbounded reads, once countable)."""

    def __init__(
        self,
        config: RedisStreamSourceConfig,
        splits: Sequence[str],
        start_positions: Mapping[str, int],
        decode: EntryDecoder,
    ) -> None:
        unknown = [s for s in start_positions if s not in splits]
        if unknown:
            raise ConfigurationError(f"start positions given for splits {unknown} that are not being read")
        for split, position in start_positions.items():
            if not isinstance(position, int) or not 0 <= position <= MAX_POSITION:
                raise SourceError(
                    f"Redis stream source {config.display_name!r}: the restored position {position!r} of "
                    f"split {split!r} is not a stream entry id position: the checkpoint or savepoint was "
                    f"not written by a Redis stream source"
                )
        self._config = config
        self._name = config.display_name
        self._decode = decode
        self._splits: dict[str, _Split] = {}
        self._order: list[str] = list(splits)
        self._started_at: dict[str, int] = {}
        self._paused: set[str] = set()
        self._rotation = 0
        self._wait_turn = 0
        self._closed = False
        self._client = config.client()
        try:
            for split in splits:
                self._open_split(split, start_positions.get(split))
        except BaseException:
            self.close()
            raise
        log.info(
            "redis.source.assigned",
            source=self._name,
            url=config.safe_url,
            splits=list(splits),
            restored={s: format_id(p) for s, p in start_positions.items()},
            start=config.start,
            bounded=config.bounded,
        )

    def _open_split(self, key: str, restored: int | None) -> None:
        snap = self._snapshot(key, key.encode())
        if restored is not None:
            # Position 0 precedes every id: no entry was before it, so the count is known.
            position, floor, counted = restored, 0, 0 if restored == 0 else None
            self._started_at[key] = position
        elif self._config.start == "latest" or snap.first is None:
            position, floor, counted = snap.last + 1, snap.max_deleted, snap.added
            if self._config.start == "latest":
                self._started_at[key] = position
            # else earliest on an empty stream: left out, so that a restart before the first entry
            # starts at the first entry there is then (no position was taken yet).
        else:
            # earliest: the first entry still there (reported, so that a restart finds out if it was
            # trimmed unread); entries before it can be counted when no tombstone is among the
            # entries there (a trim removes only ids before the first entry).
            position, floor = snap.first, snap.max_deleted
            counted = snap.added - snap.length if snap.max_deleted < snap.first else None
            self._started_at[key] = position
        end = snap.last if self._config.bounded else None
        split = _Split(key, key.encode(), position, restored is not None, floor, snap.added, counted, end)
        split.handed = position
        split.at_end = end is not None and position > end
        self._splits[key] = split
        self._check(split, snap)

    # -- Redis calls ---------------------------------------------------------------------------------

    def _call(self, split: str, what: str, call: Callable[[], R]) -> R:
        try:
            return call()
        except redis.exceptions.RedisError as exc:
            raise stream_failure(self._name, split, what, self._config.url, exc) from exc

    def _snapshot(self, key: str, name: bytes, info: Mapping[str, Any] | None = None) -> _Snapshot:
        if info is None:
            info = self._call(key, "XINFO STREAM", lambda: self._client.xinfo_stream(name))
        try:
            length = int(info["length"])
            first = parse_id(info["recorded-first-entry-id"]) if length else None
            return _Snapshot(
                length, parse_id(info["last-generated-id"]), parse_id(info["max-deleted-entry-id"]),
                int(info["entries-added"]), first,
            )  # fmt: skip
        except KeyError as exc:
            raise SourceError(
                f"Redis stream source {self._name!r}: XINFO STREAM {key} on Redis "
                f"{self._config.safe_url} does not report {exc}: the source needs Redis 7.0 or later "
                f"(to detect entries deleted or trimmed before they were read)"
            ) from exc

    def _fetch(self, split: _Split) -> None:
        """Read the next entries of ``split`` into its buffer (with the checks of the module
        docstring); marks a bounded split's end."""
        if split.next > MAX_POSITION:
            return  # the largest possible id was read: nothing can follow
        end = "+" if split.end is None else format_id(split.end)
        count = self._config.batch_size

        def read() -> list[Any]:
            with self._config.transaction(self._client, split.name) as pipe:
                pipe.xinfo_stream(split.name)
                pipe.xrange(split.name, format_id(split.next), end, count=count)
                return pipe.execute()

        info, entries = self._call(split.key, "XRANGE", read)
        snap = self._snapshot(split.key, split.name, info)
        self._check(split, snap)
        self._accept(split, snap, entries, caught_up=len(entries) < count)

    def _accept(self, split: _Split, snap: _Snapshot, entries: Sequence[Any], *, caught_up: bool) -> None:
        """Buffer ``entries`` (the stream's next ones after ``split.next``, in order) and move the
        split on; ``caught_up``: no entry follows them (up to the bounded end) as of ``snap``."""
        decode, key, buffer = self._decode, split.key, split.buffer
        for entry_id, fields in entries:
            buffer.append(decode(key, entry_id, fields))
        if entries:
            split.next = parse_id(entries[-1][0]) + 1
            split.restored = False  # the position is no longer the checkpointed one
            if split.counted is not None:
                split.counted += len(entries)
        split.added = snap.added
        if caught_up and split.end is None:
            split.counted = snap.added  # every entry there was has been read
        if split.end is not None and (caught_up or split.next > split.end):
            split.at_end = True
            log.debug("redis.source.split_end", source=self._name, split=key, end=format_id(split.end))

    def _wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` (and ``block_ms``) for an entry of one stream (in turn), then read it."""
        block_ms = min(self._config.block_ms, int(timeout * 1000))
        waiting = [self._splits[s] for s in self._order if self._readable(s)]
        if block_ms < 1 or not waiting:
            return
        split = waiting[self._wait_turn % len(waiting)]
        self._wait_turn += 1
        if split.next > MAX_POSITION:
            return
        after = format_id(split.next - 1) if split.next else "0-0"
        name = split.name
        got = self._call(
            split.key, "XREAD", lambda: self._client.xread({name: after}, count=1, block=block_ms)
        )
        if got:
            self._fetch(split)

    # -- checks --------------------------------------------------------------------------------------

    def _check(self, split: _Split, snap: _Snapshot) -> None:
        position = split.next
        where = f"Redis stream source {self._name!r}: stream {split.key!r} on Redis {self._config.safe_url}"
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
                "1 entry after the position is"
                if removed == 1
                else f"{removed} entries after the position are"
            )
            verb, detail = "were", f" ({gone} gone)"
        raise SourceError(
            f"{where}: entries after {at} {verb} trimmed (XTRIM, MAXLEN or MINID) before the job read "
            f"them: the first entry still there is {first}{detail}. Raise the stream's MAXLEN (or trim "
            f"only below what the job has committed), or, to accept the loss, {restart}"
        )

    # -- reading -------------------------------------------------------------------------------------

    def _readable(self, split: str) -> bool:
        state = self._splits[split]
        return not state.at_end and split not in self._paused

    def poll(self, max_records: int, timeout: float) -> list[SourceRecord[Any]]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first one."""
        if self._closed:
            raise SourceError(f"Redis stream source {self._name!r}: the reader is closed")
        for key in self._order:
            split = self._splits[key]
            if not split.buffer and self._readable(key):
                self._fetch(split)
        if timeout > 0 and not self._config.bounded and not self._ready():
            self._wait(timeout)
        return self._take(max_records)

    def _ready(self) -> bool:
        return any(s.buffer and k not in self._paused for k, s in self._splits.items())

    def _take(self, max_records: int) -> list[SourceRecord[Any]]:
        """Hand out up to ``max_records`` buffered records in shares over the splits that have some."""
        out: list[SourceRecord[Any]] = []
        order = self._order
        start = self._rotation % len(order) if order else 0
        self._rotation += 1
        active = [
            self._splits[k]
            for k in order[start:] + order[:start]
            if self._splits[k].buffer and k not in self._paused
        ]
        while active and len(out) < max_records:
            share = max(1, (max_records - len(out)) // len(active))
            still: list[_Split] = []
            for split in active:
                buffer = split.buffer
                for _ in range(min(share, max_records - len(out), len(buffer))):
                    out.append(buffer.popleft())
                position = out[-1].position
                if position is not None:
                    split.handed = position + 1
                if buffer:
                    still.append(split)
                if len(out) >= max_records:
                    break
            active = still
        return out

    def pause_or_resume(self, pause: Collection[str], resume: Collection[str]) -> None:
        """Stop handing out (and reading) the splits in ``pause``; start again for ``resume``."""
        unknown = [s for s in (*pause, *resume) if s not in self._splits]
        if unknown:
            raise ConfigurationError(
                f"cannot pause or resume splits {unknown}: this reader reads {self._order}"
            )
        self._paused.update(pause)
        self._paused.difference_update(resume)

    # -- state ---------------------------------------------------------------------------------------

    def start_positions(self) -> Mapping[str, int]:
        """Restored positions, and where ``earliest``/``latest`` started (see ``SourceReader``)."""
        return dict(self._started_at)

    def finished_splits(self) -> Collection[str]:
        """Bounded reads: the splits that reached their end and handed out every record."""
        return [k for k, s in self._splits.items() if s.at_end and not s.buffer]

    def is_finished(self) -> bool:
        return self._config.bounded and all(s.at_end and not s.buffer for s in self._splits.values())

    def lag(self, positions: Mapping[str, int | None]) -> dict[str, int]:
        """Entries after each position, for the splits of an unbounded read whose count is known
        (see the module docstring), from the last read's ``entries-added``; no extra round trip."""
        lags: dict[str, int] = {}
        if self._config.bounded:
            return lags
        for key, position in positions.items():
            split = self._splits.get(key)
            if split is None or split.counted is None or position != split.handed:
                continue
            lags[key] = max(0, split.added - split.counted + len(split.buffer))
        return lags

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()
        log.debug("redis.source.closed", source=self._name)
