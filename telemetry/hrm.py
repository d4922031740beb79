"""The Bluetooth Heart Rate Service's characteristics, decoded exactly as specified.

Heart Rate Measurement (0x2A37), little-endian:

- flags (1 byte): bit 0 value format (0: uint8, 1: uint16); bits 1-2 sensor contact
  (0b0x: not supported, 0b10: supported, no contact, 0b11: supported, contact);
  bit 3 energy expended present; bit 4 RR intervals present; bits 5-7 reserved;
- heart rate (uint8 or uint16, beats per minute);
- energy expended (uint16, kilojoules), if flagged;
- RR intervals (uint16 each, in 1/1024 s), if flagged: as many as fit.

Body Sensor Location (0x2A38): one uint8 (0 other, 1 chest, 2 wrist, 3 finger, 4 hand,
5 ear lobe, 6 foot).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

HEART_RATE_SERVICE: Final = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT: Final = "00002a37-0000-1000-8000-00805f9b34fb"
BODY_SENSOR_LOCATION: Final = "00002a38-0000-1000-8000-00805f9b34fb"

_UINT16: Final = struct.Struct("<H")
RR_UNITS_PER_SECOND: Final = 1024

LOCATIONS: Final = ("other", "chest", "wrist", "finger", "hand", "ear lobe", "foot")


class MalformedMeasurement(ValueError):
    """A notification that does not decode as the characteristic specifies."""


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """One decoded Heart Rate Measurement notification.

    ``contact`` is None when the sensor does not report contact; ``rr`` holds the RR
    intervals in the wire's 1/1024 s units (``rr_ms`` converts them).
    """

    bpm: int
    contact: bool | None = None
    energy_kj: int | None = None
    rr: tuple[int, ...] = ()
    wide: bool = False  # the value was sent as uint16

    @property
    def rr_ms(self) -> tuple[float, ...]:
        """RR intervals in milliseconds."""
        return tuple(value * 1000 / RR_UNITS_PER_SECOND for value in self.rr)

    def encode(self, rr_flag: bool | None = None) -> bytes:
        """The notification bytes for this measurement (the inverse of ``decode``)."""
        flags = 0x01 if self.wide else 0x00
        if self.contact is not None:
            flags |= 0x06 if self.contact else 0x04
        if self.energy_kj is not None:
            flags |= 0x08
        if rr_flag if rr_flag is not None else bool(self.rr):
            flags |= 0x10
        out = bytearray([flags])
        out += _UINT16.pack(self.bpm) if self.wide else bytes([self.bpm])
        if self.energy_kj is not None:
            out += _UINT16.pack(self.energy_kj)
        for value in self.rr:
            out += _UINT16.pack(value)
        return bytes(out)


def decode(data: bytes | bytearray) -> HeartRateMeasurement:
    """Decode a Heart Rate Measurement notification; raises MalformedMeasurement."""
    size = len(data)
    if size < 2:
        raise MalformedMeasurement(f"heart rate measurement too short: {size} byte(s)")
    flags = data[0]
    wide = bool(flags & 0x01)
    offset = 1
    if wide:
        if size < 3:
            raise MalformedMeasurement("16-bit heart rate value truncated")
        bpm = _UINT16.unpack_from(data, 1)[0]
        offset = 3
    else:
        bpm = data[1]
        offset = 2
    contact: bool | None = None
    if flags & 0x04:
        contact = bool(flags & 0x02)
    energy: int | None = None
    if flags & 0x08:
        if size < offset + 2:
            raise MalformedMeasurement("energy expended field truncated")
        energy = _UINT16.unpack_from(data, offset)[0]
        offset += 2
    rr: tuple[int, ...] = ()
    if flags & 0x10:
        remaining = size - offset
        if remaining % 2:
            raise MalformedMeasurement(f"RR intervals take an odd {remaining} bytes")
        rr = tuple(_UINT16.unpack_from(data, offset + i)[0] for i in range(0, remaining, 2))
    elif size != offset:
        raise MalformedMeasurement(
            f"{size - offset} byte(s) after the last field the flags announce (flags {flags:#04x})"
        )
    return HeartRateMeasurement(bpm=bpm, contact=contact, energy_kj=energy, rr=rr, wide=wide)


def decode_location(data: bytes | bytearray) -> str:
    """Decode Body Sensor Location; raises MalformedMeasurement."""
    if len(data) != 1:
        raise MalformedMeasurement(f"body sensor location must be 1 byte, got {len(data)}")
    if data[0] >= len(LOCATIONS):
        raise MalformedMeasurement(f"body sensor location {data[0]} is reserved")
    return LOCATIONS[data[0]]
