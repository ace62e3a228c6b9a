"""Redis stream entry ids as positions: the encoding round-trips, keeps the order of ids, and
``position + 1`` is the next possible id."""

from __future__ import annotations

import random

import pytest

from eventapp.connectors.redis.stream_ids import (
    MAX_POSITION,
    encode_id,
    format_id,
    id_ms,
    parse_id,
    split_position,
)

U64 = (1 << 64) - 1


def test_zero_id_is_position_zero() -> None:
    assert parse_id("0-0") == 0
    assert format_id(0) == "0-0"
    assert format_id(1) == "0-1"


@pytest.mark.parametrize(
    "entry_id", ["0-1", "1-0", "1700000000000-0", "1700000000000-42", f"{U64}-{U64}", f"5-{U64}"]
)
def test_round_trip(entry_id: str) -> None:
    position = parse_id(entry_id)
    assert format_id(position) == entry_id
    assert parse_id(entry_id.encode()) == position
    ms, seq = (int(part) for part in entry_id.split("-"))
    assert split_position(position) == (ms, seq)
    assert encode_id(ms, seq) == position
    assert id_ms(position) == ms


def test_order_of_positions_is_the_order_of_ids() -> None:
    rng = random.Random(7)
    ids = [
        (rng.choice([0, 1, 2, 1_700_000_000_000, U64]), rng.choice([0, 1, 2, 1 << 32, U64]))
        for _ in range(200)
    ]
    by_position = sorted(ids, key=lambda i: encode_id(*i))
    assert by_position == sorted(ids)


def test_plus_one_is_the_next_possible_id() -> None:
    assert format_id(parse_id("5-7") + 1) == "5-8"
    assert format_id(parse_id(f"5-{U64}") + 1) == "6-0"  # a big seq carries into the ms part
    assert format_id(MAX_POSITION) == f"{U64}-{U64}"


@pytest.mark.parametrize(
    "bad", ["", "5", "5-", "-5", "a-1", "1-b", "1-2-3", " 1-2", "1.5-0", "²-1", f"{U64 + 1}-0"]
)
def test_malformed_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a Redis stream id"):
        parse_id(bad)


@pytest.mark.parametrize("position", [-1, MAX_POSITION + 1])
def test_out_of_range_positions_are_refused(position: int) -> None:
    with pytest.raises(ValueError, match="not a Redis stream id position"):
        format_id(position)
