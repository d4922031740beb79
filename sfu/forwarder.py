"""The packet path: a publisher's connection (Ingress) feeds its tracks (Producers), each
of which fans RTP out to its subscriptions (Consumers).

Packets stay encoded and stay bytes. Per incoming packet the header is read once and
the forwarded header extensions re-numbered once; per subscriber the work is one new
fixed header, one SRTP protect and one ``sendto`` — no coroutine, no packet object,
no logging. A Producer keeps the last packets it received so subscribers' NACKs are
answered without asking the publisher. When a class spans worker processes, a Producer
also pipes each packet to the other workers (sfu/pipe.py), where a PipeProducer feeds
that worker's consumers the same way.

A track published with simulcast has one ``Stream`` per layer, each with its own SSRC,
NACK cache, keyframe requests and sender reports; every consumer takes one layer at a
time and moves to another only at that layer's keyframe (sfu/consumer.py). A track
without layers has one Stream whose consumer list is the track's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiortc import RTCRtpReceiver, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpSrPacket,
    pack_remb_fci,
)

from . import aiortc_adapter as adapter
from . import packet as rtp
from . import simulcast
from .simulcast import OfferedLayers
from .stats import ForwardingStats
from .stream import Stream

if TYPE_CHECKING:
    from .stream import Subscription

logger = logging.getLogger(__name__)

# A copy this many packets behind the subscriber's newest is dropped (under the SRTP
# replay window of 1,024, well past any jitter buffer: ~3 s of 720p video).
STALE_AFTER = 512
QUEUE_LIMIT_BYTES = 256 * 1024  # a subscriber's unsent backlog before its packets drop
REMB_INTERVAL_S = 1.0
MIN_BITRATE = 100_000  # never ask a publisher for less than this
RATE_INTERVAL_S = 0.5  # how often a layered track measures its layers' bitrates
LAYER_OFF_AFTER_S = 5.0  # a layer nobody wants is switched off at the publisher after this

# Header-extension ids aiortc offers subscribers (its fixed table, sfu is the offerer).
SUBSCRIBER_EXTENSION_IDS = {rtp.URI_MID: 1, rtp.URI_AUDIO_LEVEL: 2, rtp.URI_ABS_SEND_TIME: 3}


@dataclass(frozen=True, slots=True)
class Codec:
    """What a published track carries: enough to pick the same codec for a subscriber."""

    mime_type: str
    clock_rate: int
    channels: int | None
    parameters: dict[str, Any]


def anchor(
    last_seq: int, last_ts: int, elapsed_s: float, clock_rate: int, seq: int, timestamp: int,
    min_gap: int = 1,
) -> tuple[int, int]:  # fmt: skip
    """``(seq_delta, ts_delta)`` that continue an outgoing stream from a new source packet.

    The output resumes one sequence number after the last one sent, and its timestamp
    advances by the wall-clock time that passed (at least ``min_gap``), so a player sees
    a pause, not a jump, whatever numbering the source (a restarted or different
    publisher, another simulcast layer) uses.
    """
    gap = max(min_gap, int(elapsed_s * clock_rate))
    return (last_seq + 1 - seq) & 0xFFFF, (last_ts + gap - timestamp) & 0xFFFFFFFF


class _SeqTs:
    """The fields aiortc's receive statistics read, in one object reused for every packet."""

    __slots__ = ("sequence_number", "ssrc", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0
        self.ssrc = 0


class PipeOut(Protocol):
    """A copy of a track going to another worker (``sfu.pipe.PipeSink``)."""

    remb: int  # the other worker's folded bandwidth estimate (0: none yet)

    def send(
        self, padding: int, marker: int, seq: int, timestamp: int, ssrc: int, shared: bytes,
        payload: memoryview, layer: int,
    ) -> None:  # fmt: skip
        """Pipe one packet (RTX already unwrapped, extensions already re-numbered)."""

    def wanted_layers(self) -> int:
        """The layers subscribers on the other worker want (a bit per layer)."""

    def source_report(self, ntp_time: int, rtp_timestamp: int, layer: int) -> None:
        """Pass on the publisher's sender report."""

    def close(self) -> None:
        """Stop piping (idempotent)."""


LayersCallback = Callable[[list[str]], None]  # the rids the publisher should send


class Source:
    """What subscriptions see of a track: a local ``Producer``, or a ``PipeProducer``
    (sfu/pipe.py) holding a copy of a track published on another worker.

    Holds its ``streams`` (one, or one per simulcast layer, low to high), the consumers
    of the track, and merges bandwidth estimates towards wherever the track comes from
    (``_request_keyframe`` / ``_send_estimate``). A layered track measures its layers
    twice a second and tells the publisher which layers anyone wants (``on_layers``).
    """

    def __init__(
        self,
        producer_id: str,
        owner_id: str,
        kind: str,
        codec: Codec | None,
        stats: ForwardingStats,
        max_bitrate: int,
        rids: tuple[str, ...] = (),
    ) -> None:
        self.id = producer_id
        self.owner_id = owner_id
        self.kind = kind
        self.codec = codec
        self.consumers: list[Subscription] = []
        self.pipes: list[PipeOut] = []  # copies going to other workers (local tracks only)
        self.packets_in = 0
        self.max_bitrate = max_bitrate
        self.stats = stats
        self.layered = len(rids) > 1
        self.vp8 = codec is not None and codec.mime_type.lower() == "video/vp8"
        self.streams = [
            Stream(self, i, rid, [] if self.layered else self.consumers)
            for i, rid in enumerate(rids or ("",))
        ]
        self.on_layers: LayersCallback | None = None
        # What the publisher was last told to send: a bit per layer, the lowest bit 0.
        self.active_layers = (1 << len(self.streams)) - 1
        self.closed = False
        self._wanted_since = 0.0  # when fewer layers than active were first enough
        self._last_remb = 0.0
        self._tasks: set[asyncio.Future[None]] = set()
        if self.layered:
            self._spawn(self._measure_layers())

    # The single-stream view older callers (pipes, tests) use: stream 0.
    @property
    def media_ssrc(self) -> int | None:
        """The SSRC of the track's first (or only) stream."""
        return self.streams[0].media_ssrc

    @media_ssrc.setter
    def media_ssrc(self, ssrc: int | None) -> None:
        self.streams[0].media_ssrc = ssrc

    @property
    def keyframe_wanted(self) -> bool:
        """Whether a keyframe request for the first stream is waiting for its window."""
        return self.streams[0].keyframe_wanted

    def cached(self, seq: int, layer: int = 0) -> tuple[int, int, int, bytes, memoryview] | None:
        """A recent packet of one stream (see ``Stream.cached``)."""
        return self.streams[layer].cached(seq)

    def want_keyframe(self, layer: int = 0) -> None:
        """Ask for a keyframe of one stream (see ``Stream.want_keyframe``)."""
        self.streams[layer].want_keyframe()

    def _fan_out(
        self, data: bytes, payload: memoryview, padding: int, marker: int, seq: int,
        timestamp: int, payload_start: int, shared: bytes,
    ) -> None:  # fmt: skip
        first = self.streams[0]
        first.fan_out(data, payload, padding, marker, seq, timestamp, payload_start, shared)

    def stream_of(self, ssrc: int) -> Stream | None:
        """The stream whose media SSRC is ``ssrc``."""
        for stream in self.streams:
            if stream.media_ssrc == ssrc:
                return stream
        return None

    def request_keyframe(self, stream: Stream) -> None:
        """Send the keyframe request for ``stream`` towards the publisher."""
        if stream.media_ssrc is not None:
            self._request_keyframe(stream.media_ssrc)

    def _request_keyframe(self, media_ssrc: int) -> None:
        raise NotImplementedError

    def showing_changed(self) -> None:
        """A consumer was added, removed, paused or resumed (a pipe pauses on it)."""

    def _spawn(self, coro: Any) -> None:
        # RTCP towards the publisher (NACK, PLI) is rare: a task owned here, so the
        # packet path itself never waits.
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def target_bitrate(self) -> int:
        """What the publisher should send. Layered: everything up to the cap, since each
        subscriber takes the layer its own link carries, so only the publisher's uplink
        limits it. One stream: the lowest subscriber estimate, within the cap."""
        if self.layered:
            return self.max_bitrate
        estimates = [c.remb for c in self.consumers if c.remb]
        estimates += [p.remb for p in self.pipes if p.remb]
        target = min(estimates) if estimates else self.max_bitrate
        return max(MIN_BITRATE, min(target, self.max_bitrate))

    async def send_remb(self) -> None:
        """Pass the folded bandwidth estimate towards the publisher, at most once a second."""
        now = time.monotonic()
        if now - self._last_remb < REMB_INTERVAL_S or self.media_ssrc is None:
            return
        self._last_remb = now
        await self._send_estimate(self.target_bitrate())

    async def _send_estimate(self, bitrate: int) -> None:
        raise NotImplementedError

    async def _measure_layers(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(RATE_INTERVAL_S)
            now = time.monotonic()
            for stream in self.streams:
                stream.measure(now - last, now)
            last = now
            try:
                self.update_layers(now)
                if self.kind == "video" and self.streams[0].media_ssrc is not None:
                    await self.send_remb()
            except Exception:
                logger.exception("layer update failed for %s", self.id)

    def wanted_layers(self) -> int:
        """The layers anyone here or on another worker wants, a bit per layer: the
        lowest always (every subscriber's fallback), and for each consumer the layers
        from the one it has (or is switching to) up to the one its view calls for, so
        it can climb. A middle layer nobody takes or climbs through stays off."""
        wanted = 1
        for consumer in self.consumers:
            if not consumer.paused:
                low = max(0, min(consumer.layer, consumer.wanted))
                high = max(consumer.preferred, consumer.wanted)
                wanted |= ((1 << (high + 1)) - 1) & ~((1 << low) - 1)
        for pipe in self.pipes:
            wanted |= pipe.wanted_layers()
        return wanted & ((1 << len(self.streams)) - 1)

    def update_layers(self, now: float) -> None:
        """Switch layers on at once when someone wants them, off after a quiet while."""
        if not self.layered or self.on_layers is None:
            return
        wanted = self.wanted_layers()
        if wanted & ~self.active_layers:
            self._tell_layers(self.active_layers | wanted)
        elif self.active_layers & ~wanted:
            if not self._wanted_since:
                self._wanted_since = now
            elif now - self._wanted_since >= LAYER_OFF_AFTER_S:
                self._tell_layers(wanted)
            return
        self._wanted_since = 0.0

    def _tell_layers(self, mask: int) -> None:
        self.active_layers = mask
        self._wanted_since = 0.0
        if self.on_layers is not None:
            self.on_layers([s.rid for s in self.streams if mask >> s.index & 1])

    def close(self) -> None:
        """Stop forwarding and close every consumer and pipe (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for task in self._tasks:
            task.cancel()
        for pipe in list(self.pipes):
            pipe.close()
        self.pipes.clear()
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        for stream in self.streams:
            stream.clear()

    async def wait_closed(self) -> None:
        """After ``close()``: wait until the tasks it cancelled have ended (awaited by
        whoever closed it: its participant, or for a pipe's copy its room)."""
        if self.closed:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Producer(Source):
    """One track published by a participant on this worker: the source of forwarded packets.

    ``layers`` (from ``sfu.simulcast``) names its simulcast layers low to high, and the
    header-extension ids their packets carry the layer's rid in; without it the track
    has one stream.
    """

    def __init__(
        self,
        producer_id: str,
        owner_id: str,
        transceiver: RTCRtpTransceiver,
        stats: ForwardingStats,
        max_bitrate: int,
        layers: OfferedLayers | None = None,
    ) -> None:
        codecs = adapter.negotiated_codecs(transceiver)
        media = [c for c in codecs if c.mimeType.lower() != "video/rtx"]
        codec = None
        self._clock_rate = 90000
        if media:
            first = media[0]
            codec = Codec(first.mimeType, first.clockRate, first.channels, dict(first.parameters))
            self._clock_rate = first.clockRate
        rids = layers.rids if layers is not None else ()
        super().__init__(producer_id, owner_id, transceiver.kind, codec, stats, max_bitrate, rids)
        self.rid_ids = (
            (layers.rid_id, layers.rrid_id or layers.rid_id) if layers is not None else None
        )
        # Sum of (127 - level) over the current speaker window, audio only.
        self.loudness = 0
        self.loud_packets = 0
        self._receiver: RTCRtpReceiver = transceiver.receiver
        self._transport = transceiver.receiver.transport
        self.payload_types = {c.payloadType for c in codecs if c.payloadType is not None}
        self.rtx_payload_types = {
            c.payloadType: int(str(c.parameters["apt"]))
            for c in codecs
            if c.mimeType.lower() == "video/rtx" and "apt" in c.parameters and c.payloadType
        }
        self._extensions = rtp.ExtensionMap(
            adapter.extension_ids(transceiver), SUBSCRIBER_EXTENSION_IDS
        )
        self._nacks = [
            adapter.new_nack_generator() if self.kind == "video" else None for _ in self.streams
        ]
        self._seq_ts = _SeqTs()
        # Per stream: (the SSRC, aiortc's receive statistics for it), kept between packets.
        self._noted: list[tuple[int, Callable[[Any], None]] | None] = [None] * len(self.streams)
        adapter.suppress_decoder(self._receiver)
        adapter.take_receiver_rtcp(self._receiver, self._on_rtcp)

    def layer_of(self, data: bytes, is_rtx: bool) -> Stream | None:
        """The stream a new SSRC's packet belongs to, by the rid it carries (None: none
        yet; a layered track's packets carry it until the SFU has acknowledged the SSRC)."""
        if self.rid_ids is None:
            return self.streams[0]
        _m, _pt, _seq, _ts, ssrc, profile, ext_start, payload_start = rtp.read(data)
        rid = simulcast.rid_of(data, profile, ext_start, payload_start, self.rid_ids[is_rtx])
        for stream in self.streams:
            if stream.rid == rid:
                if not is_rtx:
                    # Sender reports are routed by SSRC, and no a=ssrc line named this one.
                    adapter.bind_ssrc(self._transport, self._receiver, ssrc)
                return stream
        return None

    def on_rtp(self, data: bytes, is_rtx: bool, stream: Stream) -> None:
        """One packet of ``stream`` from the publisher (an RTX retransmission if ``is_rtx``)."""
        if self.closed:
            return
        marker, pt, seq, timestamp, ssrc, profile, ext_start, payload_start = rtp.read(data)
        if is_rtx:
            # RTX payload = original sequence number + original payload (RFC 4588).
            if stream.media_ssrc is None or len(data) - payload_start < 3:
                return  # a padding-only bandwidth probe
            seq = (data[payload_start] << 8) | data[payload_start + 1]
            payload_start += 2
            pt = self.rtx_payload_types[pt]
            ssrc = stream.media_ssrc
        if ssrc != stream.media_ssrc:
            stream.new_ssrc(ssrc)
        self.packets_in += 1
        seq_ts = self._seq_ts
        seq_ts.sequence_number = seq
        seq_ts.timestamp = timestamp
        seq_ts.ssrc = ssrc
        noted = self._noted[stream.index]
        if noted is None or noted[0] != ssrc:
            noted = self._noted[stream.index] = (
                ssrc, adapter.receive_statistics(self._receiver, ssrc, self._clock_rate)
            )  # fmt: skip
        noted[1](seq_ts)
        nack = self._nacks[stream.index]
        if nack is not None and nack.add(seq_ts):  # type: ignore[arg-type]
            self.stats.nacks_sent += 1
            self._spawn(adapter.send_nack(self._receiver, ssrc, sorted(nack.missing)))

        padding = data[0] & rtp.PADDING_BIT
        shared = self._extensions.shared_block(data, profile, ext_start, payload_start)
        if self.kind == "audio":
            self.loudness += 127 - self._extensions.audio_level
            self.loud_packets += 1
        payload = memoryview(data)[payload_start:]
        # Other workers first: their subscribers' share of the work starts sooner.
        for pipe in self.pipes:
            pipe.send(padding, marker, seq, timestamp, ssrc, shared, payload, stream.index)
        stream.fan_out(data, payload, padding, marker, seq, timestamp, payload_start, shared)

    def _request_keyframe(self, media_ssrc: int) -> None:
        self._spawn(adapter.request_keyframe(self._receiver, media_ssrc))

    async def _send_estimate(self, bitrate: int) -> None:
        ssrc = adapter.rtcp_ssrc(self._receiver)
        ssrcs = [s.media_ssrc for s in self.streams if s.media_ssrc is not None]
        if ssrc is None or not ssrcs:
            return
        fci = pack_remb_fci(bitrate, ssrcs)
        await adapter.send_rtcp(
            self._receiver, RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=ssrc, media_ssrc=0, fci=fci)
        )

    def _on_rtcp(self, packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            stream = self.stream_of(packet.ssrc)
            if stream is None:
                return
            info = packet.sender_info
            stream.source_report(info.ntp_timestamp, info.rtp_timestamp)
            for pipe in self.pipes:
                pipe.source_report(info.ntp_timestamp, info.rtp_timestamp, stream.index)


Route = tuple[Producer, bool, Stream]


class Ingress:
    """All RTP arriving on one publisher's connection, routed to its producers by SSRC."""

    def __init__(
        self, transport: RTCDtlsTransport, producers: list[Producer], stats: ForwardingStats
    ) -> None:
        self._stats = stats
        self._by_pt: dict[int, tuple[Producer, bool]] = {}
        for producer in producers:
            for pt in producer.payload_types:
                self._by_pt[pt] = (producer, pt in producer.rtx_payload_types)
        self._by_ssrc: dict[int, Route] = {}
        # Direct from the UDP socket callback where possible; aiortc's own (queued)
        # path for whatever does not come that way (a TURN-relayed pair).
        adapter.take_datagrams(transport, self.on_rtp)
        adapter.take_transport_rtp(transport, self._on_queued_rtp)

    async def _on_queued_rtp(self, data: bytes, _arrival_time_ms: int) -> None:
        self._stats.queued_packets += 1
        self.on_rtp(data)

    def on_rtp(self, data: bytes) -> None:
        """One decrypted RTP packet from the publisher."""
        if len(data) < 12:
            return
        self._stats.received_packets += 1
        ssrc = int.from_bytes(data[8:12], "big")
        route = self._by_ssrc.get(ssrc)
        try:
            if route is None:
                route = self._learn(data, ssrc)
                if route is None:
                    return
            producer, is_rtx, stream = route
            producer.on_rtp(data, is_rtx, stream)
        except rtp.RtpError:
            pass  # malformed: dropped, as a real network would

    def _learn(self, data: bytes, ssrc: int) -> Route | None:
        """First packet of a stream: its track from its payload type (unique per track on
        a publish connection: one codec each, plus RTX), its layer from its rid."""
        found = self._by_pt.get(data[1] & 0x7F)
        if found is None:
            return None
        producer, is_rtx = found
        stream = producer.layer_of(data, is_rtx)
        if stream is None:
            return None
        route = self._by_ssrc[ssrc] = (producer, is_rtx, stream)
        return route
