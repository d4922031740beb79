"""A class as the SFU sees it: participants, their producers, and who receives whom.

When a class spans worker processes (sfu/pipe.py), a Room holds the participants on
this worker, plus a ``RemotePublisher`` for each publisher on another worker whose
tracks someone here receives (their tracks arrive as PipeProducers), and reports its
loudest publisher to the pool instead of electing the active speaker alone. The room
owns its pipes' ends on this worker (copies coming in, its tracks going out), as a
mediasoup router owns its pipe transports: it makes them, and closes each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiortc import RTCConfiguration

from .backend import PeerSignal, Role, SfuError, SpeakerCallback, TelemetryCallback
from .candidates import LAN_POLICY, CandidatePolicy
from .forwarder import Producer, Source
from .peer import Participant
from .pipe import Link, PipeProducer, PipeSink
from .recorder import Recorder
from .speaker import SPEAKER_THRESHOLD, SPEAKER_WINDOW_S, SpeakerElection
from .stats import ForwardingStats
from .topology import receives
from .worker_protocol import TrackParams

logger = logging.getLogger(__name__)

# (room id, loudest local participant or None, their mean loudness): a split class's
# window, reported to whoever elects its speaker across workers.
CandidateCallback = Callable[[str, str | None, float], None]


class Publisher(Protocol):
    """Whoever's tracks a room routes: a local Participant or a RemotePublisher."""

    @property
    def id(self) -> str:
        """The participant id."""

    @property
    def role(self) -> Role:
        """Their role in the class."""

    @property
    def producers(self) -> Mapping[str, Source]:
        """Their tracks here, by kind."""


@dataclass(eq=False)
class RemotePublisher:
    """A publisher on another worker of a split class; ``producers`` are PipeProducers."""

    id: str
    role: Role
    producers: dict[str, Source] = field(default_factory=dict)


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
        candidate_policy: CandidatePolicy = LAN_POLICY,
    ) -> None:
        self.id = room_id
        self.candidate_policy = candidate_policy
        self.on_telemetry = on_telemetry
        self.max_bitrate = max_bitrate
        self.gallery = False
        self.spotlight: str | None = None  # the participant everyone receives
        self.participants: dict[str, Participant] = {}
        self.remote: dict[str, RemotePublisher] = {}  # publishers on other workers
        # This worker's end of each pipe of the class, by (link id, pipe id).
        self._pipes: dict[tuple[int, int], PipeProducer | PipeSink] = {}
        # Set while the class spans workers: windows are reported, not decided, here.
        self.on_speaker_candidate: CandidateCallback | None = None
        self._election = SpeakerElection()
        self._configuration = configuration
        self._stats = stats
        self._on_active_speaker = on_active_speaker
        self._speaker_task: asyncio.Task[None] | None = None
        self.recorder: Recorder | None = None  # while the class is being recorded here
        self._closed = False

    @property
    def active_speaker(self) -> str | None:
        """Who this room last elected (None: nobody yet)."""
        return self._election.current

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
            candidate_policy=self.candidate_policy,
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

    def published(self, participant_id: str) -> list[Producer]:
        """The tracks a participant here publishes (none if they are not here)."""
        participant = self.participants.get(participant_id)
        return list(participant.producers.values()) if participant is not None else []

    def set_gallery(self, enabled: bool) -> None:
        """Turn gallery mode (participants see each other) on or off."""
        if enabled != self.gallery:
            self.gallery = enabled
            self._route_all()

    def set_spotlight(self, participant_id: str | None) -> None:
        """Forward one participant to everyone (None: nobody beyond the usual)."""
        if participant_id != self.spotlight:
            self.spotlight = participant_id
            self._route_all()

    async def record(self, directory: Path | None, audio: bool = True) -> None:
        """Record the instructor into a new file in ``directory`` (nothing if this room
        records already; ``audio`` says whether their audio goes in from now on), or
        stop recording (None)."""
        if directory is not None:
            if self._closed:
                raise SfuError("room_ended", "this class has ended")
            if self.recorder is None:
                self.recorder = Recorder(self.id, directory)
                self._follow_instructor()
            self.recorder.audio = audio
            return
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.close()
            await recorder.wait_closed()

    def _follow_instructor(self) -> None:
        """Point the recorder at the instructor's tracks (the first instructor session
        publishing video, else audio; none while no instructor publishes)."""
        if self.recorder is None:
            return
        publishers: list[Publisher] = [*self.participants.values(), *self.remote.values()]
        hosts = [p for p in publishers if p.role == "host" and p.producers]
        best = max(hosts, key=lambda p: "video" in p.producers, default=None)
        self.recorder.follow(best.producers if best is not None else {})

    def _telemetry(self, participant_id: str, message: str) -> None:
        if self.on_telemetry is not None:
            self.on_telemetry(self.id, participant_id, message)

    def _on_producer(self, _producer: Producer) -> None:
        self._route_all()

    # -- pipes: this worker's ends of the class's tracks piped between workers ---------

    def pipe_in(
        self, link: Link, pipe_id: int, owner_id: str, role: Role, track: TrackParams
    ) -> PipeProducer:
        """Hold a copy of a track published on another worker, routed like a local
        one (idempotent)."""
        if self._closed:
            raise SfuError("room_ended", "this class has ended")
        held = self._pipes.get((link.id, pipe_id))
        if isinstance(held, PipeProducer):
            return held
        producer = PipeProducer(pipe_id, link, owner_id, track)
        self._pipes[(link.id, pipe_id)] = producer
        publisher = self.remote.get(owner_id)
        if publisher is None:
            publisher = self.remote[owner_id] = RemotePublisher(owner_id, role)
        publisher.producers[producer.kind] = producer
        self._route_all()
        producer.showing_changed()  # nobody yet: the origin may hold it back
        return producer

    def pipe_out(self, link: Link, pipe_id: int, owner_id: str, producer_id: str) -> PipeSink:
        """Send a local track's packets over ``link`` too (idempotent)."""
        if self._closed:
            raise SfuError("room_ended", "this class has ended")
        held = self._pipes.get((link.id, pipe_id))
        if isinstance(held, PipeSink):
            return held
        producer = next((p for p in self.published(owner_id) if p.id == producer_id), None)
        if producer is None:
            raise SfuError("not_found", f"no track {producer_id} on this worker")
        sink = self._pipes[(link.id, pipe_id)] = PipeSink(pipe_id, producer, link)
        return sink

    async def close_pipe(self, link_id: int, pipe_id: int) -> None:
        """End this worker's end of a pipe (idempotent; a sink whose track ended closed
        with it already)."""
        end = self._pipes.pop((link_id, pipe_id), None)
        if isinstance(end, PipeProducer):
            self._unroute(end)
            end.close()
            await end.wait_closed()
        elif end is not None:
            end.close()

    async def close_pipes_on(self, link_id: int) -> None:
        """End every pipe on a link that is gone."""
        for key in [key for key in self._pipes if key[0] == link_id]:
            await self.close_pipe(*key)

    def _unroute(self, producer: PipeProducer) -> None:
        publisher = self.remote.get(producer.owner_id)
        if publisher is None or publisher.producers.get(producer.kind) is not producer:
            return
        del publisher.producers[producer.kind]
        if not publisher.producers:
            del self.remote[producer.owner_id]
        if not self._closed:
            self._route_all()

    def _route(self, subscriber: Participant) -> None:
        publishers: list[Publisher] = [*self.participants.values(), *self.remote.values()]
        wanted = [
            producer
            for publisher in publishers
            if publisher.id != subscriber.id
            and receives(
                subscriber.role, publisher.role, self.gallery, publisher.id == self.spotlight
            )
            for producer in publisher.producers.values()
        ]
        subscriber.set_wanted(wanted)

    def _route_all(self) -> None:
        for participant in self.participants.values():
            self._route(participant)
        self._follow_instructor()

    def subscriber_loss(self) -> tuple[int, float, int]:
        """Subscriber streams here, the sum of their latest reported loss ratios, and
        how many report 5 % or more."""
        streams = lossy = 0
        loss_sum = 0.0
        publishers: list[Publisher] = [*self.participants.values(), *self.remote.values()]
        for publisher in publishers:
            for producer in publisher.producers.values():
                for consumer in producer.consumers:
                    streams += 1
                    loss_sum += consumer.fraction_lost / 256
                    lossy += consumer.fraction_lost >= 13  # 13/256 ≈ 5 %
        return streams, loss_sum, lossy

    def pick_speaker(self, now: float) -> str | None:
        """Close one loudness window: who speaks now (with hold time), resetting counters."""
        return self._election.decide(self.loudest()[0], now, self.participants)

    def loudest(self) -> tuple[str | None, float]:
        """Close one loudness window: the loudest local publisher above the speech
        threshold (or None) and their mean loudness; resets the counters."""
        loudest, loudest_mean = None, float(SPEAKER_THRESHOLD)
        for participant in self.participants.values():
            audio = participant.producers.get("audio")
            if audio is None:
                continue
            mean = audio.loudness / audio.loud_packets if audio.loud_packets else 0.0
            audio.loudness = audio.loud_packets = 0
            if mean > loudest_mean:
                loudest, loudest_mean = participant.id, mean
        return loudest, (loudest_mean if loudest is not None else 0.0)

    async def _detect_speakers(self) -> None:
        while True:
            await asyncio.sleep(SPEAKER_WINDOW_S)
            before = self.active_speaker
            try:
                if self.on_speaker_candidate is not None:
                    self.on_speaker_candidate(self.id, *self.loudest())
                    continue
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
        await self.record(None)  # the file is finished before the tracks go
        if self._speaker_task is not None:
            self._speaker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker_task
        participants = list(self.participants.values())
        self.participants.clear()
        for participant in participants:
            await participant.close()
        self.remote.clear()
        pipes = list(self._pipes.values())
        self._pipes.clear()
        for end in pipes:
            end.close()
        for end in pipes:
            if isinstance(end, PipeProducer):
                await end.wait_closed()
