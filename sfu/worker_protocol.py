"""The typed channel between the signaling process and an SFU worker process.

Frames are one JSON object per line. The main process sends ``Request``s and gets one
``Response`` per request id; the worker also sends ``OfferEvent``s (a subscribe offer
for a participant), ``SpeakerEvent``s and ``TelemetryEvent``s (heart-rate messages off
data channels, ~1 per participant per second) on its own. Media never crosses it.

Each operation is an ``Op``: its name, its argument model and its result model (the
table ``OPERATIONS``). The pool builds a request only from the operation's own argument
model (``request()``, checked by mypy through the ``Op``'s type parameters), the worker
validates the arguments against that model before anything runs and answers a mismatch
with ``bad_request`` naming the fields, and the pool validates the result against the
result model: a signature drift on either side fails at its first call. The envelope
is read first, so a request with wrong arguments still gets its answer.

A class may span workers (sfu/pipe.py): the main process then also sets up *pipes*
(``pipe_in`` / ``pipe_out`` / ``pipe_close``), over links handed to each worker as a
``LinkFrame`` plus a socket on a second, datagram channel, and a split class's workers
report ``SpeakerCandidateEvent``s instead of electing a speaker themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .backend import Role

OpName = Literal[
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
    "set_recording",
]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Request(_Frame):
    """Main → worker: run operation ``op``; ``args`` is its argument model as JSON
    (built by ``request()``, read with ``Op.arguments``)."""

    type: Literal["request"] = "request"
    id: int
    op: OpName
    args: dict[str, Any] = {}


class Response(_Frame):
    """Worker → main: the result of request ``id`` (its operation's result model as
    JSON), or its refusal."""

    type: Literal["response"] = "response"
    id: int
    ok: bool
    result: dict[str, Any] | None = None
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


# -- operations: one argument model and one result model each ----------------------------


class NoArgs(_Frame):
    """The arguments of an operation that takes none."""


class Done(_Frame):
    """The result of an operation that returns nothing."""


class JoinArgs(_Frame):
    """``join``: add a participant, creating the room's media side on first use."""

    room_id: str
    participant_id: str
    role: Role
    gallery: bool
    spotlight: str | None = None


class ParticipantArgs(_Frame):
    """``leave``: one participant of a room."""

    room_id: str
    participant_id: str


class PublishArgs(_Frame):
    """``publish``: a participant's publish offer."""

    room_id: str
    participant_id: str
    offer_sdp: str


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


class SubscribeAnswerArgs(_Frame):
    """``subscribe_answer``: the answer to a participant's latest subscribe offer."""

    room_id: str
    participant_id: str
    answer_sdp: str


class IceCandidateArgs(_Frame):
    """``add_ice_candidate``: a trickled candidate for one of a participant's connections."""

    room_id: str
    participant_id: str
    target: str
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


class SetVisibleArgs(_Frame):
    """``set_visible``: whose video a participant shows, how large, their layer cap."""

    room_id: str
    participant_id: str
    visible: list[str] | None
    sizes: dict[str, int] | None = None
    max_height: int | None = None


class SetGalleryArgs(_Frame):
    """``set_gallery``: gallery mode on or off."""

    room_id: str
    enabled: bool


class SetSpotlightArgs(_Frame):
    """``set_spotlight``: the participant everyone receives (None: nobody)."""

    room_id: str
    participant_id: str | None


class SetRecordingArgs(_Frame):
    """``set_recording``: record the instructor into a new file in ``directory``, or stop
    (None)."""

    room_id: str
    directory: str | None
    audio: bool = True  # False: the instructor's audio is left out (music excluded)


class RoomArgs(_Frame):
    """``close_room``: one room."""

    room_id: str


class StatsResult(_Frame):
    """``stats``: the worker's counters, and which event loop it really runs."""

    counters: dict[str, int | float]
    event_loop: str  # "uvloop" or "asyncio"


# -- pipes between workers (sfu/pipe.py) ------------------------------------------------


class PipeInArgs(_Frame):
    """``pipe_in``: hold a copy of another worker's track for this worker's subscribers."""

    room_id: str
    link_id: int
    pipe_id: int
    owner_id: str
    owner_role: Role
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

    room_id: str
    link_id: int
    pipe_id: int


class UnlinkArgs(_Frame):
    """``unlink``: close the link (its peer died); every pipe on it ends."""

    link_id: int


class SetSplitArgs(_Frame):
    """``set_split``: the class spans workers (report speaker candidates) or not."""

    room_id: str
    split: bool


A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Op(Generic[A, R]):
    """One operation: its name on the wire, its argument model and its result model."""

    name: OpName
    args: type[A]
    result: type[R]

    def arguments(self, request: Request) -> A:
        """``request``'s arguments as this operation's model (pydantic.ValidationError
        names every missing, extra or mistyped field)."""
        return self.args.model_validate(request.args)

    def result_of(self, response: Response) -> R:
        """A successful ``response``'s result as this operation's model."""
        return self.result.model_validate(response.result or {})


JOIN = Op("join", JoinArgs, Done)
LEAVE = Op("leave", ParticipantArgs, Done)
PUBLISH = Op("publish", PublishArgs, PublishResult)
SUBSCRIBE_ANSWER = Op("subscribe_answer", SubscribeAnswerArgs, Done)
ADD_ICE_CANDIDATE = Op("add_ice_candidate", IceCandidateArgs, Done)
SET_VISIBLE = Op("set_visible", SetVisibleArgs, Done)
SET_GALLERY = Op("set_gallery", SetGalleryArgs, Done)
SET_SPOTLIGHT = Op("set_spotlight", SetSpotlightArgs, Done)
CLOSE_ROOM = Op("close_room", RoomArgs, Done)
STATS = Op("stats", NoArgs, StatsResult)
PIPE_IN = Op("pipe_in", PipeInArgs, Done)
PIPE_OUT = Op("pipe_out", PipeOutArgs, Done)
PIPE_CLOSE = Op("pipe_close", PipeCloseArgs, Done)
UNLINK = Op("unlink", UnlinkArgs, Done)
SET_SPLIT = Op("set_split", SetSplitArgs, Done)
SET_RECORDING = Op("set_recording", SetRecordingArgs, Done)

OPERATIONS: dict[str, Op[Any, Any]] = {
    op.name: op
    for op in (
        JOIN, LEAVE, PUBLISH, SUBSCRIBE_ANSWER, ADD_ICE_CANDIDATE, SET_VISIBLE, SET_GALLERY,
        SET_SPOTLIGHT, CLOSE_ROOM, STATS, PIPE_IN, PIPE_OUT, PIPE_CLOSE, UNLINK, SET_SPLIT,
        SET_RECORDING,
    )
}  # fmt: skip


def request(request_id: int, op: Op[A, Any], args: A) -> Request:
    """The request running ``op`` with ``args`` (which must be ``op``'s own model)."""
    if type(args) is not op.args:
        raise TypeError(f"{op.name} takes {op.args.__name__}, not {type(args).__name__}")
    return Request(id=request_id, op=op.name, args=args.model_dump(mode="json"))


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
