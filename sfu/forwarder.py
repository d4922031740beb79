"""The packet path: a publisher's connection (Ingress) feeds its tracks (Producers), each
of which fans RTP out to its subscriptions (Consumers).

Packets stay encoded and stay bytes. Per incoming packet the header is read once and
the forwarded header extensions re-numbered once; per subscriber the work is one new
fixed header, one SRTP protect and one ``sendto`` — no coroutine, no packet object,
no logging. A Producer keeps the last packets it received so subscribers' NACKs are
answered without asking the publisher. When a class spans worker processes, a Producer
also pipes each packet to the other workers (sfu/pipe.py), where a PipeProducer feeds
that worker's consumers the same way.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from . import aiortc_adapter as adapter
from . import packet as rtp
from .stats import ForwardingStats

logger = logging.getLogger(__name__)

KEYFRAME_INTERVAL_S = 0.3  # at most one PLI upstream per producer in this window
CACHE_SIZE = 1024  # packets kept per producer for answering NACKs (power of two)
CACHE_MASK = CACHE_SIZE - 1
# A copy this many packets behind the subscriber's newest is dropped (under the SRTP
# replay window of 1,024, well past any jitter buffer: ~3 s of 720p video).
STALE_AFTER = 512
QUEUE_LIMIT_BYTES = 256 * 1024  # a subscriber's unsent backlog before its packets drop
REMB_INTERVAL_S = 1.0
MIN_BITRATE = 100_000  # never ask a publisher for less than this

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
    last_seq: int, last_ts: int, elapsed_s: float, clock_rate: int, seq: int, timestamp: int
) -> tuple[int, int]:
    """``(seq_delta, ts_delta)`` that continue an outgoing stream from a new source packet.

    The output resumes one sequence number after the last one sent, and its timestamp
    advances by the wall-clock time that passed, so a player sees a pause, not a jump,
    whatever numbering the source (a restarted or different publisher) uses.
    """
    gap = max(1, int(elapsed_s * clock_rate))
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
        payload: memoryview,
    ) -> None:  # fmt: skip
        """Pipe one packet (RTX already unwrapped, extensions already re-numbered)."""

    def source_report(self, ntp_time: int, rtp_timestamp: int) -> None:
        """Pass on the publisher's sender report."""

    def close(self) -> None:
        """Stop piping (idempotent)."""


class Source:
    """What subscriptions see of a track: a local ``Producer``, or a ``PipeProducer``
    (sfu/pipe.py) holding a copy of a track published on another worker.

    Keeps the last packets for NACKs, fans each packet out to its consumers, and merges
    and rate-limits keyframe requests and bandwidth estimates towards wherever the
    track comes from (``_request_keyframe`` / ``_send_estimate``).
    """

    def __init__(
        self,
        producer_id: str,
        owner_id: str,
        kind: str,
        codec: Codec | None,
        stats: ForwardingStats,
        max_bitrate: int,
    ) -> None:
        self.id = producer_id
        self.owner_id = owner_id
        self.kind = kind
        self.codec = codec
        self.media_ssrc: int | None = None
        self.consumers: list[Consumer] = []
        self.pipes: list[PipeOut] = []  # copies going to other workers (local tracks only)
        self.packets_in = 0
        self.max_bitrate = max_bitrate
        self.keyframe_wanted = False
        self._stats = stats
        self._cache_data: list[bytes | None] = [None] * CACHE_SIZE
        self._cache_seq: list[int] = [-1] * CACHE_SIZE
        self._cache_fields: list[tuple[int, int, int, int, bytes] | None] = [None] * CACHE_SIZE
        self._last_keyframe_request = 0.0
        self._last_remb = 0.0
        self._tasks: set[asyncio.Future[None]] = set()
        self._closed = False

    def _new_ssrc(self, ssrc: int) -> None:
        """The track's packets now carry ``ssrc`` (a method only for this rare branch)."""
        if self.media_ssrc is not None:
            # The publisher restarted its stream: each consumer keeps its own numbering.
            for consumer in self.consumers:
                consumer.resync()
        self.media_ssrc = ssrc

    def _fan_out(
        self, data: bytes, payload: memoryview, padding: int, marker: int, seq: int,
        timestamp: int, payload_start: int, shared: bytes,
    ) -> None:  # fmt: skip
        """Keep one packet for NACKs and send it to every consumer."""
        slot = seq & CACHE_MASK
        self._cache_data[slot] = data
        self._cache_seq[slot] = seq
        self._cache_fields[slot] = (padding, marker, timestamp, payload_start, shared)
        sent = 0
        octets = 0
        for consumer in self.consumers:
            size = consumer.send(padding, marker, seq, timestamp, shared, payload)
            if size:
                sent += 1
                octets += size
        stats = self._stats
        stats.forwarded_packets += sent
        stats.forwarded_bytes += octets
        if self.keyframe_wanted:
            self.want_keyframe()

    def cached(self, seq: int) -> tuple[int, int, int, bytes, memoryview] | None:
        """``(padding, marker, timestamp, shared, payload)`` of a recent source packet."""
        slot = seq & CACHE_MASK
        data = self._cache_data[slot]
        fields = self._cache_fields[slot]
        if data is None or fields is None or self._cache_seq[slot] != seq:
            return None
        padding, marker, timestamp, payload_start, shared = fields
        return padding, marker, timestamp, shared, memoryview(data)[payload_start:]

    def want_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per KEYFRAME_INTERVAL_S.

        Requests inside the window merge into one sent by the first packet after it.
        """
        if self.kind != "video" or self.media_ssrc is None or self._closed:
            self.keyframe_wanted = False
            return
        now = time.monotonic()
        if now - self._last_keyframe_request < KEYFRAME_INTERVAL_S:
            self.keyframe_wanted = True
            return
        self.keyframe_wanted = False
        self._last_keyframe_request = now
        self._stats.keyframe_requests += 1
        self._request_keyframe(self.media_ssrc)

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
        """What the publisher should send: the lowest subscriber estimate, within the cap."""
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

    def close(self) -> None:
        """Stop forwarding and close every consumer and pipe (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for pipe in list(self.pipes):
            pipe.close()
        self.pipes.clear()
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        self._cache_data = [None] * CACHE_SIZE


class Producer(Source):
    """One track published by a participant on this worker: the source of forwarded packets."""

    def __init__(
        self,
        producer_id: str,
        owner_id: str,
        transceiver: RTCRtpTransceiver,
        stats: ForwardingStats,
        max_bitrate: int,
    ) -> None:
        codecs = adapter.negotiated_codecs(transceiver)
        media = [c for c in codecs if c.mimeType.lower() != "video/rtx"]
        codec = None
        self._clock_rate = 90000
        if media:
            first = media[0]
            codec = Codec(first.mimeType, first.clockRate, first.channels, dict(first.parameters))
            self._clock_rate = first.clockRate
        super().__init__(producer_id, owner_id, transceiver.kind, codec, stats, max_bitrate)
        # Sum of (127 - level) over the current speaker window, audio only.
        self.loudness = 0
        self.loud_packets = 0
        self._receiver: RTCRtpReceiver = transceiver.receiver
        self.payload_types = {c.payloadType for c in codecs if c.payloadType is not None}
        self.rtx_payload_types = {
            c.payloadType: int(str(c.parameters["apt"]))
            for c in codecs
            if c.mimeType.lower() == "video/rtx" and "apt" in c.parameters and c.payloadType
        }
        self._extensions = rtp.ExtensionMap(
            adapter.extension_ids(transceiver), SUBSCRIBER_EXTENSION_IDS
        )
        self._nack = adapter.new_nack_generator() if self.kind == "video" else None
        self._seq_ts = _SeqTs()
        adapter.suppress_decoder(self._receiver)
        adapter.take_receiver_rtcp(self._receiver, self._on_rtcp)

    def on_rtp(self, data: bytes, is_rtx: bool) -> None:
        """One packet from the publisher (an RTX retransmission if ``is_rtx``)."""
        if self._closed:
            return
        marker, pt, seq, timestamp, ssrc, profile, ext_start, payload_start = rtp.read(data)
        if is_rtx:
            # RTX payload = original sequence number + original payload (RFC 4588).
            if self.media_ssrc is None or len(data) - payload_start < 3:
                return  # a padding-only bandwidth probe
            seq = (data[payload_start] << 8) | data[payload_start + 1]
            payload_start += 2
            pt = self.rtx_payload_types[pt]
            ssrc = self.media_ssrc
        if ssrc != self.media_ssrc:
            self._new_ssrc(ssrc)
        self.packets_in += 1
        seq_ts = self._seq_ts
        seq_ts.sequence_number = seq
        seq_ts.timestamp = timestamp
        seq_ts.ssrc = ssrc
        adapter.note_received(self._receiver, seq_ts, self._clock_rate)
        if self._nack is not None and self._nack.add(seq_ts):  # type: ignore[arg-type]
            self._stats.nacks_sent += 1
            self._spawn(adapter.send_nack(self._receiver, ssrc, sorted(self._nack.missing)))

        padding = data[0] & rtp.PADDING_BIT
        shared = self._extensions.shared_block(data, profile, ext_start, payload_start)
        if self.kind == "audio":
            self.loudness += 127 - self._extensions.audio_level
            self.loud_packets += 1
        payload = memoryview(data)[payload_start:]
        # Other workers first: their subscribers' share of the work starts sooner.
        for pipe in self.pipes:
            pipe.send(padding, marker, seq, timestamp, ssrc, shared, payload)
        self._fan_out(data, payload, padding, marker, seq, timestamp, payload_start, shared)

    def _request_keyframe(self, media_ssrc: int) -> None:
        self._spawn(adapter.request_keyframe(self._receiver, media_ssrc))

    async def _send_estimate(self, bitrate: int) -> None:
        ssrc = adapter.rtcp_ssrc(self._receiver)
        if ssrc is None or self.media_ssrc is None:
            return
        fci = pack_remb_fci(bitrate, [self.media_ssrc])
        await adapter.send_rtcp(
            self._receiver, RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=ssrc, media_ssrc=0, fci=fci)
        )

    def _on_rtcp(self, packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == self.media_ssrc:
            info = packet.sender_info
            for consumer in self.consumers:
                consumer.source_report(info.ntp_timestamp, info.rtp_timestamp)
            for pipe in self.pipes:
                pipe.source_report(info.ntp_timestamp, info.rtp_timestamp)


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
        self._by_ssrc: dict[int, tuple[Producer, bool]] = {}
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
        if route is None:
            # First packet of a stream: learn its SSRC from its payload type, which is
            # unique per track on a publish connection (one codec each, plus RTX).
            route = self._by_pt.get(data[1] & 0x7F)
            if route is None:
                return
            self._by_ssrc[ssrc] = route
        producer, is_rtx = route
        try:  # noqa: SIM105 (a context manager costs more on this per-packet path)
            producer.on_rtp(data, is_rtx)
        except rtp.RtpError:
            pass  # malformed: dropped, as a real network would


class Consumer:
    """One subscriber's copy of a producer, sent on one send-only transceiver."""

    def __init__(
        self,
        producer: Source,
        subscriber_id: str,
        transceiver: RTCRtpTransceiver,
        payload_type: int,
        stats: ForwardingStats,
    ) -> None:
        self.producer = producer
        self.subscriber_id = subscriber_id
        self.mid: str = transceiver.mid or ""
        self.payload_type = payload_type
        self.packets_out = 0
        self.octets_out = 0
        self._paused = False
        self.remb = 0
        self.fraction_lost = 0
        self.jitter = 0
        self._sender: RTCRtpSender = transceiver.sender
        self._ssrc: int = self._sender._ssrc
        self._transport: RTCDtlsTransport = self._sender.transport
        self._egress: adapter.Egress | None = None
        mid_id = adapter.extension_ids(transceiver).get(rtp.URI_MID)
        self._own_block = rtp.mid_element(mid_id, self.mid)
        self._stats = stats
        self._seq_delta = 0
        self._ts_delta = 0
        self._last_seq = random.randint(0, 0xFFFF)
        self._last_ts = random.randint(0, 0xFFFFFFFF)
        self._last_sent_at = time.monotonic()
        self._clock_rate = producer.codec.clock_rate if producer.codec else 90000
        self._synced = False
        self._congested = False
        self._closed = False
        # Retransmissions go on the RTX stream when the subscriber negotiated one.
        self._rtx = adapter.negotiated_rtx(transceiver)
        self._rtx_seq = random.randint(0, 0xFFFF)
        adapter.take_rtcp(self._sender, self._on_rtcp)
        adapter.on_state_change(self._transport, self._on_state)
        producer.consumers.append(self)
        producer.showing_changed()

    @property
    def paused(self) -> bool:
        """Whether nothing is sent (the subscriber does not show this video)."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        if self._paused and not value:
            # Resume without a sequence gap, and with a picture the decoder can start from.
            self._synced = False
            self.producer.keyframe_wanted = True
        changed = value != self._paused
        self._paused = value
        if changed:
            self.producer.showing_changed()

    def _on_state(self, state: str) -> None:
        if state != "connected":
            self._egress = None

    def resync(self) -> None:
        """The source's numbering jumped: re-anchor so our output stays continuous."""
        self._synced = False

    def send(
        self,
        padding: int,
        marker: int,
        seq: int,
        timestamp: int,
        shared: bytes,
        payload: memoryview,
    ) -> int:
        """Rewrite one source packet for this subscriber and send it; returns bytes sent."""
        egress = self._egress
        if egress is None:
            if self._closed:
                return 0
            egress = self._egress = adapter.egress(self._transport)
            if egress is None:
                return 0
            # Just connected: this subscriber needs a keyframe to start decoding.
            self._synced = False
            self.producer.keyframe_wanted = True
        if self._paused:
            return 0
        if not self._synced:
            self._seq_delta, self._ts_delta = anchor(
                self._last_seq, self._last_ts, time.monotonic() - self._last_sent_at,
                self._clock_rate, seq, timestamp,
            )  # fmt: skip
            self._synced = True
        out_seq = (seq + self._seq_delta) & 0xFFFF
        if STALE_AFTER <= (self._last_seq - out_seq) & 0xFFFF < 0x8000:
            # Far behind what this subscriber already has (a retransmission of a packet
            # from before a pause or a re-anchoring): no use to its jitter buffer, and
            # SRTP would refuse it (aiortc's replay window is 1,024 packets).
            self._stats.stale_packets += 1
            return 0
        out_ts = (timestamp + self._ts_delta) & 0xFFFFFFFF
        if egress.backlog() > QUEUE_LIMIT_BYTES:
            # This subscriber cannot keep up: drop from its own queue only, and ask for
            # a keyframe once it drains so its picture recovers.
            self._stats.dropped_packets += 1
            self._congested = True
            return 0
        if self._congested:
            # Number on without a gap: what was dropped is gone for good, and a gap would
            # only bring NACKs for it. The keyframe restarts the picture.
            self._congested = False
            self._synced = False
            self.producer.keyframe_wanted = True
        data = rtp.write(
            padding, marker, self.payload_type, out_seq, out_ts, self._ssrc,
            self._own_block, shared, payload,
        )  # fmt: skip
        egress.sendto(egress.protect(data), egress.address)
        if (out_seq - self._last_seq) & 0xFFFF < 0x8000:
            self._last_seq = out_seq
            self._last_ts = out_ts
            self._last_sent_at = time.monotonic()
        self.packets_out += 1
        self.octets_out += len(payload)
        return len(data)

    def source_report(self, ntp_time: int, rtp_timestamp: int) -> None:
        """The publisher's sender report, translated into this subscriber's timestamps."""
        if self._synced:
            adapter.set_sender_report(
                self._sender,
                ntp_time,
                (rtp_timestamp + self._ts_delta) & 0xFFFFFFFF,
                self.packets_out,
                self.octets_out,
            )

    async def _on_rtcp(self, packet: Any) -> None:
        if self._closed:
            return
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                if packet.fmt == RTCP_PSFB_PLI:
                    self._stats.plis_received += 1
                else:
                    self._stats.firs_received += 1
                self.producer.want_keyframe()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if self._ssrc in ssrcs:
                    self.remb = bitrate
                    await self.producer.send_remb()
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self._stats.nacks_received += 1
            self._stats.nacked_packets += len(packet.lost)
            for out_seq in packet.lost:
                self._retransmit(out_seq)
        elif isinstance(packet, RtcpRrPacket):
            for report in packet.reports:
                if report.ssrc == self._ssrc:
                    self.fraction_lost = report.fraction_lost
                    self.jitter = report.jitter

    def _retransmit(self, out_seq: int) -> None:
        egress = self._egress
        source = self.producer.cached((out_seq - self._seq_delta) & 0xFFFF)
        if egress is None or source is None:
            return
        padding, marker, timestamp, shared, payload = source
        out_ts = (timestamp + self._ts_delta) & 0xFFFFFFFF
        if self._rtx is not None:
            # RFC 4588: the original sequence number leads the payload on the RTX stream.
            rtx_pt, rtx_ssrc = self._rtx
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            data = rtp.write(
                padding, marker, rtx_pt, self._rtx_seq, out_ts, rtx_ssrc,
                self._own_block, shared, out_seq.to_bytes(2, "big") + payload,
            )  # fmt: skip
        else:
            data = rtp.write(
                padding, marker, self.payload_type, out_seq, out_ts, self._ssrc,
                self._own_block, shared, payload,
            )  # fmt: skip
        egress.sendto(egress.protect(data), egress.address)
        self._stats.retransmitted_packets += 1

    def close(self) -> None:
        """Detach from the producer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._egress = None
        if self in self.producer.consumers:
            self.producer.consumers.remove(self)
            self.producer.showing_changed()
