"""Redis stream entry ids as eventapp positions.

A stream entry id is ``<ms>-<seq>``: two unsigned 64-bit numbers, the milliseconds part and a
sequence number within that millisecond. Positions in eventapp are ints, so an id is encoded as
``(ms << 64) | seq``. The encoding keeps the order of ids, and ``position + 1`` is exactly the next
possible id (``5-7`` + 1 is ``5-8``; ``5-18446744073709551615`` + 1 is ``6-0``). A split's position
(the next record to read) is therefore "last id read + 1", and reading resumes with an inclusive
``XRANGE`` from that id. ``0-0`` (position 0) is below every id Redis accepts for an entry.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MAX_POSITION",
    "encode_id",
    "format_id",
    "id_ms",
    "parse_id",
    "split_position",
]

_U64: Final[int] = (1 << 64) - 1
#: The position of the largest id there can be, ``18446744073709551615-18446744073709551615``.
MAX_POSITION: Final[int] = (1 << 128) - 1


def encode_id(ms: int, seq: int) -> int:
    """The position of entry id ``ms-seq``."""
    if not 0 <= ms <= _U64 or not 0 <= seq <= _U64:
        raise ValueError(f"{ms}-{seq} is not a Redis stream id: both parts must be in 0..2**64-1")
    return (ms << 64) | seq


def parse_id(entry_id: str | bytes) -> int:
    """The position of entry id ``entry_id`` (``"1700000000000-3"``, as text or bytes)."""
    text = entry_id.decode("ascii") if isinstance(entry_id, bytes) else entry_id
    ms, sep, seq = text.partition("-")
    if not sep or not (ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        raise ValueError(f"{text!r} is not a Redis stream id (expected <ms>-<seq>, both decimal)")
    return encode_id(int(ms), int(seq))


def split_position(position: int) -> tuple[int, int]:
    """``(ms, seq)`` of the id at ``position``."""
    if not 0 <= position <= MAX_POSITION:
        raise ValueError(f"position {position} is not a Redis stream id position (0..2**128-1)")
    return position >> 64, position & _U64


def format_id(position: int) -> str:
    """The entry id ``"ms-seq"`` at ``position``."""
    ms, seq = split_position(position)
    return f"{ms}-{seq}"


def id_ms(position: int) -> int:
    """The milliseconds part of the id at ``position`` (an entry's time, for auto-generated ids)."""
    return position >> 64
