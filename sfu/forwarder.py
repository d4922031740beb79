"""The packet path: a published track (Producer) fans RTP out to its subscriptions (Consumers).

Packets stay encoded. Per subscriber the SFU rewrites SSRC, payload type, sequence
number, timestamp and the MID extension, then encrypts and sends. Nothing here
allocates per packet beyond the serialized bytes, and nothing logs per packet.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.clock import current_ntp_time
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unwrap_rtx,
)

from . import aiortc_adapter as adapter
from .stats import ForwardingStats

logger = logging.getLogger(__name__)

KEYFRAME_INTERVAL_S = 0.3  # at most one PLI upstream per producer in this window
CACHE_SIZE = 512  # packets kept per consumer for answering NACKs


@dataclass(frozen=True, slots=True)
class Codec:
    """What a published track carries: enough to pick the same codec for a subscriber."""

    mime_type: str
    clock_rate: int
    channels: int | None
    parameters: dict[str, Any]


class Producer:
    """One track published by a participant: the source of forwarded packets."""

    def __init__(
        self,
        producer_id: str,
        owner_id: str,
        transceiver: RTCRtpTransceiver,
        stats: ForwardingStats,
    ) -> None:
        self.id = producer_id
        self.owner_id = owner_id
        self.kind: str = transceiver.kind
        self.codec: Codec | None = None
        self.media_ssrc: int | None = None
        self.consumers: list[Consumer] = []
        self.packets_in = 0
        self._receiver: RTCRtpReceiver = transceiver.receiver
        self._stats = stats
        codecs = adapter.negotiated_codecs(transceiver)
        self._clock_rates = {
            c.payloadType: c.clockRate for c in codecs if c.payloadType is not None
        }
        self._rtx_payload_types = {
            c.payloadType: int(str(c.parameters["apt"]))
            for c in codecs
            if c.mimeType.lower() == "video/rtx"
            and "apt" in c.parameters
            and c.payloadType is not None
        }
        self._nack = adapter.new_nack_generator() if self.kind == "video" else None
        self._last_keyframe_request = 0.0
        self._closed = False
        media = [c for c in codecs if c.mimeType.lower() != "video/rtx"]
        if media:
            first = media[0]
            self.codec = Codec(
                first.mimeType, first.clockRate, first.channels, dict(first.parameters)
            )
        adapter.take_rtp(self._receiver, self._on_rtp)

    async def _on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if self._closed:
            return
        pt = packet.payload_type
        apt = self._rtx_payload_types.get(pt)
        if apt is not None:
            # A retransmission the publisher sent on its RTX stream: unwrap and forward it.
            # One stream per producer (no simulcast), so the media SSRC is known.
            if self.media_ssrc is None or len(packet.payload) < 2:
                return  # a padding-only bandwidth probe
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=self.media_ssrc)
        elif pt not in self._clock_rates:
            return
        if self.media_ssrc is None:
            self.media_ssrc = packet.ssrc
        elif packet.ssrc != self.media_ssrc:
            # The publisher restarted its stream: consumers keep their own continuity.
            self.media_ssrc = packet.ssrc
            for consumer in self.consumers:
                consumer.source_restarted()
        self.packets_in += 1
        adapter.note_received(self._receiver, packet, self._clock_rates[packet.payload_type])
        if self._nack is not None and self._nack.add(packet):
            await adapter.send_nack(self._receiver, packet.ssrc, sorted(self._nack.missing))

        seq = packet.sequence_number
        timestamp = packet.timestamp
        for consumer in self.consumers:
            await consumer.forward(packet, seq, timestamp)

    async def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per KEYFRAME_INTERVAL_S."""
        if self.kind != "video" or self.media_ssrc is None or self._closed:
            return
        now = time.monotonic()
        if now - self._last_keyframe_request < KEYFRAME_INTERVAL_S:
            return
        self._last_keyframe_request = now
        self._stats.keyframe_requests += 1
        await adapter.request_keyframe(self._receiver, self.media_ssrc)

    def close(self) -> None:
        """Stop forwarding and close every consumer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()


class Consumer:
    """One subscriber's copy of a producer, sent on one send-only transceiver."""

    def __init__(
        self,
        producer: Producer,
        subscriber_id: str,
        sender: RTCRtpSender,
        mid: str,
        payload_type: int,
        stats: ForwardingStats,
        on_close: Callable[[Consumer], None] | None = None,
    ) -> None:
        self.producer = producer
        self.subscriber_id = subscriber_id
        self.mid = mid
        self.payload_type = payload_type
        self.packets_out = 0
        self.paused = False
        self._sender = sender
        self._ssrc: int = sender._ssrc
        self._transport: RTCDtlsTransport | None = None
        self._stats = stats
        self._on_close = on_close
        self._seq_delta = 0
        self._ts_delta = 0
        self._last_seq = random.randint(0, 0xFFFF)
        self._last_ts = random.randint(0, 0xFFFFFFFF)
        self._last_sent_at = time.monotonic()
        self._clock_rate = producer.codec.clock_rate if producer.codec else 90000
        self._synced = False
        self._cache: list[bytes | None] = [None] * CACHE_SIZE
        self._cache_seq: list[int] = [-1] * CACHE_SIZE
        self._closed = False
        adapter.take_rtcp(sender, self._on_rtcp)
        producer.consumers.append(self)

    def source_restarted(self) -> None:
        """The source's numbering jumped: re-anchor so our output stays continuous."""
        self._synced = False

    async def forward(self, packet: RtpPacket, seq: int, timestamp: int) -> None:
        """Rewrite ``packet`` for this subscriber and send it."""
        transport = self._transport
        if transport is None:
            transport = adapter.sender_transport(self._sender)
            if transport.state != "connected":
                return
            self._transport = transport
            self._synced = False
            await self.producer.request_keyframe()
        elif transport.state != "connected":
            return
        if self.paused:
            return
        if not self._synced:
            # Continue our own numbering where it stopped; the timestamp advances by the
            # wall-clock time that passed, so players see a pause, not a jump.
            gap = max(1, int((time.monotonic() - self._last_sent_at) * self._clock_rate))
            self._seq_delta = (self._last_seq + 1 - seq) & 0xFFFF
            self._ts_delta = (self._last_ts + gap - timestamp) & 0xFFFFFFFF
            self._synced = True
        out_seq = (seq + self._seq_delta) & 0xFFFF
        out_ts = (timestamp + self._ts_delta) & 0xFFFFFFFF
        packet.ssrc = self._ssrc
        packet.payload_type = self.payload_type
        packet.sequence_number = out_seq
        packet.timestamp = out_ts
        packet.extensions.mid = self.mid
        data = packet.serialize(adapter.extensions_map(transport))
        slot = out_seq % CACHE_SIZE
        self._cache[slot] = data
        self._cache_seq[slot] = out_seq
        if ((out_seq - self._last_seq) & 0xFFFF) < 0x8000:
            self._last_seq = out_seq
            self._last_ts = out_ts
            self._last_sent_at = time.monotonic()
        try:
            await adapter.send_rtp(transport, data)
        except ConnectionError:
            return
        self.packets_out += 1
        self._stats.forwarded_packets += 1
        self._stats.forwarded_bytes += len(data)
        adapter.note_sent(self._sender, current_ntp_time(), out_ts, len(packet.payload))

    async def _on_rtcp(self, packet: Any) -> None:
        if self._closed:
            return
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            await self.producer.request_keyframe()
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self._stats.nacks_received += 1
            transport = self._transport
            if transport is None:
                return
            for seq in packet.lost:
                slot = seq % CACHE_SIZE
                data = self._cache[slot]
                if data is not None and self._cache_seq[slot] == seq:
                    self._stats.retransmitted_packets += 1
                    try:
                        await adapter.send_rtp(transport, data)
                    except ConnectionError:
                        return

    def close(self) -> None:
        """Detach from the producer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self in self.producer.consumers:
            self.producer.consumers.remove(self)
        self._cache = [None] * CACHE_SIZE
        if self._on_close is not None:
            self._on_close(self)
