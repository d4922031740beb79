"""The telemetry data-channel message: strict, bounded, versioned."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.messages import MAX_MESSAGE_BYTES, Reading, TelemetryError, parse

GOOD = {"v": 1, "type": "hr", "seq": 7, "t": 1_795_290_000_000, "bpm": 142, "rr": [421.9]}


def test_a_reading() -> None:
    reading = parse(json.dumps(GOOD))
    assert reading == Reading(v=1, type="hr", seq=7, t=1_795_290_000_000, bpm=142, rr=[421.9])


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"v": 2}, "v"),
        ({"bpm": 400}, "bpm"),
        ({"bpm": "142"}, "bpm"),
        ({"seq": -1}, "seq"),
        ({"rr": [0]}, "rr"),
        ({"rr": [400.0] * 33}, "rr"),
        ({"participant": "someone-else"}, "participant"),
        ({"type": "cmd"}, "type"),
    ],
)
def test_bad_readings_say_what_is_wrong(change: dict[str, object], where: str) -> None:
    with pytest.raises(TelemetryError, match=where):
        parse(json.dumps({**GOOD, **change}))


def test_oversize_messages_are_refused_before_parsing() -> None:
    with pytest.raises(TelemetryError, match="exceeds"):
        parse("x" * (MAX_MESSAGE_BYTES + 1))


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_arbitrary_input_is_refused_cleanly(data: str | bytes) -> None:
    with contextlib.suppress(TelemetryError):
        parse(data)
