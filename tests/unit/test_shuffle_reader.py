"""The reading end of a shuffle (pure logic, over an in-memory reader): payloads become records
with their timestamps again, markers become the split's watermark (the minimum over upstream
splits, none until each has sent one) and a split finishes when every upstream split sent +inf."""

from __future__ import annotations

import pickle
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from eventapp.runtime.shuffle import ShuffleReader, WatermarkMarker, shuffle_key_bytes
from eventapp.source import SourceRecord
from eventapp.state.keys import encode_key
from eventapp.watermarks import MAX_WATERMARK, MIN_WATERMARK


class _Queue:
    """An in-memory SourceReader handing out what was put in it."""

    def __init__(self) -> None:
        self.pending: list[SourceRecord[Any]] = []

    def put(self, split: str, payload: Any, position: int) -> None:
        self.pending.append(SourceRecord(split, pickle.dumps(payload), None, position))

    def poll(self, max_records: int, timeout: float) -> Sequence[SourceRecord[Any]]:
        out, self.pending = self.pending, []
        return out

    def is_finished(self) -> bool:
        return False

    def finished_splits(self) -> Collection[str]:
        return ()

    def start_positions(self) -> Mapping[str, int]:
        return {}

    def close(self) -> None:
        pass


def test_records_come_back_with_their_timestamps_and_markers_are_consumed() -> None:
    inner = _Queue()
    reader = ShuffleReader(inner, ["s-0"], ["in-0", "in-1"])
    inner.put("s-0", (17, {"k": "a"}), 0)
    inner.put("s-0", WatermarkMarker("in-0", 10, 1), 1)
    inner.put("s-0", (None, "no-ts"), 2)
    records = reader.poll(10, 0)
    assert [(r.value, r.timestamp, r.position) for r in records] == [({"k": "a"}, 17, 0), ("no-ts", None, 2)]
    # One upstream split has not spoken yet: no watermark.
    assert reader.announced_watermarks() == {"s-0": MIN_WATERMARK}
    inner.put("s-0", WatermarkMarker("in-1", 25, 1), 3)
    reader.poll(10, 0)
    assert reader.announced_watermarks() == {"s-0": 10}
    inner.put("s-0", WatermarkMarker("in-0", 5, 1), 4)  # an older marker (a replay) never lowers it
    inner.put("s-0", WatermarkMarker("in-0", 40, 1), 5)
    reader.poll(10, 0)
    assert reader.announced_watermarks() == {"s-0": 25}


def test_a_split_finishes_when_every_upstream_split_sent_the_final_watermark() -> None:
    inner = _Queue()
    reader = ShuffleReader(inner, ["s-0", "s-1"], ["in-0", "in-1"])
    for split in ("s-0", "s-1"):
        inner.put(split, WatermarkMarker("in-0", MAX_WATERMARK, 1), 0)
    reader.poll(10, 0)
    assert not reader.finished_splits() and not reader.is_finished()
    inner.put("s-0", WatermarkMarker("in-1", MAX_WATERMARK, 1), 1)
    reader.poll(10, 0)
    assert set(reader.finished_splits()) == {"s-0"} and not reader.is_finished()
    inner.put("s-1", WatermarkMarker("in-1", MAX_WATERMARK, 1), 1)
    reader.poll(10, 0)
    assert reader.is_finished()


def test_a_new_generation_replaces_the_final_watermark_of_a_finished_run() -> None:
    """After a drained or finished run an upstream split restarts (a new generation, its last
    committed checkpoint): its lower watermark replaces the old +inf, and the split's position moves
    past consumed markers so a restart does not read them again."""
    inner = _Queue()
    reader = ShuffleReader(inner, ["s-0"], ["in-0"])
    inner.put("s-0", WatermarkMarker("in-0", MAX_WATERMARK, 4), 10)
    reader.poll(10, 0)
    assert reader.is_finished() and reader.consumed_positions() == {"s-0": 11}
    inner.put("s-0", WatermarkMarker("in-0", 7, 5), 11)
    reader.poll(10, 0)
    assert reader.announced_watermarks() == {"s-0": 7} and not reader.is_finished()
    inner.put("s-0", WatermarkMarker("in-0", MAX_WATERMARK, 4), 12)  # a stale one never wins
    reader.poll(10, 0)
    assert reader.announced_watermarks() == {"s-0": 7}


def test_a_payload_that_is_not_a_shuffle_record_goes_to_the_error_policy() -> None:
    inner = _Queue()
    reader = ShuffleReader(inner, ["s-0"], ["in-0"])
    inner.pending.append(SourceRecord("s-0", b"not a pickle", None, 7))
    (record,) = reader.poll(10, 0)
    assert record.error is not None and "not an eventapp shuffle record" in str(record.error)
    assert record.raw == b"not a pickle" and record.position == 7


def test_key_bytes_are_a_kafka_producers_for_str_and_bytes_and_state_key_bytes_otherwise() -> None:
    assert shuffle_key_bytes("card-1") == b"card-1"
    assert shuffle_key_bytes(b"\x00\x01") == b"\x00\x01"
    assert shuffle_key_bytes(42) == encode_key(42)
    assert shuffle_key_bytes(("a", 1)) == encode_key(("a", 1))
