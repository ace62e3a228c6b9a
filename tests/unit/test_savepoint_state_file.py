"""The canonical state file: entries grouped by key group (ascending), sorted by key within a group,
read back exactly; a file of another layout is refused."""

from __future__ import annotations

import io
from pathlib import Path

import msgpack
import pytest

from eventapp.errors import SavepointError
from eventapp.partitioning import key_group
from eventapp.savepoint.format import iter_state_file
from eventapp.savepoint.writer import SavepointWriter
from eventapp.state.keys import encode_key, key_part, state_prefix, timer_prefix


def test_entries_are_grouped_by_key_group_and_read_back(tmp_path: Path) -> None:
    prefix = state_prefix("op", "count")
    entries = sorted(
        [(prefix + key_part(encode_key(f"k{i}")), bytes([i % 256])) for i in range(500)]
        + [(timer_prefix("op", b"e") + (7).to_bytes(8, "big") + encode_key("k1"), b"")]
    )
    writer = SavepointWriter(
        tmp_path, job="j", max_parallelism=16, partitioner="murmur2", origin="writer", backend=None
    )
    state = writer.add_split("s-0", entries, position=3, max_timestamp=0)
    rows = list(msgpack.Unpacker(io.BytesIO((tmp_path / state.file).read_bytes()), raw=False, use_list=False))
    assert rows[0] == {"format": 2, "split": "s-0"}
    groups = [r for r in rows[1:] if isinstance(r, int)]
    assert groups == sorted(set(groups)) and len(groups) > 1
    current = -1
    for row in rows[1:]:
        if isinstance(row, int):
            current = row
            continue
        key = row[0]
        body = key[len(prefix) + 4 :] if key.startswith(prefix) else key[len(timer_prefix("op", b"e")) + 8 :]
        assert key_group(body, 16) == current
    assert sorted(iter_state_file(tmp_path, "s-0", state)) == entries
    # Another split's file, or a file of another layout, is refused.
    with pytest.raises(SavepointError, match="not the state file of split 's-1'"):
        list(iter_state_file(tmp_path, "s-1", state))
    (tmp_path / state.file).write_bytes(msgpack.packb({"format": 1, "split": "s-0"}))
    with pytest.raises(SavepointError, match="state file format 1"):
        list(iter_state_file(tmp_path, "s-0", state))
