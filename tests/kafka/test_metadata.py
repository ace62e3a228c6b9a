"""Offset metadata and checkpoint marker encoding (no broker needed)."""

from __future__ import annotations

import pytest

from eventapp.connectors.kafka.metadata import CheckpointMarker, decode_metadata, encode_metadata
from eventapp.errors import CheckpointError


def test_metadata_round_trip() -> None:
    text = encode_metadata(12, "chk-000000012-abc")
    assert text == "eventapp:v1:chk=12:snap=chk-000000012-abc"
    assert decode_metadata(text) == (12, "chk-000000012-abc")
    assert decode_metadata(encode_metadata(3, "odd:name:with:colons")) == (3, "odd:name:with:colons")


@pytest.mark.parametrize("foreign", [None, "", "committed by kafka-consumer-groups", "eventapp"])
def test_metadata_of_other_tools_is_not_a_checkpoint(foreign: str | None) -> None:
    assert decode_metadata(foreign) is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("eventapp:v9:chk=1:snap=x", "format 'v9'"),
        ("eventapp:v1:chk=x:snap=y", "not a valid eventapp checkpoint reference"),
        ("eventapp:v1:chk=1:snap=", "not a valid eventapp checkpoint reference"),
        ("eventapp:v1:chk=1", "format"),
    ],
)
def test_broken_eventapp_metadata_is_an_error_not_a_guess(text: str, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        decode_metadata(text)


def test_metadata_length_is_bounded() -> None:
    with pytest.raises(CheckpointError, match="too long"):
        encode_metadata(1, "x" * 5000)


def test_marker_round_trip_and_errors() -> None:
    marker = CheckpointMarker("g", "orders-0", 7, "chk-000000007-a", None, job="j", transactional_id="t")
    assert CheckpointMarker.from_bytes(marker.to_bytes(), "here") == marker
    assert marker.key == b"g/orders-0"
    with pytest.raises(CheckpointError, match="marker at here cannot be read"):
        CheckpointMarker.from_bytes(b'{"v": 2}', "here")
    with pytest.raises(CheckpointError, match="cannot be read"):
        CheckpointMarker.from_bytes(b"not json", "here")
