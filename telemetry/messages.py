"""Data-channel messages of the ``telemetry`` channel (docs/protocol.md), version 1.

A client (the browser with Web Bluetooth, or ``pulseroom hr-bridge``) sends one JSON
text message per reading on a data channel labelled ``telemetry`` on its publish
connection. ``seq`` is the sender's own counter, so a reading sent twice (after a
reconnect) is stored once; ``t`` is the device time in unix milliseconds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

MAX_MESSAGE_BYTES = 1024
CHANNEL_LABEL = "telemetry"


def _integer_version(value: Any) -> Any:
    # Literal[1] alone also takes true and 1.0 (both equal 1 in Python), strict or not.
    if type(value) is not int:
        raise ValueError("must be the integer 1")
    return value


class Reading(BaseModel):
    """One heart-rate reading."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Annotated[Literal[1], BeforeValidator(_integer_version)]
    type: Literal["hr"]
    seq: Annotated[int, Field(ge=0, le=2**53)]
    t: Annotated[int, Field(ge=0, le=2**53)]  # device time, unix milliseconds
    bpm: Annotated[int, Field(ge=20, le=300)]
    rr: Annotated[list[Annotated[float, Field(gt=0, lt=5000)]], Field(max_length=32)] = []
    energy_kj: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    contact: bool | None = None


READING = TypeAdapter(Reading)


class TelemetryError(ValueError):
    """A data-channel message that is refused (and counted), with the reason."""


def parse(message: str | bytes) -> Reading:
    """Validate one data-channel message; raises TelemetryError saying why not."""
    if len(message) > MAX_MESSAGE_BYTES:
        raise TelemetryError(f"message of {len(message)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return READING.validate_json(message)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise TelemetryError(f"{where}: {first['msg']}") from None
