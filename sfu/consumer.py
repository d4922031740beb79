"""A subscription: one subscriber's copy of a track, sent on one send-only transceiver.

The consumer rewrites each packet's fixed header (its own payload type, SSRC and a
continuous numbering), protects it and sends it. On a simulcast track it takes one
layer at a time: ``switch_to`` registers it with the wanted layer, which lets it in
(``enter``) at that layer's next keyframe, so the subscriber's decoder never gets a
picture it cannot decode; sequence numbers, timestamps and the VP8 picture numbers
continue across the switch as one stream. ``pad`` sends copies of what it already sent
so the subscriber's bandwidth estimate can rise to a higher layer.

A switch down waits for the smaller layer's keyframe, a few hundred ms on a link that
is already losing packets: long enough for the subscriber's video to freeze. So a
consumer can *shed* temporal layers at once (``shed``): with ``L1T3`` the base layer's
pictures, every fourth, carry ~40 % of the bitrate and need no other picture, so the
subscriber sees a lower frame rate instead of a freeze until the switch. Pictures are
dropped whole and the sequence numbers and VP8 picture ids close up behind them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    unpack_remb_fci,
)

from . import aiortc_adapter as adapter
from . import packet as rtp
from . import vp8
from .forwarder import QUEUE_LIMIT_BYTES, STALE_AFTER, SUBSCRIBER_EXTENSION_IDS, Source
from .forwarder import anchor as anchor_stream
from .pacer import Pacer
from .stats import ForwardingStats
from .stream import Stream

ABS_ID = SUBSCRIBER_EXTENSION_IDS[rtp.URI_ABS_SEND_TIME]
PAD_PACKETS_MAX = 64  # copies one ``pad`` call may send
ALL_TEMPORAL = 3  # a temporal-layer limit that lets every picture through
BASE_TEMPORAL = 1  # ... that lets only the base layer's (TID 0) through
EPOCHS_MAX = 64  # sequence-number offsets kept for NACKs while pictures are dropped
LOSS_WINDOW_S = 0.5  # NACKed packets are counted over this window ...
LOSS_BURST = 8  # ... and this many, an eighth of what was sent in it, mean congestion
KEYFRAME_RETRY_S = 1.0  # a keyframe waited for this long is asked for again

EstimateCallback = Callable[[int], None]
LossCallback = Callable[[], bool]  # True: shed (False: the loss was the probe's)
# Where an m-line's numbering stands: (sequence number, timestamp, when last sent, RTX
# sequence number), handed from a closed consumer to the next one on the same m-line.
Numbering = tuple[int, int, float, int]


def remb_of(packet: RtcpPsfbPacket) -> tuple[int, frozenset[int]]:
    """``(bitrate, SSRCs)`` of a REMB, unpacked once: aiortc hands the same packet object
    to every sender it names (N consumers of a connection receiving N videos)."""
    cached: tuple[int, frozenset[int]] | None = packet.__dict__.get("_pulseroom_remb")
    if cached is None:
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
            cached = (bitrate, frozenset(ssrcs))
        except ValueError:
            cached = (0, frozenset())
        packet.__dict__["_pulseroom_remb"] = cached
    return cached


class Consumer:
    """One subscriber's copy of a producer, sent on one send-only transceiver."""

    def __init__(
        self,
        producer: Source,
        subscriber_id: str,
        transceiver: RTCRtpTransceiver,
        payload_type: int,
        stats: ForwardingStats,
        layer: int = 0,
        on_estimate: EstimateCallback | None = None,
        follows: Numbering | None = None,
        on_loss: LossCallback | None = None,
        pacer: Pacer | None = None,
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
        self.preferred = 0  # the layer its tile's size and the viewer's cap call for
        self.stream: Stream | None = None  # the layer it is fed from
        self.target: Stream | None = None  # the layer it waits to switch to
        self.congested_at = 0.0  # when its queue last overflowed (monotonic)
        self._keyframe_asked_at = 0.0  # when it last asked for the keyframe it waits for
        self._on_estimate = on_estimate
        self._on_loss = on_loss
        self._pacer = pacer  # the subscriber's (None: sent as forwarded)
        self._loss_window = (0.0, 0, 0)  # (since, packets_out then, packets NACKed since)
        self._sender: RTCRtpSender = transceiver.sender
        self._ssrc: int = self._sender._ssrc
        self._transport: RTCDtlsTransport = self._sender.transport
        self._egress: adapter.Egress | None = None
        mid_id = adapter.extension_ids(transceiver).get(rtp.URI_MID)
        self._own_block = rtp.mid_element(mid_id, self.mid)
        self._stats = stats
        self._seq_delta = 0
        self._ts_delta = 0
        self._picture_delta = 0  # VP8 picture id and TL0PICIDX offsets since a switch
        self._tl0_delta = 0
        self._last_seq = random.randint(0, 0xFFFF)
        self._last_ts = random.randint(0, 0xFFFFFFFF)
        self._first_seq = self._last_seq  # the first sequence number since re-anchoring
        self._last_sent_at = time.monotonic()
        self._clock_rate = producer.codec.clock_rate if producer.codec else 90000
        # A new layer's keyframe is often the same camera frame as the old layer's last
        # picture, and arrives a few ms after it: a frame's time apart, the player shows
        # both in turn instead of dropping one.
        self._min_gap = self._clock_rate // 30 if producer.kind == "video" else 1
        self._synced = False
        self._congested = False
        self._closed = False
        # Temporal layers sent: pictures with a temporal index below ``_tid_limit``; the
        # limit moves to ``_tid_wanted`` at a picture's start (up only at a keyframe).
        self._tid_limit = self._tid_wanted = ALL_TEMPORAL
        self._shedding = False  # either is below ALL_TEMPORAL: the per-packet check is on
        self._dropped_pid = -1  # the picture being dropped
        self._newest_src = -1  # newest source sequence number seen while shedding
        # Offsets since the anchor, as (first out seq, seq offset, picture-id offset):
        # each dropped packet moves them, and a NACK must find those of its packet.
        self._epochs: list[tuple[int, int, int]] = []
        # Retransmissions go on the RTX stream when the subscriber negotiated one.
        self._rtx = adapter.negotiated_rtx(transceiver)
        self._rtx_seq = random.randint(0, 0xFFFF)
        if follows is not None:
            # A reused m-line: the subscriber's receiver for it carries on from here.
            self._last_seq, self._last_ts, self._last_sent_at, self._rtx_seq = follows
        adapter.take_rtcp(self._sender, self._on_rtcp)
        self._unwatch = adapter.on_state_change(self._transport, self._on_state)
        producer.consumers.append(self)
        if producer.layered:
            self.switch_to(producer.streams[min(layer, len(producer.streams) - 1)])
        else:
            self.stream = producer.streams[0]  # its consumer list is the producer's
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
            self._want_keyframe()
        changed = value != self._paused
        self._paused = value
        if changed:
            self.producer.showing_changed()

    @property
    def layer(self) -> int:
        """The layer it is sent now (-1 before its first keyframe)."""
        return self.stream.index if self.stream is not None else -1

    @property
    def wanted(self) -> int:
        """The layer it is sent, or is switching to."""
        stream = self.target or self.stream
        return stream.index if stream is not None else -1

    @property
    def shedding(self) -> bool:
        """Whether only the base temporal layer is sent, or is about to be."""
        return self._shedding

    def shed(self) -> None:
        """Send only the base temporal layer's pictures, from the next picture on, until
        the next switch of layer (or ``unshed``)."""
        if self.producer.layered and not self._closed:
            if not self._shedding:
                self._newest_src = -1  # from an earlier shedding: long out of date
            self._tid_wanted = BASE_TEMPORAL
            self._shedding = True

    def unshed(self) -> None:
        """Send every temporal layer again, from the layer's next keyframe (asked for):
        a picture of an upper layer may refer to pictures this subscriber did not get."""
        if self._tid_wanted != ALL_TEMPORAL:
            self._tid_wanted = ALL_TEMPORAL
            if self._tid_limit != ALL_TEMPORAL:
                self._want_keyframe()
                self._keyframe_asked_at = time.monotonic()
            else:
                self._shedding = False

    def _want_keyframe(self) -> None:
        stream = self.target or self.stream
        if stream is not None:
            stream.keyframe_wanted = True

    def switch_to(self, stream: Stream) -> None:
        """Take ``stream`` from its next keyframe on (asked for at once)."""
        if self._closed:
            return
        if self.target is not None and self.target is not stream:
            if self in self.target.joining:
                self.target.joining.remove(self)
            self.target = None
        if stream is self.stream or stream is self.target:
            return
        self.target = stream
        stream.joining.append(self)
        stream.want_keyframe()
        self._keyframe_asked_at = time.monotonic()

    def nudge(self, now: float) -> None:
        """Ask again for a keyframe waited for KEYFRAME_RETRY_S in vain (a switch, or every
        temporal layer back): a request can be lost, and a browser ignores one that comes
        within its own interval (libwebrtc: 300 ms per sender, all layers together)."""
        if now - self._keyframe_asked_at < KEYFRAME_RETRY_S:
            return
        if self.target is not None:
            self.target.want_keyframe()
        elif self._tid_wanted == ALL_TEMPORAL and self._tid_limit != ALL_TEMPORAL:
            self._want_keyframe()
        else:
            return
        self._keyframe_asked_at = now

    def enter(self, stream: Stream) -> None:
        """Called by ``stream`` at its keyframe: from this packet on, this is our layer."""
        old = self.stream
        if old is not None:
            if self in old.consumers:
                old.consumers.remove(self)
            # Continue the VP8 numbering from the last picture sent of the old layer.
            if old.picture_id >= 0 and stream.picture_id >= 0:
                last = old.picture_id + self._picture_delta
                self._picture_delta = (last + 1 - stream.picture_id) & 0x7FFF
            if old.tl0 >= 0 and stream.tl0 >= 0:
                self._tl0_delta = (old.tl0 + self._tl0_delta + 1 - stream.tl0) & 0xFF
            self._stats.layer_switches += 1
        self.stream = stream
        self.target = None
        stream.consumers.append(self)
        self._synced = False
        # A keyframe starts the new layer: every picture after it can be decoded.
        self._tid_limit = self._tid_wanted = ALL_TEMPORAL
        self._shedding = False

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
            self._want_keyframe()
        if self._paused:
            return 0
        if self._shedding and self._drops(seq):
            return 0
        if not self._synced:
            self._seq_delta, self._ts_delta = anchor_stream(
                self._last_seq, self._last_ts, time.monotonic() - self._last_sent_at,
                self._clock_rate, seq, timestamp, self._min_gap,
            )  # fmt: skip
            self._first_seq = (seq + self._seq_delta) & 0xFFFF
            self._epochs.clear()
            self._synced = True
        out_seq = (seq + self._seq_delta) & 0xFFFF
        if STALE_AFTER <= (self._last_seq - out_seq) & 0xFFFF < 0x8000:
            # Far behind what this subscriber already has (a retransmission of a packet
            # from before a pause or a re-anchoring): no use to its jitter buffer, and
            # SRTP would refuse it (aiortc's replay window is 1,024 packets).
            self._stats.stale_packets += 1
            return 0
        out_ts = (timestamp + self._ts_delta) & 0xFFFFFFFF
        pacer = self._pacer
        if egress.backlog() > QUEUE_LIMIT_BYTES:
            # This subscriber cannot keep up: drop from its own queue only, and ask for
            # a keyframe once it drains so its picture recovers.
            self._stats.dropped_packets += 1
            self._congested = True
            self.congested_at = time.monotonic()
            return 0
        if self._congested:
            # Number on without a gap: what was dropped is gone for good, and a gap would
            # only bring NACKs for it. The keyframe restarts the picture.
            self._congested = False
            self._synced = False
            self._want_keyframe()
        body: memoryview | bytes = payload
        if self._picture_delta or self._tl0_delta:
            body = self._renumbered(payload, self._picture_delta)
        data = rtp.write(
            padding, marker, self.payload_type, out_seq, out_ts, self._ssrc,
            self._own_block, shared, body,
        )  # fmt: skip
        if pacer is None:
            egress.sendto(egress.protect(data), egress.address)
        else:
            pacer.send(egress, egress.protect(data))
        if (out_seq - self._last_seq) & 0xFFFF < 0x8000:
            self._last_seq = out_seq
            self._last_ts = out_ts
            self._last_sent_at = time.monotonic()
        self.packets_out += 1
        self.octets_out += len(payload)
        return len(data)

    def _drops(self, seq: int) -> bool:
        """While shedding: whether the stream's newest packet (``seq``) is not sent. Its
        picture is dropped whole, and the numbering closes up behind it."""
        stream = self.stream
        if stream is None:
            return False
        if stream.starts_frame and (self._tid_wanted < self._tid_limit or stream.keyframe):
            self._tid_limit = self._tid_wanted
            if self._tid_limit == ALL_TEMPORAL:
                self._shedding = False
                return False
        newest = self._newest_src
        if newest >= 0 and (seq - newest) & 0xFFFF >= 0x8000:
            # A late packet (a retransmission from the publisher): the offset may have
            # moved since its neighbours were sent, so its number could be another's.
            return True
        self._newest_src = seq
        if stream.tid < self._tid_limit:
            return False
        self._stats.shed_packets += 1
        picture_delta = self._picture_delta
        if stream.picture_id != self._dropped_pid:
            self._dropped_pid = stream.picture_id
            self._picture_delta = (self._picture_delta - 1) & 0x7FFF
        if self._synced:
            self._close_up(seq, picture_delta)
        return True

    def _close_up(self, seq: int, picture_delta: int) -> None:
        """Number on without the dropped packet ``seq``; ``picture_delta`` was the
        picture-id offset of the packets sent before it."""
        if not self._epochs:
            self._epochs.append((self._first_seq, self._seq_delta, picture_delta))
        self._seq_delta = (self._seq_delta - 1) & 0xFFFF
        epoch = ((seq + 1 + self._seq_delta) & 0xFFFF, self._seq_delta, self._picture_delta)
        if self._epochs[-1][0] == epoch[0]:
            self._epochs[-1] = epoch  # no packet was sent since the last drop
        else:
            self._epochs.append(epoch)
            if len(self._epochs) > EPOCHS_MAX:
                del self._epochs[0]
                self._first_seq = self._epochs[0][0]

    def _source_of(self, out_seq: int) -> tuple[int, int]:
        """``(source sequence number, picture-id offset)`` of the packet sent as
        ``out_seq`` (-1: not one this consumer can name)."""
        if (out_seq - self._first_seq) & 0xFFFF >= 0x8000:
            return -1, 0  # from before a switch or re-anchoring: another numbering
        if (self._last_seq - out_seq) & 0xFFFF >= 0x8000:
            return -1, 0  # not sent yet
        delta, picture_delta = self._seq_delta, self._picture_delta
        for first, offset, picture_offset in reversed(self._epochs):
            if (out_seq - first) & 0xFFFF < 0x8000:
                delta, picture_delta = offset, picture_offset
                break
        return (out_seq - delta) & 0xFFFF, picture_delta

    def _renumbered(self, payload: memoryview, picture_delta: int) -> memoryview | bytes:
        try:
            return vp8.rewrite(payload, picture_delta, self._tl0_delta)
        except IndexError:
            return payload  # too short for its own descriptor: sent as it came

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
                stream = self.target or self.stream
                if stream is not None:
                    stream.want_keyframe()
            elif packet.fmt == RTCP_PSFB_APP:
                bitrate, ssrcs = remb_of(packet)
                if self._ssrc in ssrcs:
                    self.remb = bitrate
                    if self._on_estimate is not None:
                        self._on_estimate(bitrate)
                    await self.producer.send_remb()
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self._stats.nacks_received += 1
            self._stats.nacked_packets += len(packet.lost)
            # Only what was sent counts as lost on the way down (a hole the publisher's
            # loss left is not this link's).
            resent = sum(1 for out_seq in packet.lost if self._retransmit(out_seq))
            if resent:
                self._count_loss(resent)
        elif isinstance(packet, RtcpRrPacket):
            for report in packet.reports:
                if report.ssrc == self._ssrc:
                    self.fraction_lost = report.fraction_lost
                    self.jitter = report.jitter

    def _count_loss(self, lost: int) -> None:
        """A burst of NACKs is congestion, shown a round trip after the loss: shed
        temporal layers at once and tell the layer control (the REMB falls later)."""
        now = time.monotonic()
        since, sent_then, nacked = self._loss_window
        if now - since > LOSS_WINDOW_S:
            since, sent_then, nacked = now, self.packets_out, 0
        nacked += lost
        self._loss_window = (since, sent_then, nacked)
        sent = self.packets_out - sent_then
        if nacked >= LOSS_BURST and nacked * 8 >= sent and self.producer.layered:
            self._loss_window = (now, self.packets_out, 0)
            if self._on_loss is None or self._on_loss():
                self.shed()

    def _retransmit(self, out_seq: int) -> int:
        """Send ``out_seq`` again from the layer's cache; returns bytes sent (0: not had)."""
        egress = self._egress
        stream = self.stream
        if egress is None or stream is None or not self._synced:
            return 0
        seq, picture_delta = self._source_of(out_seq)
        source = stream.cached(seq) if seq >= 0 else None
        if source is None:
            return 0
        padding, marker, timestamp, shared, payload = source
        out_ts = (timestamp + self._ts_delta) & 0xFFFFFFFF
        shared = rtp.restamp(shared, ABS_ID, time.monotonic() - stream.last_packet_at)
        body: memoryview | bytes = payload
        if picture_delta or self._tl0_delta:
            body = self._renumbered(payload, picture_delta)
        if self._rtx is not None:
            # RFC 4588: the original sequence number leads the payload on the RTX stream.
            rtx_pt, rtx_ssrc = self._rtx
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            data = rtp.write(
                padding, marker, rtx_pt, self._rtx_seq, out_ts, rtx_ssrc,
                self._own_block, shared, out_seq.to_bytes(2, "big") + bytes(body),
            )  # fmt: skip
        else:
            data = rtp.write(
                padding, marker, self.payload_type, out_seq, out_ts, self._ssrc,
                self._own_block, shared, body,
            )  # fmt: skip
        if self._pacer is None:
            egress.sendto(egress.protect(data), egress.address)
        else:
            self._pacer.send(egress, egress.protect(data))
        self._stats.retransmitted_packets += 1
        return len(data)

    def pad(self, octets: int) -> int:
        """Send about ``octets`` bytes of padding: RTX copies of the newest packets already
        sent (a duplicate the subscriber discards, but its bandwidth estimator counts).
        Returns the bytes sent; nothing without RTX, while paused or before the first packet."""
        stream = self.stream
        if (
            self._rtx is None
            or self._paused
            or self._shedding
            or stream is None
            or stream.newest_seq < 0
        ):
            return 0
        sent = packets = 0
        seq = stream.newest_seq
        while sent < octets and packets < PAD_PACKETS_MAX:
            size = self._retransmit((seq + self._seq_delta) & 0xFFFF)
            if not size:
                break
            sent += size
            packets += 1
            seq = (seq - 1) & 0xFFFF
        self._stats.retransmitted_packets -= packets  # counted as probes, not repairs
        self._stats.probe_packets += packets
        self._stats.probe_bytes += sent
        return sent

    def numbering(self) -> Numbering:
        """Where this consumer's outgoing numbering stands (for the m-line's next track)."""
        return self._last_seq, self._last_ts, self._last_sent_at, self._rtx_seq

    def close(self) -> None:
        """Detach from the producer, its layers and aiortc's sender and transport
        (idempotent): nothing keeps a closed consumer alive."""
        if self._closed:
            return
        self._closed = True
        self._egress = None
        adapter.take_rtcp(self._sender, None)
        self._unwatch()
        for stream in (self.stream, self.target):
            if stream is not None:
                if self in stream.joining:
                    stream.joining.remove(self)
                if self in stream.consumers:
                    stream.consumers.remove(self)
        self.stream = self.target = None
        if self in self.producer.consumers:
            self.producer.consumers.remove(self)
            self.producer.showing_changed()
