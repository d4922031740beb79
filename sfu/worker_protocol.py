"""The typed channel between the signaling process and an SFU worker process.

Frames are one JSON object per line. The main process sends ``Request``s and gets one
``Response`` per request id; the worker also sends ``OfferEvent``s (a subscribe offer
for a participant), ``SpeakerEvent``s and ``TelemetryEvent``s (heart-rate messages off
data channels, ~1 per participant per second) on its own. Media never crosses it.

A class may span workers (sfu/pipe.py): the main process then also sets up *pipes*
(``pipe_in`` / ``pipe_out`` / ``pipe_close`` with the argument models below, over
links handed to each worker as a ``LinkFrame`` plus a socket on a second, datagram
channel), and a split class's workers report ``SpeakerCandidateEvent``s instead of
electing a speaker themselves.
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
    "set_spotlight",
    "close_room",
    "stats",
    "pipe_in",
    "pipe_out",
    "pipe_close",
    "unlink",
    "set_split",
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


class LayersEvent(_Frame):
    """Worker → main: which simulcast layers (rids) a participant's client should send."""

    type: Literal["layers"] = "layers"
    room_id: str
    participant_id: str
    rids: list[str]


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


class SpeakerCandidateEvent(_Frame):
    """Worker → main, every speaker window of a class split across workers: its loudest
    local publisher above the speech threshold (None: nobody), and how loud."""

    type: Literal["speaker_candidate"] = "speaker_candidate"
    room_id: str
    participant_id: str | None
    loudness: float


# -- pipes between workers (sfu/pipe.py) ------------------------------------------------


class TrackParams(_Frame):
    """A published track as another worker needs it to hold a copy: what subscribers
    there are offered (the codec) and what its publisher may be asked to send."""

    producer_id: str
    kind: Literal["audio", "video"]
    mime_type: str
    clock_rate: int
    channels: int | None
    parameters: dict[str, str | int]
    max_bitrate: int
    rids: list[str] = []  # its simulcast layers, low to high (none: one stream)


class PublishResult(_Frame):
    """The ``publish`` operation's result: the answer, and the tracks it created."""

    answer: str
    producers: list[TrackParams]


class PipeInArgs(_Frame):
    """``pipe_in``: hold a copy of another worker's track for this worker's subscribers."""

    room_id: str
    link_id: int
    pipe_id: int
    owner_id: str
    owner_role: Literal["host", "participant", "device"]
    track: TrackParams


class PipeOutArgs(_Frame):
    """``pipe_out``: send a local track's packets over a link."""

    room_id: str
    link_id: int
    pipe_id: int
    owner_id: str
    producer_id: str


class PipeCloseArgs(_Frame):
    """``pipe_close``: end a pipe, at whichever end this worker holds (idempotent)."""

    link_id: int
    pipe_id: int


class UnlinkArgs(_Frame):
    """``unlink``: close the link (its peer died); every pipe on it ends."""

    link_id: int


class SetSplitArgs(_Frame):
    """``set_split``: the class spans workers (report speaker candidates) or not."""

    room_id: str
    split: bool


class LinkFrame(_Frame):
    """Main → worker on the link channel, with one socket attached (SCM_RIGHTS): this
    worker's end of a datagram socket pair to worker ``peer``."""

    type: Literal["link"] = "link"
    link_id: int
    peer: int


AnyFrame = (
    Request
    | Response
    | OfferEvent
    | LayersEvent
    | SpeakerEvent
    | TelemetryEvent
    | SpeakerCandidateEvent
)
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
