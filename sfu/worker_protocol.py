"""The typed channel between the signaling process and an SFU worker process.

Frames are one JSON object per line. The main process sends ``Request``s and gets one
``Response`` per request id; the worker also sends ``OfferEvent``s (a subscribe offer
for a participant), ``SpeakerEvent``s and ``TelemetryEvent``s (heart-rate messages off
data channels, ~1 per participant per second) on its own. Media never crosses it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Operation = Literal[
    "join",
    "leave",
    "publish",
    "subscribe_answer",
    "add_ice_candidate",
    "set_visible",
    "set_gallery",
    "close_room",
    "stats",
]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Request(_Frame):
    """Main → worker: call one MediaBackend operation with keyword arguments."""

    type: Literal["request"] = "request"
    id: int
    op: Operation
    args: dict[str, Any] = {}


class Response(_Frame):
    """Worker → main: the result of request ``id``, or its refusal."""

    type: Literal["response"] = "response"
    id: int
    ok: bool
    result: Any = None
    code: str = ""
    message: str = ""


class TrackOut(_Frame):
    """One m-line of a subscribe offer."""

    mid: str
    participant_id: str
    kind: str


class OfferEvent(_Frame):
    """Worker → main: deliver a subscribe offer to a participant's client."""

    type: Literal["offer"] = "offer"
    room_id: str
    participant_id: str
    sdp: str
    tracks: list[TrackOut]


class SpeakerEvent(_Frame):
    """Worker → main: the room's active speaker changed."""

    type: Literal["speaker"] = "speaker"
    room_id: str
    participant_id: str | None


class TelemetryEvent(_Frame):
    """Worker → main: a message from a participant's ``telemetry`` data channel."""

    type: Literal["telemetry"] = "telemetry"
    room_id: str
    participant_id: str
    data: str


AnyFrame = Request | Response | OfferEvent | SpeakerEvent | TelemetryEvent
Frame = Annotated[AnyFrame, Field(discriminator="type")]
FRAME = TypeAdapter(Frame)
# Longest frame either side reads: a subscribe answer may be 1 MiB of SDP, JSON-escaped.
MAX_FRAME_BYTES = 4 * 1024 * 1024


def encode(frame: _Frame) -> bytes:
    """One frame as a line of JSON."""
    return frame.model_dump_json().encode() + b"\n"


def decode(line: bytes) -> AnyFrame:
    """Parse one line; raises pydantic.ValidationError on anything malformed."""
    return FRAME.validate_json(line)
