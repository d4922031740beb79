"""A participant made of aiortc: joins by link, publishes, subscribes, reports what arrived.

Speaks docs/protocol.md through ``client`` (joining on the class's node, rejoining,
publishing, answering subscribe offers); what is its own is the media it sends and what
it measures of the media it receives. Used to check a deployment, to play a recorded
workout into a class, and by the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import socketio
from aioice.turn import TurnClientTcpProtocol
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket
from av import AudioFrame, VideoFrame

from client.connections import publish, rtc_configuration
from client.joining import Membership, close_session
from client.protocol import FINAL_CODES, ClientError, call, parse_link
from client.subscriber import Subscriber
from sfu import aiortc_adapter

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
DELAY_SAMPLES = 4096  # the newest one-way delays kept per track
DELAY_AFTER_FIRST_FRAME_S = 1.0
logger = logging.getLogger(__name__)


def probe_codecs(path: str) -> tuple[str | None, str | None]:
    """The (audio, video) codec names of a media file, e.g. ("opus", "vp8")."""
    try:
        with av.open(path) as container:
            audio = next((s.codec_context.name for s in container.streams.audio), None)
            video = next((s.codec_context.name for s in container.streams.video), None)
    except (av.FFmpegError, OSError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None
    return audio, video


class SyntheticVideo(MediaStreamTrack):
    """A moving colour pattern, so every frame differs and encoders do real work."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 180, fps: int = 15) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._start: float | None = None
        self._count = 0
        y, x = np.mgrid[0:height, 0:width]
        self._base = ((x + y) % 256).astype(np.uint8)

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        shift = (self._count * 4) % 256
        plane = (self._base + shift).astype(np.uint8)
        image = np.dstack([plane, np.roll(plane, 40, axis=1), 255 - plane])
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = int(self._count * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


class SyntheticAudio(MediaStreamTrack):
    """A 440 Hz tone (or silence, with amplitude 0) in 20 ms frames."""

    kind = "audio"

    def __init__(self, amplitude: float = 0.1) -> None:
        super().__init__()
        self.amplitude = amplitude
        self._start: float | None = None
        self._samples = 0
        self._chunk = AUDIO_RATE // 50

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._samples / AUDIO_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = (np.arange(self._chunk) + self._samples) / AUDIO_RATE
        samples = (self.amplitude * 32767 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._samples += self._chunk
        return frame


def abs_send_delay(abs_send_time: int, now: float) -> float:
    """Seconds from an abs-send-time stamp (6.18 fixed-point NTP, mod 64 s) to unix ``now``."""
    now24 = int((now + NTP_UNIX_OFFSET) * (1 << 18)) & 0xFFFFFF
    return ((now24 - abs_send_time) & 0xFFFFFF) / (1 << 18)


class SequenceTracker:
    """Which RTP sequence numbers arrived (retransmissions included), wrap-aware."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._last: int | None = None
        self._cycles = 0

    def add(self, seq: int) -> None:
        """Note one arrival of 16-bit sequence number ``seq``."""
        if self._last is None:
            self._last = seq
        delta = (seq - self._last) & 0xFFFF
        if delta < 0x8000:  # forward (possibly wrapped)
            if seq < self._last:
                self._cycles += 1 << 16
            self._last = seq
            self._seen.add(self._cycles + seq)
        else:  # a late packet from before the last one
            cycles = self._cycles - (1 << 16) if seq > self._last else self._cycles
            self._seen.add(cycles + seq)

    @property
    def loss_percent(self) -> float:
        """Share of the sequence range between the first and last arrival that never came."""
        if not self._seen:
            return 0.0
        expected = max(self._seen) - min(self._seen) + 1
        return round(100.0 * (1 - len(self._seen) / expected), 3)


def delay_summary(delays_ms: deque[float]) -> dict[str, float | int] | None:
    """Median, 95th percentile and count of one-way delays (publisher's send to arrival),
    from a second after the first frame on.

    Meaningful where both ends read the same clock (one machine, or NTP-synced ones):
    the stamp is the publisher's wall clock. None for a track without the stamp (audio).
    """
    if not delays_ms:
        return None
    ordered = sorted(delays_ms)
    return {
        "p50": round(ordered[len(ordered) // 2], 2),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "samples": len(ordered),
    }


def selected_pair(pc: RTCPeerConnection | None) -> dict[str, str] | None:
    """The ICE candidate pair ``pc`` nominated: candidate types, protocols, remote address.

    ``relay_protocol`` (for a relay candidate) is how packets reach the TURN server.
    aiortc has no candidate-pair statistics, so this reads aioice's connection behind
    the DTLS transport (``RTCIceTransport._connection._nominated``, the internals
    ``sfu.aiortc_adapter.check_compatibility`` checks); None when there is no pair yet
    or the internals moved.
    """
    if pc is None:
        return None
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        pair = getattr(connection, "_nominated", {}).get(1)
        if pair is None:
            continue
        local, remote = pair.local_candidate, pair.remote_candidate
        info = {
            "local": str(local.type),
            "remote": str(remote.type),
            "protocol": str(local.transport),
            "remote_address": f"{remote.host}:{remote.port}",
        }
        # aioice's TurnTransport keeps its TURN client protocol name-mangled.
        inner = getattr(pair.protocol.transport, "_TurnTransport__inner_protocol", None)
        if local.type == "relay" and inner is not None:
            info["relay_protocol"] = "udp"
            if isinstance(inner, TurnClientTcpProtocol):
                tls = inner.transport.get_extra_info("sslcontext") is not None
                info["relay_protocol"] = "tls" if tls else "tcp"
        return info
    return None


@dataclass
class ReceivedTrack:
    """What arrived on one subscribed m-line."""

    mid: str
    kind: str
    publisher_id: str
    announced_at: float
    frames: int = 0
    packets: int = 0
    bytes: int = 0
    codec: str = ""
    sequence: SequenceTracker = field(default_factory=lambda: SequenceTracker())
    delays_ms: deque[float] = field(default_factory=lambda: deque(maxlen=DELAY_SAMPLES))
    retransmissions: int = 0  # RTX packets (answers to our NACKs), counted in ``packets``
    first_frame_at: float | None = None
    task: asyncio.Task[None] | None = None


@dataclass
class Bot(Membership):
    """One bot session; ``run_bot`` drives it.

    Joins as a ``client.Membership`` (``base_url``, ``token``, ``name``, ``room``): the
    node it reached last and the bound token it rejoins with.
    """

    video: str
    gallery: bool = False
    codec: str = "vp8"
    silent: bool = False
    sio: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(reconnection=False)
    )
    publish_pc: RTCPeerConnection | None = None
    configuration: RTCConfiguration = field(default_factory=rtc_configuration)
    # Answers the SFU's offers; its hooks count what each m-line carries.
    subscriber: Subscriber = field(init=False)
    names: dict[str, str] = field(default_factory=dict)
    tracks: dict[str, ReceivedTrack] = field(default_factory=dict)
    # Before a rejoin, or on an m-line the SFU has since reused for another publisher.
    past_tracks: list[ReceivedTrack] = field(default_factory=list)
    _tapped: set[str] = field(default_factory=set)  # mids whose receiver is tapped
    you: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    player: MediaPlayer | None = None
    published: dict[str, Any] = field(default_factory=dict)
    timeline: list[tuple[float, str, Any]] = field(default_factory=list)
    _offer_task: asyncio.Task[None] | None = None
    # Rejoin when the connection drops or the class's media moves: the same participant
    # (bound token), on whichever node holds the class now (docs/protocol.md, "Several nodes").
    rejoin: bool = True
    rejoins: list[dict[str, Any]] = field(default_factory=list)
    _recovery: asyncio.Task[None] | None = None
    _stopping: bool = False
    # Set while the class is under way: a scheduled class's lobby takes no media.
    _started: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.subscriber = Subscriber(
            created=lambda pc: pc.on("track", self._on_track), applied=self._reused_mlines
        )

    @property
    def subscribe_pc(self) -> RTCPeerConnection | None:
        """The current session's subscribe connection (None before the first offer)."""
        return self.subscriber.pc

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Emit an event and return its ack, raising ClientError on a refusal."""
        return await call(self.sio, event, payload)

    async def start(self) -> None:
        """Connect, join (on the node holding the class), publish."""
        self._offer_task = asyncio.create_task(self._answer_offers())
        await self._join(self.base_url)
        if self.gallery:
            await self.call("gallery", {"enabled": True})
        await self._publish()

    def _setup(self, sio: socketio.AsyncClient) -> None:
        sio.on("participant_joined", self._on_joined)
        sio.on("participant_left", self._on_left)
        sio.on("active_speaker", self._on_speaker)
        sio.on("subscribe_offer", lambda data: self.subscriber.offered(sio, data))
        sio.on("error", self._on_error)
        sio.on("class_state", self._on_class_state)
        sio.on("media_failed", lambda _data=None: self._lost(sio, "media_failed"))
        sio.on("disconnect", lambda *_reason: self._lost(sio, "disconnect"))

    async def _join(self, url: str) -> None:
        sio, joined = await self.join(self._setup, url=url)
        self.sio = sio
        self.you = joined["you"]
        for p in joined["participants"]:
            self.names[p["id"]] = p["name"]
        self.configuration = rtc_configuration(joined)
        self.subscriber.joined(sio, self.configuration)
        self._on_class_state({"state": joined.get("controls") or {}})

    def _on_class_state(self, data: dict[str, Any]) -> None:
        """``class_state`` (and the join ack's controls): whether the class has started."""
        if data.get("state", {}).get("started", True):
            self._started.set()
        else:
            self._started.clear()

    def _lost(self, sio: socketio.AsyncClient, why: str) -> None:
        """The session ``sio`` ended (or its media did): rejoin, unless that is over."""
        if sio is not self.sio or self._stopping or not self.rejoin:
            return
        if self._recovery is not None and not self._recovery.done():
            return
        self.timeline.append((time.monotonic(), "lost", why))
        self._recovery = asyncio.create_task(self._recover(time.monotonic(), why))

    async def _recover(self, lost_at: float, why: str) -> None:
        """Find the class's node (this one, then the others it named) and rejoin there."""
        old = self.sio
        await self._drop_media()
        with contextlib.suppress(Exception):
            await old.disconnect()
        delay = 0.25
        attempts = 0
        while not self._stopping:
            for url in self.candidates():
                attempts += 1
                try:
                    await self._join(url)
                    await self._publish()
                except ClientError as exc:
                    if exc.code in FINAL_CODES:
                        self.errors.append({"code": exc.code, "message": str(exc), "event": "join"})
                        return
                    continue
                except Exception as exc:  # a node that died mid-join: try the next one
                    logger.info("rejoin at %s failed: %s", url, exc)
                    continue
                took = time.monotonic() - lost_at
                self.rejoins.append(
                    {
                        "why": why,
                        "url": self.base_url,
                        "took_s": round(took, 3),
                        "attempts": attempts,
                    }
                )
                self.timeline.append((time.monotonic(), "rejoined", self.base_url))
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _drop_media(self) -> None:
        """Close this session's connections; what arrived so far stays in the report."""
        subscribe_pc = self.subscriber.reset()
        for received in self.tracks.values():
            if received.task is not None:
                received.task.cancel()
        self.past_tracks.extend(self.tracks.values())
        self.tracks = {}
        self._tapped = set()
        pcs, self.publish_pc = (self.publish_pc, subscribe_pc), None
        for pc in pcs:
            if pc is not None:
                # Bounded: the rejoin must not wait on a connection to a dead server.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), 3)

    async def _publish(self) -> None:
        await self._started.wait()  # in a lobby: until the instructor starts the class
        pc = RTCPeerConnection(self.configuration)
        self.publish_pc = pc
        codec = self.codec
        passthrough = False
        if self.video == "synthetic":
            pc.addTransceiver(SyntheticAudio(0.0 if self.silent else 0.1), direction="sendonly")
            video = pc.addTransceiver(SyntheticVideo(), direction="sendonly")
        else:
            audio_codec, video_codec = probe_codecs(self.video)
            # Packets already in a WebRTC codec go out as they are, not re-encoded.
            passthrough = audio_codec in (None, "opus") and video_codec in (None, "vp8", "h264")
            self.player = MediaPlayer(self.video, decode=not passthrough)
            if passthrough and video_codec is not None:
                codec = video_codec
            video = None
            for track in (self.player.audio, self.player.video):
                if track is not None:
                    transceiver = pc.addTransceiver(track, direction="sendonly")
                    if track.kind == "video":
                        video = transceiver
        self.published = {
            "source": self.video,
            "video_codec": codec,
            "passthrough": passthrough,
        }
        if video is not None:
            video.setCodecPreferences(
                [
                    c
                    for c in RTCRtpSender.getCapabilities("video").codecs
                    if c.mimeType.lower() == f"video/{codec}"
                ]
            )
        await publish(pc, self.call)

    async def _on_joined(self, data: dict[str, Any]) -> None:
        participant = data.get("participant", {})
        self.names[participant.get("id", "")] = participant.get("name", "?")
        self.timeline.append((time.monotonic(), "participant_joined", participant.get("id")))

    async def _on_left(self, data: dict[str, Any]) -> None:
        self.timeline.append((time.monotonic(), "participant_left", data.get("id")))

    async def _on_speaker(self, data: dict[str, Any]) -> None:
        self.timeline.append((time.monotonic(), "active_speaker", data.get("id")))

    async def _on_error(self, data: dict[str, Any]) -> None:
        if isinstance(data, dict) and data.get("code") == "moved":
            return  # not a failure: the join goes on at the class's node
        self.errors.append(data)

    async def _answer_offers(self) -> None:
        while True:
            offer = await self.subscriber.next_offer()
            active = sorted({t["participant_id"] for t in offer.get("tracks", [])})
            self.timeline.append((time.monotonic(), "subscribe_offer", active))
            try:
                await self.subscriber.answer(offer, self.call)
            except Exception as exc:  # the session dropped mid-offer; a rejoin starts over
                logger.info("subscribe offer not answered: %s", exc)

    def _reused_mlines(self, pc: RTCPeerConnection, offer: dict[str, Any]) -> None:
        """An m-line that was inactive may come back carrying another publisher's track:
        aiortc fires no `track` event for it (its receiver has a track already)."""
        for t in offer.get("tracks", []):
            old = self.tracks.get(t["mid"])
            if old is not None and old.publisher_id != t["participant_id"]:
                transceiver = next(x for x in pc.getTransceivers() if x.mid == t["mid"])
                if transceiver.receiver.track is not None:
                    self._start_track(t["mid"], transceiver.receiver.track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.subscribe_pc is None:
            return  # a track of a session that ended meanwhile
        mid = next(
            (t.mid for t in self.subscribe_pc.getTransceivers() if t.receiver.track is track), None
        )
        if mid is not None:
            self._start_track(mid, track)

    def _start_track(self, mid: str, track: MediaStreamTrack) -> None:
        """Count what arrives on ``mid`` as its current publisher's track from now on."""
        assert self.subscribe_pc is not None
        publisher, kind = self.subscriber.owners.get(mid, ("?", track.kind))
        old = self.tracks.get(mid)
        if old is not None:
            if old.task is not None:
                old.task.cancel()
            self.past_tracks.append(old)
        received = ReceivedTrack(
            mid=mid, kind=kind, publisher_id=publisher, announced_at=time.monotonic()
        )
        transceiver = next(t for t in self.subscribe_pc.getTransceivers() if t.mid == mid)
        codecs = aiortc_adapter.negotiated_codecs(transceiver)
        received.codec = codecs[0].mimeType if codecs else ""
        received.task = asyncio.create_task(self._consume(track, received))
        self.tracks[mid] = received
        if mid not in self._tapped:  # one tap per m-line, counting for its current track
            self._tapped.add(mid)
            self._tap(mid, transceiver.receiver, codecs)

    def _tap(self, mid: str, receiver: Any, codecs: list[Any]) -> None:
        rtx_payload_types = {
            c.payloadType for c in codecs if c.mimeType.lower() == "video/rtx" and c.payloadType
        }

        def settled(received: ReceivedTrack) -> bool:
            # The stream's start (keyframe wait, decoder start) is time to first frame's
            # business: one-way delays count from DELAY_AFTER_FIRST_FRAME_S after it.
            first = received.first_frame_at
            return first is not None and time.monotonic() - first >= DELAY_AFTER_FIRST_FRAME_S

        def count(packet: RtpPacket) -> None:
            received = self.tracks.get(mid)
            if received is None:
                return
            received.packets += 1
            received.bytes += len(packet.payload)
            seq = packet.sequence_number
            if packet.payload_type in rtx_payload_types:
                if len(packet.payload) < 2:
                    return  # padding-only probe
                seq = (packet.payload[0] << 8) | packet.payload[1]  # RFC 4588 OSN
                received.retransmissions += 1
            elif packet.extensions.abs_send_time is not None and settled(received):
                # The publisher's send time, which the SFU forwards unchanged (first
                # sends only: a retransmission's stamp is its original's).
                delay = abs_send_delay(packet.extensions.abs_send_time, time.time())
                received.delays_ms.append(delay * 1000)
            received.sequence.add(seq)

        aiortc_adapter.tap_rtp(receiver, count)

    async def _consume(self, track: MediaStreamTrack, received: ReceivedTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                if received.first_frame_at is None:
                    received.first_frame_at = time.monotonic()
                received.frames += 1

    def report(self) -> dict[str, Any]:
        """Per received track: kind, publisher, packets, bytes, frames, time to first frame."""
        tracks = []
        for mid, t in sorted(
            self.tracks.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0
        ):
            tracks.append(
                {
                    "mid": mid,
                    "kind": t.kind,
                    "codec": t.codec,
                    "publisher_id": t.publisher_id,
                    "publisher": self.names.get(t.publisher_id, t.publisher_id),
                    "packets": t.packets,
                    "bytes": t.bytes,
                    "frames": t.frames,
                    "loss_percent": t.sequence.loss_percent,
                    "delay_ms": delay_summary(t.delays_ms),
                    "retransmissions": t.retransmissions,
                    "time_to_first_frame_s": (
                        None
                        if t.first_frame_at is None
                        else round(t.first_frame_at - t.announced_at, 3)
                    ),
                }
            )
        return {
            "you": self.you,
            "published": self.published,
            "tracks": tracks,
            "ice": {
                "publish": selected_pair(self.publish_pc),
                "subscribe": selected_pair(self.subscribe_pc),
            },
            "errors": self.errors,
            "rejoins": self.rejoins,
            "node": self.base_url,
        }

    async def stop(self) -> None:
        """Leave and close everything."""
        self._stopping = True
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._recovery
        await close_session(
            self.sio,
            [self._offer_task, *[t.task for t in self.tracks.values()]],
            [self.publish_pc, self.subscribe_pc],
        )


async def run_bot(
    link: str,
    seconds: float,
    video: str = "synthetic",
    name: str = "bot",
    gallery: bool = False,
    codec: str = "vp8",
) -> dict[str, Any]:
    """Join ``link`` for ``seconds`` and return the report (``gallery``: host turns it on)."""
    base_url, room, token = parse_link(link)
    bot = Bot(
        base_url=base_url,
        token=token,
        name=name,
        video=video,
        room=room,
        gallery=gallery,
        codec=codec,
    )
    try:
        await bot.start()
        await asyncio.sleep(seconds)
        return bot.report()
    finally:
        await bot.stop()
