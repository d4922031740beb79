"""The SFU's root object: owns every room; the signaling layer talks only to this."""

from __future__ import annotations

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from . import aiortc_adapter
from .room import Room, SpeakerCallback
from .stats import ForwardingStats


class SfuServer:
    """server → room → participant → producer / consumer; ``close()`` cascades down."""

    def __init__(
        self,
        ice_servers: list[RTCIceServer] | None = None,
        on_active_speaker: SpeakerCallback | None = None,
    ) -> None:
        aiortc_adapter.check_compatibility()
        # An explicit (possibly empty) list: aiortc's default would ask a public STUN server.
        # max-bundle: with aiortc's default (balanced), an m-line added in the same offer
        # as the first of its kind keeps a transport that never connects.
        self.configuration = RTCConfiguration(
            iceServers=list(ice_servers or []), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )
        self.stats = ForwardingStats()
        self.rooms: dict[str, Room] = {}
        self.on_active_speaker = on_active_speaker
        self._closed = False

    def room(self, room_id: str) -> Room:
        """The room with this id, created on first use."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(
                room_id, self.configuration, self.stats, self._active_speaker
            )
        return room

    def _active_speaker(self, room_id: str, participant_id: str | None) -> None:
        if self.on_active_speaker is not None:
            self.on_active_speaker(room_id, participant_id)

    async def close_room(self, room_id: str) -> None:
        """Close a room and everyone in it."""
        room = self.rooms.pop(room_id, None)
        if room is not None:
            await room.close()

    @property
    def participant_count(self) -> int:
        """Participants across all rooms."""
        return sum(len(room.participants) for room in self.rooms.values())

    async def close(self) -> None:
        """Close every room (idempotent)."""
        if self._closed:
            return
        self._closed = True
        rooms = list(self.rooms.values())
        self.rooms.clear()
        for room in rooms:
            await room.close()
