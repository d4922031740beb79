"""Pydantic models for every Socket.IO and REST payload of docs/protocol.md (version 1)."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
MAX_SDP = 64 * 1024  # a publish offer: a few m-lines
# A subscribe answer has one m-line per track the client receives: an instructor of 100
# participants answers ~200 m-lines (aiortc writes ~250 KB for that, browsers less).
MAX_SUBSCRIBE_SDP = 1024 * 1024


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
    if not value:
        raise ValueError("must not be empty")
    return value


Name = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_clean_name)]
Title = Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_clean_name)]
ChatText = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_clean_text)]


class Inbound(BaseModel):
    """Base of every client→server message: strict, no unknown fields, versioned."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]


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
    """``media_state``: the client's microphone and camera state."""

    audio: bool
    video: bool


class VisibilityIn(Inbound):
    """``visibility``: whose video the client shows; null means everyone's."""

    visible: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=1000)] | None


class GalleryIn(Inbound):
    """``gallery``: the host turns participants seeing each other on or off."""

    enabled: bool


class ProfileIn(Inbound):
    """``profile``: what zones and calories need; every field optional."""

    age: Annotated[int, Field(ge=10, le=100)] | None = None
    max_hr: Annotated[int, Field(ge=100, le=230)] | None = None
    resting_hr: Annotated[int, Field(ge=30, le=120)] | None = None
    weight_kg: Annotated[float, Field(ge=25, le=300)] | None = None
    sex: Literal["female", "male"] | None = None
    zone_method: Literal["hrmax", "karvonen"] = "hrmax"


class EmptyIn(Inbound):
    """``end_class`` and ``leave``: no fields but the version."""


class CreateRoomIn(BaseModel):
    """``POST /api/rooms`` body."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    title: Title


class ParticipantOut(BaseModel):
    """A member of a class as clients see it."""

    id: str
    name: str
    role: Literal["host", "participant", "device"]
    audio: bool
    video: bool


class RoomOut(BaseModel):
    """A class as clients see it."""

    id: str
    title: str
    gallery: bool


class ChatMessageOut(BaseModel):
    """A chat message as clients see it."""

    id: str
    participant_id: str
    name: str
    text: str
    sent_at: float


def error_payload(code: str, message: str, event: str) -> dict[str, Any]:
    """The ``error`` event's payload."""
    return {"v": PROTOCOL_VERSION, "code": code, "message": message, "event": event}
