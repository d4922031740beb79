"""A load-generator process: bench clients that publish pre-encoded media and count what arrives.

Run by ``bench.sfu`` as ``python -m bench.loadgen`` (never inside the server's process).
It talks JSON lines: one config line on stdin; ``{"event": "ready"}`` on stdout once
every client receives every stream it should; then a ``{"window": [t0, t1]}`` line on
stdin (unix seconds); then ``{"event": "result", ...}`` on stdout after ``t1``.

Clients speak docs/protocol.md through ``client``, as ``pulseroom.bot`` does, but never
decode: each received m-line's RTP goes to ``sfu.aiortc_adapter.take_rtp`` (no jitter
buffer, no decoder thread) and is only counted. Video packets carry the publisher's abs-send-time
header extension, which the SFU forwards unchanged: it gives each packet's send time,
so a video frame belongs to the window by when it was *sent* (as the publisher counts
it, see ``BenchClient._marker``), and a packet's one-way latency is ``arrival - send``
on the shared machine clock. Audio has no such stamp and is counted by arrival.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import RtpPacket

from client.connections import publish, rtc_configuration
from client.joining import Membership, close_session
from client.protocol import ClientError, call, parse_link
from client.subscriber import Subscriber
from sfu import aiortc_adapter

from .genproc import emit, read_line, serve
from .media import Clip, ReplayTrack, load_clip

logger = logging.getLogger("bench.loadgen")

NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
ABS_SEND_TIME_UNITS = 1 << 18  # abs-send-time is 6.18 fixed-point seconds
ABS_SEND_TIME_MASK = 0xFFFFFF
GRACE_S = 1.0  # keep counting this long after the window for packets still in flight


class LoadgenError(Exception):
    """A client could not join, publish or subscribe."""


@dataclass(slots=True)
class Window:
    """The measuring window, unix seconds, [start, end)."""

    start: float
    end: float


@dataclass(slots=True)
class StreamCounter:
    """What one subscribed m-line delivered."""

    mid: str
    kind: str
    publisher_id: str
    seen: bool = False
    total: int = 0
    in_window: int = 0
    frame_timestamp: int = -1  # RTP timestamp of the last frame classified...
    frame_in_window: bool = False  # ...and whether it was sent inside the window
    seqs: set[int] = field(default_factory=set)
    latencies_ms: list[float] = field(default_factory=list)


def abs_send_latency(abs_send_time: int, now: float) -> float:
    """Seconds between a packet's abs-send-time stamp and ``now`` (unix), modulo 64 s."""
    now24 = int((now + NTP_UNIX_OFFSET) * ABS_SEND_TIME_UNITS) & ABS_SEND_TIME_MASK
    return ((now24 - abs_send_time) & ABS_SEND_TIME_MASK) / ABS_SEND_TIME_UNITS


class BenchClient:
    """One participant: publishes the clip, answers subscribe offers, counts RTP."""

    def __init__(self, link: str, name: str, host: bool, clip: Clip) -> None:
        base_url, room, token = parse_link(link)
        self._membership = Membership(base_url=base_url, token=token, name=name, room=room)
        self.name = name
        self.host = host
        self.id = ""
        self.window: Window | None = None
        self.streams: dict[str, StreamCounter] = {}
        self.errors: list[dict[str, Any]] = []
        self._clip = clip
        self._sio = socketio.AsyncClient(reconnection=False)
        self._publish_pc: RTCPeerConnection | None = None
        self._subscriber = Subscriber(applied=self._count_new)
        self._senders: dict[str, RTCRtpSender] = {}
        self._sent_marks: dict[str, list[int | None]] = {}  # kind -> [at start, at end]
        self._offer_task: asyncio.Task[None] | None = None

    async def _call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return await call(self._sio, event, payload)
        except ClientError as exc:
            raise LoadgenError(f"{self.name}: {exc}") from None

    def _setup(self, sio: socketio.AsyncClient) -> None:
        sio.on("subscribe_offer", lambda data: self._subscriber.offered(sio, data))
        sio.on("error", self._on_error)

    async def start(self) -> None:
        """Connect, join, turn gallery mode on (host), publish."""
        self._offer_task = asyncio.create_task(self._answer_offers(), name=f"offers-{self.name}")
        try:
            self._sio, joined = await self._membership.join(self._setup)
        except ClientError as exc:
            raise LoadgenError(f"{self.name}: {exc}") from None
        self.id = str(joined["you"]["id"])
        config = rtc_configuration(joined)
        self._subscriber.joined(self._sio, config)
        if self.host:
            await self._call("gallery", {"enabled": True})
        pc = RTCPeerConnection(config)
        self._publish_pc = pc
        streams = [self._clip.audio, self._clip.video]
        for stream in streams:
            if stream is not None:
                track = ReplayTrack(stream, before_frame=self._marker(stream.kind))
                transceiver = pc.addTransceiver(track, direction="sendonly")
                self._senders[stream.kind] = transceiver.sender
        await publish(pc, self._call)

    async def _on_error(self, data: dict[str, Any]) -> None:
        self.errors.append(data)

    async def _answer_offers(self) -> None:
        while True:
            await self._subscriber.answer(await self._subscriber.next_offer(), self._call)

    def _count_new(self, pc: RTCPeerConnection, _offer: dict[str, Any]) -> None:
        """Count the packets of each m-line an offer brought, from now on."""
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            if mid is not None and mid not in self.streams and mid in self._subscriber.owners:
                self._count_rtp(mid, transceiver.receiver)

    def _count_rtp(self, mid: str, receiver: RTCRtpReceiver) -> None:
        """Count this m-line's packets in place of aiortc's depacketizer and decoder."""
        publisher, kind = self._subscriber.owners[mid]
        counter = StreamCounter(mid=mid, kind=kind, publisher_id=publisher)
        self.streams[mid] = counter
        client = self

        async def on_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            counter.seen = True
            counter.total += 1
            window = client.window
            if window is None:
                return
            now = time.time()
            abs_send_time = packet.extensions.abs_send_time
            if abs_send_time is not None:
                latency = abs_send_latency(abs_send_time, now)
                sent_at = now - latency
            else:
                latency, sent_at = -1.0, now  # no stamp (audio): window by arrival
            if packet.timestamp != counter.frame_timestamp:
                # A frame is in the window or not as a whole, by its first packet's stamp,
                # as the publisher counts whole frames (see BenchClient._marker).
                counter.frame_timestamp = packet.timestamp
                counter.frame_in_window = window.start <= sent_at < window.end
            if not counter.frame_in_window:
                return
            counter.in_window += 1
            seq = packet.sequence_number
            if seq in counter.seqs:
                return
            counter.seqs.add(seq)
            if latency >= 0:
                counter.latencies_ms.append(round(latency * 1000, 3))

        aiortc_adapter.take_rtp(receiver, on_rtp)

    def receiving_from(self) -> set[tuple[str, str]]:
        """``(publisher_id, kind)`` of every stream that has delivered a packet."""
        return {(s.publisher_id, s.kind) for s in self.streams.values() if s.seen}

    def missing_detail(self) -> dict[str, Any]:
        """For error messages: offered m-lines that never delivered a packet."""
        return {
            "offers": self._subscriber.answered,
            "announced": len(self._subscriber.owners),
            "silent": [
                f"{m}:{o[1]}:{o[0]}"
                for m, o in self._subscriber.owners.items()
                if m not in self.streams or not self.streams[m].seen
            ],
        }

    def _marker(self, kind: str) -> Callable[[float], Awaitable[None]]:
        """A ``ReplayTrack.before_frame`` hook: notes the sender's packet count before the
        first frame handed over at or after the window's start, and again at its end."""

        async def before_frame(now: float) -> None:
            window = self.window
            if window is None:
                return
            marks = self._sent_marks.setdefault(kind, [None, None])
            if marks[0] is None and now >= window.start:
                marks[0] = await self._packets_sent(kind)
            if marks[1] is None and now >= window.end:
                marks[1] = await self._packets_sent(kind)

        return before_frame

    async def _packets_sent(self, kind: str) -> int:
        """RTP packets the ``kind`` sender has sent (aiortc's outbound-rtp ``packetsSent``)."""
        report = await self._senders[kind].getStats()
        return sum(
            int(s.packetsSent) for s in report.values() if getattr(s, "type", "") == "outbound-rtp"
        )

    def packets_sent_in_window(self) -> dict[str, int | None]:
        """Per kind, packets of the frames handed over inside the window (None: no marks)."""
        sent: dict[str, int | None] = {}
        for kind in self._senders:
            start, end = self._sent_marks.get(kind, [None, None])
            sent[kind] = None if start is None or end is None else end - start
        return sent

    async def stop(self) -> None:
        """Leave and close everything this client owns."""
        await close_session(self._sio, [self._offer_task], [self._publish_pc, self._subscriber.pc])


async def _sleep_until(unix_time: float) -> None:
    await asyncio.sleep(max(0.0, unix_time - time.time()))


async def _wait_ready(clients: list[BenchClient], expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = {c.name: expected - len(c.receiving_from()) for c in clients}
        if all(m <= 0 for m in missing.values()):
            return
        if time.monotonic() > deadline:
            detail = {c.name: c.missing_detail() for c in clients if missing[c.name] > 0}
            raise LoadgenError(f"streams still missing after {timeout:.0f}s: {detail}")
        await asyncio.sleep(0.1)


async def run(config: dict[str, Any]) -> dict[str, Any]:
    """Join every configured client, wait for the window, return what was sent and received."""
    clip = load_clip(Path(config["clip"]))
    clients = [BenchClient(c["link"], c["name"], bool(c["host"]), clip) for c in config["clients"]]
    try:
        for client in clients:
            if client.host:  # gallery on before this process's participants join
                await client.start()
        await asyncio.gather(*(c.start() for c in clients if not c.host))
        await _wait_ready(clients, int(config["expected_streams"]), float(config["ready_timeout"]))
        emit({"event": "ready"})
        start, end = (await read_line())["window"]
        window = Window(float(start), float(end))
        for client in clients:
            client.window = window
        await _sleep_until(window.end + GRACE_S)
        return _result(clients)
    finally:
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)


def _result(clients: list[BenchClient]) -> dict[str, Any]:
    sent = [
        {"publisher_id": c.id, "kind": kind, "packets": packets}
        for c in clients
        for kind, packets in c.packets_sent_in_window().items()
    ]
    received = [
        {
            "subscriber_id": c.id,
            "publisher_id": s.publisher_id,
            "kind": s.kind,
            "packets": len(s.seqs),
            "duplicates": s.in_window - len(s.seqs),
        }
        for c in clients
        for s in c.streams.values()
    ]
    latencies = [v for c in clients for s in c.streams.values() for v in s.latencies_ms]
    errors = [e for c in clients for e in c.errors]
    return {
        "event": "result",
        "sent": sent,
        "received": received,
        "latency_ms": latencies,
        "errors": errors,
    }


def main() -> int:
    """Entry point of ``python -m bench.loadgen``."""
    return serve(run)


if __name__ == "__main__":
    raise SystemExit(main())
