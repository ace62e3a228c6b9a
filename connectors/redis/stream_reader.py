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

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import redis
import structlog

from eventapp.errors import ConfigurationError, SourceError
from eventapp.source import SourceRecord

from .errors import stream_failure
from .source_config import RedisStreamSourceConfig
from .stream_ids import MAX_POSITION, format_id, parse_id
from .stream_state import SplitState, StreamInfo, check_no_lost_entries

__all__ = ["EntryDecoder", "RedisStreamReader"]

log = structlog.get_logger("eventapp.connectors.redis.source")

R = TypeVar("R")

#: ``decode(split, entry_id, fields) -> record`` (see :class:`~.source.RedisStreamSource`).
EntryDecoder = Callable[[str, bytes, dict[bytes, bytes]], SourceRecord[Any]]


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
        self._config = config
        self._name = config.display_name
        self._decode = decode
        self._splits: dict[str, SplitState] = {}
        self._order: list[str] = list(splits)
        self._started_at: dict[str, int] = {}
        self._paused: set[str] = set()
        self._rotation = 0
        self._wait_turn = 0
        self._closed = False
        self._client = config.client()
        try:
            for split in splits:
                self._open_split(split, self._checked(split, start_positions.get(split)), config.start)
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

    def start_splits(self, positions: Mapping[str, int | None]) -> Mapping[str, int]:
        """Read more streams (discovered while the job runs, see ``GroupReader``): each from its
        restored position, else from its first entry whatever ``start`` says (entries added
        between the stream's creation and its discovery are read, as Flink reads discovered
        partitions from the earliest offset)."""
        if self._closed:
            raise SourceError(f"Redis stream source {self._name!r}: the reader is closed")
        for key, position in positions.items():
            if key in self._splits:
                raise ConfigurationError(f"split {key!r} is already being read by {self._name!r}")
            self._open_split(key, self._checked(key, position), "earliest")
            self._order.append(key)
        log.info(
            "redis.source.splits_added",
            source=self._name,
            splits=list(positions),
            restored={s: format_id(p) for s, p in positions.items() if p is not None},
        )
        return {k: self._started_at[k] for k in positions if k in self._started_at}

    def _checked(self, split: str, position: int | None) -> int | None:
        if position is not None and (not isinstance(position, int) or not 0 <= position <= MAX_POSITION):
            raise SourceError(
                f"Redis stream source {self._name!r}: the restored position {position!r} of split "
                f"{split!r} is not a stream entry id position: the checkpoint or savepoint was not "
                f"written by a Redis stream source"
            )
        return position

    def _open_split(self, key: str, restored: int | None, start: str) -> None:
        snap = self._snapshot(key, key.encode())
        if restored is not None:
            # Position 0 precedes every id: no entry was before it, so the count is known.
            position, floor, counted = restored, 0, 0 if restored == 0 else None
            self._started_at[key] = position
        elif start == "latest" or snap.first is None:
            position, floor, counted = snap.last + 1, snap.max_deleted, snap.added
            if start == "latest":
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
        split = SplitState(key, key.encode(), position, restored is not None, floor, snap.added, counted, end)
        split.handed = position
        split.at_end = end is not None and position > end
        self._splits[key] = split
        check_no_lost_entries(self._name, self._config.safe_url, split, snap)

    # -- Redis calls ---------------------------------------------------------------------------------

    def _call(self, split: str, what: str, call: Callable[[], R]) -> R:
        try:
            return call()
        except redis.exceptions.RedisError as exc:
            raise stream_failure(self._name, split, what, self._config.url, exc) from exc

    def _snapshot(self, key: str, name: bytes, info: Mapping[str, Any] | None = None) -> StreamInfo:
        if info is None:
            info = self._call(key, "XINFO STREAM", lambda: self._client.xinfo_stream(name))
        try:
            length = int(info["length"])
            first = parse_id(info["recorded-first-entry-id"]) if length else None
            return StreamInfo(
                length, parse_id(info["last-generated-id"]), parse_id(info["max-deleted-entry-id"]),
                int(info["entries-added"]), first,
            )  # fmt: skip
        except KeyError as exc:
            raise SourceError(
                f"Redis stream source {self._name!r}: XINFO STREAM {key} on Redis "
                f"{self._config.safe_url} does not report {exc}: the source needs Redis 7.0 or later "
                f"(to detect entries deleted or trimmed before they were read)"
            ) from exc

    def _fetch(self, split: SplitState) -> None:
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
        check_no_lost_entries(self._name, self._config.safe_url, split, snap)
        self._accept(split, snap, entries, caught_up=len(entries) < count)

    def _accept(
        self, split: SplitState, snap: StreamInfo, entries: Sequence[Any], *, caught_up: bool
    ) -> None:
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
        if block_ms < 1:
            return
        if not self._order:  # no stream yet (discovery may add some): wait as a blocking read would
            time.sleep(block_ms / 1000)
            return
        if not waiting:
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
            still: list[SplitState] = []
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
