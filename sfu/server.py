"""The SFU's root object: owns every room (and, in a worker, its links to the other
workers); the signaling layer talks only to this."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from . import aiortc_adapter
from .backend import FailureCallback, PeerSignal, Role, SfuError, SpeakerCallback, TelemetryCallback
from .candidates import LAN_POLICY, CandidatePolicy
from .forwarder import Producer
from .peer import Participant
from .pipe import Links
from .room import CandidateCallback, Room
from .stats import ForwardingStats
from .worker_protocol import TrackParams


class SfuServer:
    """server → room → participant → producer / consumer, and room → pipe (a worker's
    ends of its class's pipes, over the server's ``links``); ``close()`` cascades down."""

    def __init__(
        self,
        ice_servers: list[RTCIceServer] | None = None,
        on_active_speaker: SpeakerCallback | None = None,
        video_bitrate_cap: int = 2_500_000,
        candidate_policy: CandidatePolicy = LAN_POLICY,
    ) -> None:
        aiortc_adapter.check_compatibility()
        self.candidate_policy = candidate_policy
        for server in ice_servers or []:
            urls = [server.urls] if isinstance(server.urls, str) else server.urls
            if any(url.startswith(("turn:", "turns:")) for url in urls):
                # Relaying the SFU's own side would add a hop for everyone and bypass
                # the direct-socket send path; TURN is for clients behind NAT.
                raise ValueError("the SFU takes STUN servers only, not TURN")
        # An explicit (possibly empty) list: aiortc's default would ask a public STUN server.
        # max-bundle: with aiortc's default (balanced), an m-line added in the same offer
        # as the first of its kind keeps a transport that never connects.
        self.configuration = RTCConfiguration(
            iceServers=list(ice_servers or []), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )
        self.stats_counters = ForwardingStats()
        self.rooms: dict[str, Room] = {}
        self.on_active_speaker = on_active_speaker
        # What a publisher is asked to send at most, per kind (REMB towards it).
        self.max_bitrate = {"audio": 64_000, "video": video_bitrate_cap}
        self.on_room_failed: FailureCallback | None = None  # an in-process SFU fails as a whole
        self.on_telemetry: TelemetryCallback | None = None
        # A class split across workers reports each speaker window here (set by a worker).
        self.on_speaker_candidate: CandidateCallback | None = None
        # Links to the other workers (sfu/pipe.py): a worker hands them over with
        # ``links.listen``; the pipes on them belong to the rooms.
        self.links = Links(self.stats_counters, on_lost=self._link_lost)
        self._closed = False

    def room(self, room_id: str) -> Room:
        """The room with this id, created on first use."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(
                room_id,
                self.configuration,
                self.stats_counters,
                self._active_speaker,
                self.max_bitrate,
                on_telemetry=self._telemetry,
                candidate_policy=self.candidate_policy,
            )
        return room

    def _telemetry(self, room_id: str, participant_id: str, message: str) -> None:
        if self.on_telemetry is not None:
            self.on_telemetry(room_id, participant_id, message)

    def _active_speaker(self, room_id: str, participant_id: str | None) -> None:
        if self.on_active_speaker is not None:
            self.on_active_speaker(room_id, participant_id)

    def _speaker_candidate(self, room_id: str, participant_id: str | None, loud: float) -> None:
        if self.on_speaker_candidate is not None:
            self.on_speaker_candidate(room_id, participant_id, loud)

    def set_split(self, room_id: str, split: bool) -> None:
        """Whether a room's class spans workers: its speaker windows are then reported
        (``on_speaker_candidate``) for an election across them, not decided here."""
        room = self.rooms.get(room_id)
        if room is not None:
            room.on_speaker_candidate = self._speaker_candidate if split else None

    # -- pipes between workers (sfu/pipe.py), as a worker's pool sets them up ------------

    def _room_here(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            raise SfuError("not_joined", "this class has no media session on this worker")
        return room

    async def pipe_in(
        self,
        room_id: str,
        link_id: int,
        pipe_id: int,
        owner_id: str,
        owner_role: Role,
        track: TrackParams,
    ) -> None:
        """Hold a copy of another worker's track for this worker's subscribers."""
        link = await self.links.get(link_id)
        self._room_here(room_id).pipe_in(link, pipe_id, owner_id, owner_role, track)

    async def pipe_out(
        self, room_id: str, link_id: int, pipe_id: int, owner_id: str, producer_id: str
    ) -> None:
        """Send a local track's packets to another worker."""
        link = await self.links.get(link_id)
        self._room_here(room_id).pipe_out(link, pipe_id, owner_id, producer_id)

    async def pipe_close(self, room_id: str, link_id: int, pipe_id: int) -> None:
        """End a pipe at whichever end this worker holds (idempotent)."""
        room = self.rooms.get(room_id)
        if room is not None:
            await room.close_pipe(link_id, pipe_id)

    async def unlink(self, link_id: int) -> None:
        """Close a link (its peer died) and every pipe on it."""
        await self.links.unlink(link_id)

    async def _link_lost(self, link_id: int) -> None:
        for room in list(self.rooms.values()):
            await room.close_pipes_on(link_id)

    async def close_room(self, room_id: str) -> None:
        """Close a room and everyone in it."""
        room = self.rooms.pop(room_id, None)
        if room is not None:
            await room.close()

    @property
    def participant_count(self) -> int:
        """Participants across all rooms."""
        return sum(len(room.participants) for room in self.rooms.values())

    # -- the MediaBackend interface (sfu/backend.py) ------------------------------------

    def _participant(self, room_id: str, participant_id: str) -> Participant:
        room = self.rooms.get(room_id)
        participant = room.participants.get(participant_id) if room else None
        if participant is None:
            raise SfuError("not_joined", "this participant has no media session")
        return participant

    async def join(
        self,
        room_id: str,
        participant_id: str,
        role: Role,
        signal: PeerSignal,
        gallery: bool,
        spotlight: str | None = None,
    ) -> None:
        """Add a participant, creating the room with ``gallery`` and ``spotlight`` on first use."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.room(room_id)
            room.set_gallery(gallery)
            room.set_spotlight(spotlight)
        room.join(participant_id, role, signal)

    async def leave(self, room_id: str, participant_id: str) -> None:
        """Remove a participant; an emptied room closes."""
        room = self.rooms.get(room_id)
        if room is None:
            return
        await room.leave(participant_id)
        if not room.participants:
            await self.close_room(room_id)

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Answer a publish offer."""
        return await self._participant(room_id, participant_id).publish(offer_sdp)

    def published(self, room_id: str, participant_id: str) -> list[Producer]:
        """The tracks a participant publishes (none if they are not here)."""
        room = self.rooms.get(room_id)
        return room.published(participant_id) if room is not None else []

    async def subscribe_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        """Apply a subscribe answer."""
        await self._participant(room_id, participant_id).subscribe_answer(answer_sdp)

    async def add_ice_candidate(
        self,
        room_id: str,
        participant_id: str,
        target: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """A trickled ICE candidate."""
        participant = self._participant(room_id, participant_id)
        await participant.add_ice_candidate(target, candidate, sdp_mid, sdp_mline_index)

    async def set_visible(
        self,
        room_id: str,
        participant_id: str,
        visible: list[str] | None,
        sizes: dict[str, int] | None = None,
        max_height: int | None = None,
    ) -> None:
        """Whose video a participant shows, how large, and their cap on layers."""
        participant = self._participant(room_id, participant_id)
        participant.set_visible(None if visible is None else set(visible), sizes, max_height)

    async def set_gallery(self, room_id: str, enabled: bool) -> None:
        """Gallery mode on or off (for a room with no one in it: nothing to do)."""
        room = self.rooms.get(room_id)
        if room is not None:
            room.set_gallery(enabled)

    async def set_spotlight(self, room_id: str, participant_id: str | None) -> None:
        """Spotlight a participant (for a room with no one in it: nothing to do)."""
        room = self.rooms.get(room_id)
        if room is not None:
            room.set_spotlight(participant_id)

    async def set_recording(self, room_id: str, directory: str | None, audio: bool = True) -> None:
        """Record a room's instructor into ``directory`` (their audio too, or not), or
        stop (a room with no one in it: nothing to record)."""
        room = self.rooms.get(room_id)
        if room is not None:
            await room.record(Path(directory) if directory is not None else None, audio)

    async def stats(self) -> dict[str, Any]:
        """Rooms, participants, the forwarding counters and subscribers' reported loss.

        Loss is each subscriber stream's latest receiver report (fraction lost since the
        one before), kept summable across workers: the streams, the sum of their loss
        ratios (mean = sum / streams) and how many report 5 % or more.
        """
        streams = lossy = 0
        loss_sum = 0.0
        for room in self.rooms.values():
            room_streams, room_loss, room_lossy = room.subscriber_loss()
            streams += room_streams
            loss_sum += room_loss
            lossy += room_lossy
        return {
            "rooms": len(self.rooms),
            "participants": self.participant_count,
            **self.stats_counters.as_dict(),
            "subscriber_streams": streams,
            "subscriber_loss_ratio_sum": round(loss_sum, 6),
            "subscriber_streams_lossy": lossy,
        }

    async def close(self) -> None:
        """Close every room (and their pipes), then the links (idempotent)."""
        if self._closed:
            return
        self._closed = True
        rooms = list(self.rooms.values())
        self.rooms.clear()
        for room in rooms:
            await room.close()
        await self.links.close()
