"""What signaling needs from the media side, keyed by ids: one interface, two homes.

``SfuServer`` implements it in the signaling process (``PULSEROOM_SFU_WORKERS=0``);
``WorkerPool`` implements it by placing each class on one of several worker processes,
each running an ``SfuServer``. Signaling cannot tell them apart.

The types the two sides share (``Role``, ``SfuError``, ``TrackInfo``, ``PeerSignal``) are
defined here, so signaling imports this module only: it imports no aiortc, directly or
through another module (tests/test_layering.py holds it to that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Role = Literal["host", "participant", "device", "board"]


class SfuError(Exception):
    """A request the SFU refuses; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """What one m-line of a subscribe offer carries."""

    mid: str
    participant_id: str
    kind: str


class PeerSignal(Protocol):
    """How the SFU reaches a participant's client (implemented by signaling)."""

    async def send_offer(self, sdp: str, tracks: list[TrackInfo]) -> None:
        """Deliver a subscribe offer; the answer comes back via ``Participant.subscribe_answer``."""

    async def send_layers(self, rids: list[str]) -> None:
        """Tell the client which of its simulcast layers (by rid) to send."""


SpeakerCallback = Callable[[str, str | None], None]  # (room id, participant id or None)
FailureCallback = Callable[[str, str], None]  # (room id, what happened)
# (room id, participant id, message): a message on a participant's ``telemetry`` data
# channel, unvalidated (at most one byte over the size limit, so oversize is detectable).
TelemetryCallback = Callable[[str, str, str], None]


class MediaBackend(Protocol):
    """The media operations of a class, addressed by room and participant id."""

    on_active_speaker: SpeakerCallback | None
    on_room_failed: FailureCallback | None
    on_telemetry: TelemetryCallback | None

    async def join(
        self,
        room_id: str,
        participant_id: str,
        role: Role,
        signal: PeerSignal,
        gallery: bool,
        spotlight: str | None = None,
    ) -> None:
        """Add a participant (creating the room's media side on first use)."""

    async def leave(self, room_id: str, participant_id: str) -> None:
        """Remove a participant; the room's media side closes when it empties."""

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Answer a participant's publish offer."""

    async def subscribe_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        """Apply the answer to the participant's latest subscribe offer."""

    async def add_ice_candidate(
        self,
        room_id: str,
        participant_id: str,
        target: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """A trickled ICE candidate for the participant's publish or subscribe connection."""

    async def set_visible(
        self,
        room_id: str,
        participant_id: str,
        visible: list[str] | None,
        sizes: dict[str, int] | None = None,
        max_height: int | None = None,
    ) -> None:
        """Whose video the participant shows (None: everyone's), at what height in device
        pixels (``sizes``, by publisher), and the viewer's cap on layer height."""

    async def set_gallery(self, room_id: str, enabled: bool) -> None:
        """Turn gallery mode on or off."""

    async def set_spotlight(self, room_id: str, participant_id: str | None) -> None:
        """Forward one participant to everyone in the room (None: nobody beyond the usual)."""

    async def set_recording(self, room_id: str, directory: str | None, audio: bool = True) -> None:
        """Record the class's instructor into a new WebM file in ``directory`` (nothing
        if the class is being recorded already), or stop recording (None). A class
        whose media side is not running (nobody in it) is not recorded: call again
        when the instructor is back. ``audio`` False leaves the instructor's audio out
        from now on (their music, excluded), True takes it again."""

    async def close_room(self, room_id: str) -> None:
        """End the room's media side and everyone's connections in it."""

    async def stats(self) -> dict[str, Any]:
        """Counters: rooms, participants, forwarded packets and bytes, ..."""

    async def close(self) -> None:
        """Close everything (idempotent)."""
