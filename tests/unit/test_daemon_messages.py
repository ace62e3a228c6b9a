"""The job manager's worker messages carry positions wider than 64 bits (Redis stream entry ids are
``(ms << 64) | seq``): a worker reading Redis once died on its first status report."""

from __future__ import annotations

from eventapp.daemon import messages


def test_a_128_bit_position_round_trips() -> None:
    position = (1_790_000_000_000 << 64) | 7
    line = messages.encode(messages.STATUS, stats={"splits": [{"split": "orders:0", "position": position}]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = messages.decode(line)
    assert decoded == {"type": "status", "stats": {"splits": [{"split": "orders:0", "position": position}]}}


def test_a_torn_line_is_not_a_message() -> None:
    line = messages.encode(messages.EXITING, finished=True)
    assert messages.decode(line[:-5]) is None
    assert messages.decode(b"\xff\xfe") is None
    assert messages.decode(b"[1, 2]") is None
