"""Pydantic models for every Socket.IO and REST payload of docs/protocol.md (version 1)."""

from __future__ import annotations

import time
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

PROTOCOL_VERSION = 1
MAX_SDP = 64 * 1024  # a publish offer: a few m-lines
# A subscribe answer has one m-line per track the client receives: an instructor of 100
# participants answers ~200 m-lines (aiortc writes ~250 KB for that, browsers less).
MAX_SUBSCRIBE_SDP = 1024 * 1024


def _integer_version(value: Any) -> Any:
    # Literal[1] alone also takes true and 1.0 (both equal 1 in Python), strict or not.
    if type(value) is not int:
        raise ValueError("must be the integer 1")
    return value


Version = Annotated[Literal[1], BeforeValidator(_integer_version)]


def _clean_text(value: str) -> str:
    """Strip, and refuse control characters (they break layouts and logs)."""
    value = value.strip()
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _clean_name(value: str) -> str:
    value = _clean_text(value)
    if "\n" in value or "\t" in value:
        raise ValueError("must be one line")
    # Format characters (Unicode Cf: text-direction overrides, zero-width spaces) make a
    # name read differently from what it is, or look like another's.
    if any(unicodedata.category(ch) == "Cf" for ch in value):
        raise ValueError("must not contain invisible formatting characters")
    if not value:
        raise ValueError("must not be empty")
    return value


Name = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_clean_name)]
Title = Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_clean_name)]
ChatText = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_clean_text)]


class Inbound(BaseModel):
    """Base of every client→server message: strict, no unknown fields, versioned."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Version


class JoinIn(Inbound):
    """``join``: enter a class with a link's token."""

    token: Annotated[str, Field(min_length=1, max_length=512)]
    name: Name
    room: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class PublishIn(Inbound):
    """``publish``: the offer of the client's publish connection."""

    type: Literal["offer"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SDP)]


class SubscribeAnswerIn(Inbound):
    """``subscribe_answer``: the answer to the latest subscribe offer."""

    type: Literal["answer"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SUBSCRIBE_SDP)]


class IceIn(Inbound):
    """``ice``: a trickled ICE candidate for one of the client's connections."""

    pc: Literal["publish", "subscribe"]
    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: Annotated[str, Field(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=1024)] | None = None


class ChatIn(Inbound):
    """``chat``: a message to the class."""

    text: ChatText


class MediaStateIn(Inbound):
    """``media_state``: the client's microphone and camera state; an instructor's page
    says whether its music mode is on (``music``), which a recording may leave out."""

    audio: bool
    video: bool
    music: bool | None = None


class VisibilityIn(Inbound):
    """``visibility``: whose video the client shows; null means everyone's."""

    visible: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=1000)] | None
    # Rendered height (device pixels) of each shown video, by participant id, and the
    # viewer's own cap on the height of what it receives (data saver; null: none).
    sizes: (
        Annotated[
            dict[Annotated[str, Field(max_length=64)], Annotated[int, Field(ge=0, le=4320)]],
            Field(max_length=1000),
        ]
        | None
    ) = None
    max_height: Annotated[int, Field(ge=90, le=4320)] | None = None


class GalleryIn(Inbound):
    """``gallery``: the host turns participants seeing each other on or off."""

    enabled: bool


class RecordIn(Inbound):
    """``record``: the host starts or stops recording the class; ``music`` "exclude"
    leaves the instructor's audio out while their music mode is on."""

    on: bool
    music: Literal["include", "exclude"] = "include"


class ProfileFields(BaseModel):
    """A zone profile as a client sends it: what zones and calories need, every field
    optional (the ``profile`` event's fields, and ``PUT /api/me/profile``'s body)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    age: Annotated[int, Field(ge=10, le=100)] | None = None
    max_hr: Annotated[int, Field(ge=100, le=230)] | None = None
    resting_hr: Annotated[int, Field(ge=30, le=120)] | None = None
    weight_kg: Annotated[float, Field(ge=25, le=300)] | None = None
    sex: Literal["female", "male"] | None = None
    zone_method: Literal["hrmax", "karvonen"] = "hrmax"


class ProfileIn(Inbound, ProfileFields):
    """``profile``: what zones and calories need; every field optional."""


class EmptyIn(Inbound):
    """``end_class`` and ``leave``: no fields but the version."""


# -- class controls (host only; signaling/class_control.py) ---------------------------

ParticipantId = Annotated[str, Field(min_length=1, max_length=64)]
MAX_TIMER_S = 4 * 3600  # a class's longest interval program


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TimerPhaseIn(_Strict):
    """One phase of an interval program."""

    name: Name
    seconds: Annotated[int, Field(ge=1, le=3600)]
    kind: Literal["work", "rest"]


class TimerProgramIn(_Strict):
    """Phases repeated for some rounds (4 hours at most in all)."""

    title: Annotated[str, Field(max_length=40), AfterValidator(_clean_text)] = ""
    phases: Annotated[list[TimerPhaseIn], Field(min_length=1, max_length=20)]
    rounds: Annotated[int, Field(ge=1, le=100)]

    @model_validator(mode="after")
    def _not_too_long(self) -> TimerProgramIn:
        total = sum(p.seconds for p in self.phases) * self.rounds
        if total > MAX_TIMER_S:
            raise ValueError(f"the program lasts {total} s; at most {MAX_TIMER_S} s")
        return self


class LockIn(Inbound):
    """``lock``: refuse (or accept again) new participants."""

    locked: bool


class MuteIn(Inbound):
    """``mute``: mute one participant's microphone, or everyone's (null)."""

    participant_id: ParticipantId | None


class RemoveIn(Inbound):
    """``remove``: take a participant out of the class for good."""

    participant_id: ParticipantId


class ShoutOutIn(Inbound):
    """``shout_out``: the instructor praises a participant, shown on their page for a few
    seconds (``text`` one line; without it, "Great push, NAME!")."""

    participant_id: ParticipantId
    text: Title | None = None


class SpotlightIn(Inbound):
    """``spotlight``: show one participant large to everyone (null: the instructor)."""

    participant_id: ParticipantId | None


class TimerIn(Inbound):
    """``timer``: start a program, or pause, resume or stop the running one."""

    action: Literal["start", "pause", "resume", "stop"]
    program: TimerProgramIn | None = None

    @model_validator(mode="after")
    def _program_only_to_start(self) -> TimerIn:
        if (self.action == "start") != (self.program is not None):
            raise ValueError("'start' needs a program; the other actions take none")
        return self


class ClockIn(Inbound):
    """``clock``: start the class clock from zero, or stop (hide) it."""

    action: Literal["start", "stop"]


# -- effort points (signaling/effort.py, telemetry/effort.py) -------------------------

MAX_POINTS_PER_MINUTE = 20
MAX_TARGET_MINUTES = 240
MAX_TARGET_POINTS = 2000

PointsPerMinute = Annotated[float, Field(ge=0, le=MAX_POINTS_PER_MINUTE, allow_inf_nan=False)]


class EffortTargetIn(_Strict):
    """A class's target: minutes in ``from_zone`` and above, or points."""

    kind: Literal["zone_minutes", "points"]
    value: Annotated[float, Field(gt=0, le=MAX_TARGET_POINTS, allow_inf_nan=False)]
    from_zone: Annotated[int, Field(ge=1, le=5)] = 4

    @model_validator(mode="after")
    def _sensible(self) -> EffortTargetIn:
        if self.kind == "zone_minutes" and self.value > MAX_TARGET_MINUTES:
            raise ValueError(f"a target of minutes is at most {MAX_TARGET_MINUTES}")
        return self


class EffortSettingsIn(Inbound):
    """``effort_settings``: points per minute in zones 0-5, and the target (null: none)."""

    points_per_minute: Annotated[list[PointsPerMinute], Field(min_length=6, max_length=6)]
    target: EffortTargetIn | None

    @model_validator(mode="after")
    def _reachable(self) -> EffortSettingsIn:
        # Every zone at 0 turns points off; a target of points could then never be met.
        target = self.target
        if target is not None and target.kind == "points" and not any(self.points_per_minute):
            raise ValueError("a target of points needs a zone that earns points")
        return self


class LeaderboardOptOutIn(Inbound):
    """``leaderboard_opt_out``: keep one's points off (or back on) the class's board."""

    opt_out: bool


# A class's schedule (signaling/schedule.py): the limits of ``POST /api/rooms``.
MAX_DESCRIPTION = 2000
MAX_DURATION_S = 8 * 3600
START_GRACE_S = 15 * 60  # a start this far in the past still counts as "now"
MAX_AHEAD_S = 366 * 24 * 3600


class CreateRoomIn(BaseModel):
    """``POST /api/rooms`` body: a title; a description, start (unix seconds), duration
    and weekly recurrence if the class is scheduled."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    title: Title
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION), AfterValidator(_clean_text)] = ""
    starts_at: Annotated[float, Field(allow_inf_nan=False)] | None = None
    duration_s: Annotated[int, Field(ge=1, le=MAX_DURATION_S)] | None = None
    weekly: bool = False

    @model_validator(mode="after")
    def _sensible_schedule(self) -> CreateRoomIn:
        if self.starts_at is None:
            if self.weekly or self.duration_s is not None:
                raise ValueError("a weekly class, or a duration, needs a start time (starts_at)")
            return self
        now = time.time()
        if self.starts_at < now - START_GRACE_S:
            raise ValueError("starts_at is in the past: choose a time to come")
        if self.starts_at > now + MAX_AHEAD_S:
            raise ValueError("starts_at is more than a year away")
        return self


class ParticipantOut(BaseModel):
    """A member of a class as clients see it."""

    id: str
    name: str
    role: Literal["host", "participant", "device", "board"]
    audio: bool
    video: bool


class RoomOut(BaseModel):
    """A class as clients see it: ``id`` is the one its link names; for a weekly series,
    ``session_id`` is this week's session (whose summary it is)."""

    id: str
    title: str
    gallery: bool
    description: str = ""
    session_id: str | None = None


class TimerPhaseOut(BaseModel):
    """One phase of the running interval program."""

    name: str
    seconds: int
    kind: Literal["work", "rest"]


class TimerOut(BaseModel):
    """The interval program and its absolute times on the server's clock (unix seconds)."""

    title: str
    phases: list[TimerPhaseOut]
    rounds: int
    total_s: int
    started_at: float
    paused_at: float | None


class ClassStateOut(BaseModel):
    """What the instructor controls, as every client sees it."""

    locked: bool
    spotlight: str | None
    clock_started_at: float | None
    timer: TimerOut | None
    # False while the class waits in its lobby for the instructor to start it.
    started: bool = True
    starts_at: float | None = None  # the scheduled start (None: an instant class)
    duration_s: int | None = None


class ChatMessageOut(BaseModel):
    """A chat message as clients see it."""

    id: str
    participant_id: str
    name: str
    text: str
    sent_at: float
    role: Literal["host", "participant"]  # the page marks the instructor's messages


def error_payload(code: str, message: str, event: str) -> dict[str, Any]:
    """The ``error`` event's payload."""
    return {"v": PROTOCOL_VERSION, "code": code, "message": message, "event": event}
