"""The canonical state file: entries grouped by key group (ascending), sorted by key within a group,
read back exactly; the counts ``_metadata`` takes from it; a file of another layout is refused and
format 2 (rows one by one) still reads."""

from __future__ import annotations

import io
import random
from pathlib import Path

import msgpack
import pytest

from eventapp.errors import SavepointError
from eventapp.partitioning import key_group
from eventapp.savepoint import state_file
from eventapp.savepoint.format import SplitState, iter_state_file
from eventapp.savepoint.state_file import write_state_file
from eventapp.savepoint.writer import SavepointWriter
from eventapp.state.keys import encode_key, key_part, state_prefix, timer_prefix

PREFIX = state_prefix("op", "count")
TIMERS = timer_prefix("op", b"e")


def _entries() -> list[tuple[bytes, bytes]]:
    return sorted(
        [(PREFIX + key_part(encode_key(f"k{i}")), bytes([i % 256])) for i in range(500)]
        + [(state_prefix("op", "seen") + key_part(encode_key(f"k{i}")), b"1") for i in range(0, 500, 5)]
        + [(TIMERS + (7).to_bytes(8, "big") + encode_key("k1"), b"")]
        + [(state_prefix("other", "count") + key_part(encode_key("z")), b"2")]
    )


def _writer(tmp_path: Path) -> SavepointWriter:
    return SavepointWriter(
        tmp_path, job="j", max_parallelism=16, partitioner="murmur2", origin="writer", backend=None
    )


def _state_key(key: bytes) -> bytes:
    if key.startswith(TIMERS):
        return key[len(TIMERS) + 8 :]
    end = key.index(b"\x00", key.index(b"\x00", 1) + 1) + 1
    size = int.from_bytes(key[end : end + 4], "big")
    return key[end + 4 : end + 4 + size]


def _groups_in_file(path: Path) -> list[tuple[int, list[tuple[bytes, bytes]]]]:
    """(key group, its rows) in file order; a group's rows may span several arrays."""
    items = list(msgpack.Unpacker(io.BytesIO(path.read_bytes()), raw=False, use_list=False))
    assert items[0]["format"] == 3
    groups: list[tuple[int, list[tuple[bytes, bytes]]]] = []
    for item in items[1:]:
        if isinstance(item, int):
            groups.append((item, []))
        else:
            groups[-1][1].extend(item)
    return groups


@pytest.mark.parametrize("chunk", [4096, 7])  # 7: runs span chunks, groups hold several arrays
def test_entries_are_grouped_by_key_group_and_read_back(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_file, "CHUNK_ENTRIES", chunk)
    entries = _entries()
    state = _writer(tmp_path).add_split("s-0", entries, position=3, max_timestamp=0)
    groups = _groups_in_file(tmp_path / state.file)
    numbers = [group for group, _ in groups]
    assert numbers == sorted(set(numbers)) and len(numbers) > 1
    for group, rows in groups:
        assert [row[0] for row in rows] == sorted(row[0] for row in rows)
        assert {key_group(_state_key(row[0]), 16) for row in rows} == {group}
    assert state.entries == len(entries)
    assert sorted(iter_state_file(tmp_path, "s-0", state)) == entries
    # Another split's file, or a file of another layout, is refused.
    with pytest.raises(SavepointError, match="not the state file of split 's-1'"):
        list(iter_state_file(tmp_path, "s-1", state))
    (tmp_path / state.file).write_bytes(msgpack.packb({"format": 1, "split": "s-0"}))
    with pytest.raises(SavepointError, match="state file format 1"):
        list(iter_state_file(tmp_path, "s-0", state))


def test_format_2_rows_one_by_one_still_read(tmp_path: Path) -> None:
    entries = _entries()
    packer = msgpack.Packer(use_bin_type=True)
    data = packer.pack({"format": 2, "split": "s-0"}) + packer.pack(0) + b"".join(map(packer.pack, entries))
    (tmp_path / "old.entries").write_bytes(data)
    state = SplitState(
        position=None, max_timestamp=0, checkpoint_id=0, snapshot=None, file="old.entries",
        size=len(data), sha256="", entries=len(entries),
    )  # fmt: skip
    assert list(iter_state_file(tmp_path, "s-0", state)) == entries


def test_counts_per_operator_state_and_timer_domain_in_any_input_order(tmp_path: Path) -> None:
    entries = _entries()
    shuffled = entries[:]
    random.Random(7).shuffle(shuffled)
    grouped = write_state_file(tmp_path, "out.entries", "s-0", shuffled, 16)
    assert grouped.entries == len(entries)
    assert sorted(row for _, rows in _groups_in_file(tmp_path / "out.entries") for row in rows) == entries
    assert [(r.uid, r.kind, r.name, r.entries) for r in grouped.runs] == sorted(
        [("op", "state", "count", 500), ("op", "state", "seen", 100), ("op", "timer", "event_time", 1),
         ("other", "state", "count", 1)],
        key=lambda run: (run[1] == "timer", run[0], run[2]),
    )  # fmt: skip
    assert sum(r.bytes for r in grouped.runs) == sum(len(k) + len(v) for k, v in entries)
    assert grouped.keys == {"op": 500, "other": 1}  # "seen"'s keys and the timer's are among count's


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (PREFIX + (9).to_bytes(4, "big") + b"abc", "state entry .* is truncated"),
        (PREFIX + b"\x00\x00", "state entry .* is truncated"),
        (TIMERS + b"\x00\x01", "timer entry .* is not one eventapp writes"),
        (b"x-not-ours", "entry .* is not an eventapp state or timer entry"),
    ],
)
def test_an_entry_eventapp_does_not_write_is_named(tmp_path: Path, entry: bytes, error: str) -> None:
    rows = [(PREFIX + key_part(encode_key("a")), b"1"), (entry, b"")]
    with pytest.raises(SavepointError, match=f"split 's-0': {error}"):
        write_state_file(tmp_path, "out.entries", "s-0", rows, 16)
