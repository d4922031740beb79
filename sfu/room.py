"""A class as the SFU sees it: participants, their producers, and who receives whom."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiortc import RTCConfiguration

from .backend import SpeakerCallback, TelemetryCallback
from .forwarder import Producer
from .peer import Participant, PeerSignal, SfuError
from .stats import ForwardingStats
from .topology import Role, receives

logger = logging.getLogger(__name__)

SPEAKER_WINDOW_S = 0.4
SPEAKER_HOLD_S = 1.0  # the active speaker changes at most this often
# Mean loudness (127 - level in -dBov) a window needs to count as speech: louder than
# -50 dBov. Browsers send about -127 in silence and -20…-40 when someone talks.
SPEAKER_THRESHOLD = 77


class Room:
    """Owns its participants; closing it closes them, once."""

    def __init__(
        self,
        room_id: str,
        configuration: RTCConfiguration,
        stats: ForwardingStats,
        on_active_speaker: SpeakerCallback | None = None,
        max_bitrate: dict[str, int] | None = None,
        on_telemetry: TelemetryCallback | None = None,
    ) -> None:
        self.id = room_id
        self.on_telemetry = on_telemetry
        self.max_bitrate = max_bitrate
        self.gallery = False
        self.participants: dict[str, Participant] = {}
        self.active_speaker: str | None = None
        self._configuration = configuration
        self._stats = stats
        self._on_active_speaker = on_active_speaker
        self._speaker_task: asyncio.Task[None] | None = None
        self._speaker_since = 0.0
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
            max_bitrate=self.max_bitrate,
            on_telemetry=self._telemetry,
        )
        self.participants[participant_id] = participant
        self._route(participant)
        if self._speaker_task is None:
            self._speaker_task = asyncio.create_task(
                self._detect_speakers(), name=f"speaker-{self.id}"
            )
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

    def _telemetry(self, participant_id: str, message: str) -> None:
        if self.on_telemetry is not None:
            self.on_telemetry(self.id, participant_id, message)

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

    def pick_speaker(self, now: float) -> str | None:
        """Close one loudness window: who speaks now (with hold time), resetting counters."""
        loudest, loudest_mean = None, float(SPEAKER_THRESHOLD)
        for participant in self.participants.values():
            audio = participant.producers.get("audio")
            if audio is None:
                continue
            mean = audio.loudness / audio.loud_packets if audio.loud_packets else 0.0
            audio.loudness = audio.loud_packets = 0
            if mean > loudest_mean:
                loudest, loudest_mean = participant.id, mean
        if loudest is None or loudest == self.active_speaker:
            return self.active_speaker
        if now - self._speaker_since < SPEAKER_HOLD_S and self.active_speaker in self.participants:
            return self.active_speaker
        self.active_speaker = loudest
        self._speaker_since = now
        return loudest

    async def _detect_speakers(self) -> None:
        while True:
            await asyncio.sleep(SPEAKER_WINDOW_S)
            before = self.active_speaker
            try:
                after = self.pick_speaker(time.monotonic())
                if after != before and self._on_active_speaker is not None:
                    self._on_active_speaker(self.id, after)
            except Exception:
                logger.exception("active speaker detection failed in room %s", self.id)

    async def close(self) -> None:
        """Close every participant (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._speaker_task is not None:
            self._speaker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker_task
        participants = list(self.participants.values())
        self.participants.clear()
        for participant in participants:
            await participant.close()
