"""Heart Rate Measurement decoding: worked byte examples and encode→decode round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.hrm import HeartRateMeasurement, MalformedMeasurement, decode, decode_location


@pytest.mark.parametrize(
    ("hex_bytes", "expected"),
    [
        # flags 0x00: uint8 value, no contact support: 72 bpm
        ("0048", HeartRateMeasurement(bpm=72)),
        # flags 0x06: contact supported and detected
        ("068c", HeartRateMeasurement(bpm=140, contact=True)),
        # flags 0x04: contact supported, not detected
        ("0450", HeartRateMeasurement(bpm=80, contact=False)),
        # flags 0x01: uint16 value 0x0134 = 308 (little-endian)
        ("013401", HeartRateMeasurement(bpm=308, wide=True)),
        # flags 0x08: energy expended 0x0102 = 258 kJ
        ("085a0201", HeartRateMeasurement(bpm=90, energy_kj=258)),
        # flags 0x16: contact + two RR intervals 0x0400 = 1024 (1 s) and 0x0300 = 768
        ("16780004 0003", HeartRateMeasurement(bpm=120, contact=True, rr=(1024, 768))),
        # flags 0x1f: everything: uint16 155, energy 1000 kJ, RR 700
        ("1f9b00e803bc02",
         HeartRateMeasurement(bpm=155, contact=True, energy_kj=1000, rr=(700,), wide=True)),
        # flags 0x10 with no RR bytes: allowed, an empty list
        ("1064", HeartRateMeasurement(bpm=100)),
    ],
)  # fmt: skip
def test_worked_examples(hex_bytes: str, expected: HeartRateMeasurement) -> None:
    assert decode(bytes.fromhex(hex_bytes.replace(" ", ""))) == expected


def test_rr_is_converted_from_1024ths_of_a_second() -> None:
    measurement = decode(bytes.fromhex("10780004" + "0002"))
    assert measurement.rr_ms == (1000.0, 500.0)


@pytest.mark.parametrize(
    ("hex_bytes", "reason"),
    [
        ("", "too short"),
        ("00", "too short"),
        ("0134", "16-bit heart rate value truncated"),
        ("08 5a 02", "energy expended field truncated"),
        ("10 78 00 04 00", "odd 3 bytes"),
        ("00 48 00", "after the last field"),
        ("01 48 00 07", "after the last field"),
    ],
)
def test_malformed_notifications_are_refused(hex_bytes: str, reason: str) -> None:
    with pytest.raises(MalformedMeasurement, match=reason):
        decode(bytes.fromhex(hex_bytes.replace(" ", "")))


measurements = st.builds(
    lambda wide, bpm8, bpm16, contact, energy, rr: HeartRateMeasurement(
        bpm=bpm16 if wide else bpm8, contact=contact, energy_kj=energy, rr=tuple(rr), wide=wide
    ),
    st.booleans(),
    st.integers(0, 0xFF),
    st.integers(0, 0xFFFF),
    st.none() | st.booleans(),
    st.none() | st.integers(0, 0xFFFF),
    st.lists(st.integers(0, 0xFFFF), max_size=9),
)


@given(measurements)
def test_round_trip_over_every_flag_combination(measurement: HeartRateMeasurement) -> None:
    assert decode(measurement.encode()) == measurement


@given(measurements, st.integers(1, 5))
def test_any_truncation_is_refused_or_still_consistent(
    measurement: HeartRateMeasurement, cut: int
) -> None:
    data = measurement.encode()
    truncated = data[: max(0, len(data) - cut)]
    try:
        decoded = decode(truncated)
    except MalformedMeasurement:
        return
    # Only RR intervals may be cut cleanly (whole pairs); the other fields never change.
    assert (decoded.bpm, decoded.contact, decoded.energy_kj) == (
        measurement.bpm, measurement.contact, measurement.energy_kj,
    )  # fmt: skip
    assert decoded.rr == measurement.rr[: len(decoded.rr)]


@given(st.binary(max_size=40))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        measurement = decode(data)
    except MalformedMeasurement:
        return
    assert 0 <= measurement.bpm <= 0xFFFF


@pytest.mark.parametrize(
    ("byte", "location"), [(0, "other"), (1, "chest"), (2, "wrist"), (6, "foot")]
)
def test_body_sensor_location(byte: int, location: str) -> None:
    assert decode_location(bytes([byte])) == location


@pytest.mark.parametrize("data", [b"", b"\x01\x02", b"\x07", b"\xff"])
def test_bad_body_sensor_location(data: bytes) -> None:
    with pytest.raises(MalformedMeasurement):
        decode_location(data)
