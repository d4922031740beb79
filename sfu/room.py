"""A class as the SFU sees it: participants, their producers, and who receives whom."""

from __future__ import annotations

import logging

from aiortc import RTCConfiguration

from .forwarder import Producer
from .peer import Participant, PeerSignal, SfuError
from .stats import ForwardingStats
from .topology import Role, receives

logger = logging.getLogger(__name__)


class Room:
    """Owns its participants; closing it closes them, once."""

    def __init__(
        self, room_id: str, configuration: RTCConfiguration, stats: ForwardingStats
    ) -> None:
        self.id = room_id
        self.gallery = False
        self.participants: dict[str, Participant] = {}
        self._configuration = configuration
        self._stats = stats
        self._closed = False

    def join(self, participant_id: str, role: Role, signal: PeerSignal) -> Participant:
        """Add a participant; they receive what the topology gives them as it is published."""
        if self._closed:
            raise SfuError("room_ended", "this class has ended")
        if participant_id in self.participants:
            raise SfuError("already_joined", "this participant is already in the class")
        participant = Participant(
            participant_id,
            role,
            signal,
            self._configuration,
            self._stats,
            on_producer=self._on_producer,
        )
        self.participants[participant_id] = participant
        self._route(participant)
        return participant

    async def leave(self, participant_id: str) -> None:
        """Remove a participant; everyone else stops receiving their tracks (idempotent)."""
        participant = self.participants.pop(participant_id, None)
        if participant is None:
            return
        await participant.close()
        self._route_all()

    def set_gallery(self, enabled: bool) -> None:
        """Turn gallery mode (participants see each other) on or off."""
        if enabled != self.gallery:
            self.gallery = enabled
            self._route_all()

    def _on_producer(self, _producer: Producer) -> None:
        self._route_all()

    def _route(self, subscriber: Participant) -> None:
        wanted = [
            producer
            for publisher in self.participants.values()
            if publisher is not subscriber
            and receives(subscriber.role, publisher.role, self.gallery)
            for producer in publisher.producers.values()
        ]
        subscriber.set_wanted(wanted)

    def _route_all(self) -> None:
        for participant in self.participants.values():
            self._route(participant)

    async def close(self) -> None:
        """Close every participant (idempotent)."""
        if self._closed:
            return
        self._closed = True
        participants = list(self.participants.values())
        self.participants.clear()
        for participant in participants:
            await participant.close()
