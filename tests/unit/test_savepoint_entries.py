"""EntryParser (the prefix-caching parser savepoints use) agrees with parse_entry on every kind of
entry, in store order; entries eventapp does not write are refused."""

from __future__ import annotations

import pytest

from eventapp.errors import SavepointError
from eventapp.savepoint.entries import EntryParser, parse_entry, with_uid
from eventapp.state.keys import (
    EVENT_TIME,
    PROCESSING_TIME,
    encode_key,
    encode_timestamp,
    key_part,
    state_prefix,
    timer_prefix,
)


def entries() -> list[bytes]:
    out: list[bytes] = []
    for uid in ("a", "counts", "z-op"):
        for name in ("count", "m"):
            for key in ("k1", "k22", 7, ("t", 1)):
                base = state_prefix(uid, name) + key_part(encode_key(key))
                out.append(base)
                if name == "m":
                    out.append(base + b"\x01map-key")
        for domain in (EVENT_TIME, PROCESSING_TIME):
            for ts in (-5, 0, 10**12):
                out.append(timer_prefix(uid, domain) + encode_timestamp(ts) + encode_key(f"key{ts}"))
    return sorted(out)


def test_entry_parser_agrees_with_parse_entry_in_store_order() -> None:
    parser = EntryParser("test")
    parsed = [parser.parse(e) for e in entries()]
    assert parsed == [parse_entry(e, "test") for e in entries()]
    assert {p.kind for p in parsed} == {"state", "timer"}
    assert {p.name for p in parsed if p.kind == "timer"} == {"event_time", "processing_time"}


def test_with_uid_moves_an_entry_to_another_operator() -> None:
    entry = state_prefix("old", "count") + key_part(encode_key("k"))
    moved = parse_entry(with_uid(entry, "new-uid"), "test")
    assert (moved.uid, moved.name, moved.key) == ("new-uid", "count", encode_key("k"))


@pytest.mark.parametrize(
    "entry", [b"x-not-ours", b"s", b"sop\x00count\x00\x00\x00\x00\x09ab", b"top\x00q123"]
)
def test_foreign_or_truncated_entries_are_refused(entry: bytes) -> None:
    with pytest.raises(SavepointError, match="test"):
        EntryParser("test").parse(entry)
