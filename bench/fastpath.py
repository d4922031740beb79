"""The load generators' packet path: send pre-packetized RTP by hand, count RTP undecrypted.

aiortc is used only to negotiate (ICE + DTLS-SRTP). After that:

- **Sending** (``OutStream``, ``Pacer``): the publish transceivers hold an idle track,
  so aiortc never sends media. One ``Pacer`` task per process sends every publisher's
  due frames — video spread out like a browser's pacer (libwebrtc sends at 2.5 times
  the target bitrate, ``kDefaultPaceMultiplier``) unless pacing is off, then a whole
  frame back to back; audio at once, as browsers do. Per packet one RTP header
  (``sfu.packet.write``: the sender's SSRC, the negotiated payload type, sequence
  number, timestamp, marker, MID and abs-send-time or audio-level extensions), the
  transport's real SRTP ``protect`` and a direct ``sendto``
  (``sfu.aiortc_adapter.egress``) — the same work as the SFU's fast path.
- **Simulcast** (``LayerWire``, ``bench.simulcast``): a layered publisher's video is
  one ``OutStream`` per layer, each with its own SSRC and sequence numbers, the rid
  element beside the MID, and the layer's index in the low bits of abs-send-time.
- **Receiving** is ``bench.tap``: clear RTP headers counted at aioice's callback.

Window accounting is exact on both ends. Time is compared in abs-send-time units
(1/262144 s since 1900, unwrapped): a packet belongs to the window if its send stamp is
inside it. Video packets carry that stamp, so the subscriber classifies each packet the
way its publisher did. Audio has no stamp (aiortc negotiates abs-send-time for video
only), so the publisher sets the RTP marker bit on its first audio packet at or after
each window edge (the SFU forwards the marker untouched); a subscriber counts the
distinct sequence numbers from the first marked packet up to, not including, the second.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCRtpSender

from sfu import aiortc_adapter as adapter
from sfu import packet as rtp

from .packetized import PacketizedStream

NTP_UNIX_OFFSET = 2208988800
UNITS = 1 << 18  # abs-send-time: 6.18 fixed-point seconds
MASK = 0xFFFFFF
BUCKET_S = 1e-5  # latency histograms: 10 µs buckets
MAX_CATCH_UP_S = 0.5  # a pacer further behind than this skips frames instead of bursting
PACE_MULTIPLIER = 2.5  # libwebrtc's pacing rate over the target bitrate (kDefaultPaceMultiplier)
# Paced packets due this soon go out together: libwebrtc's pacer sends in bursts at most
# this often (kDefaultMinPacketLimit, 5 ms), and fewer wake-ups keep the generators cheap.
PACE_SLACK_S = 0.005
# With simulcast, a video packet's abs-send-time is moved back (never forward) to the
# nearest unit whose low bits are its layer's index: <= 3 units (11.4 us) of latency.
LAYER_MASK = 3


def abs_units(unix: float) -> int:
    """Unix time as unwrapped abs-send-time units (what the 24-bit stamp is the low part of)."""
    return int((unix + NTP_UNIX_OFFSET) * UNITS)


@dataclass(frozen=True, slots=True)
class Window:
    """The measuring window in abs-send-time units, [start, end), and as unix seconds."""

    start: int
    end: int
    start_s: float
    end_s: float

    @classmethod
    def from_unix(cls, start: float, end: float) -> Window:
        """The window ``[start, end)`` given in unix seconds."""
        return cls(abs_units(start), abs_units(end), start, end)


class Histogram:
    """Counts of values in fixed buckets; cheap to add to, small to ship, exact to merge."""

    __slots__ = ("bucket", "counts")

    def __init__(self, bucket: float = BUCKET_S) -> None:
        self.bucket = bucket
        self.counts: dict[int, int] = {}

    def add(self, value: float) -> None:
        """Count one value (seconds)."""
        b = int(value / self.bucket)
        self.counts[b] = self.counts.get(b, 0) + 1

    def to_json(self) -> list[list[int]]:
        """``[[bucket, count], ...]``."""
        return [[b, c] for b, c in sorted(self.counts.items())]


def merge_histograms(parts: list[list[list[int]]]) -> dict[int, int]:
    """Sum ``to_json`` outputs."""
    total: dict[int, int] = {}
    for part in parts:
        for b, c in part:
            total[b] = total.get(b, 0) + c
    return total


def histogram_summary(counts: dict[int, int], bucket: float = BUCKET_S) -> dict[str, Any]:
    """p50/p90/p99/max in milliseconds (bucket upper edges, nearest rank) and the count."""
    samples = sum(counts.values())
    if not samples:
        return {"p50": None, "p90": None, "p99": None, "max": None, "samples": 0}
    keys = sorted(counts)
    out: dict[str, Any] = {}
    for name, fraction in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        rank = max(1, int(fraction * samples + 0.999999))
        seen = 0
        for k in keys:
            seen += counts[k]
            if seen >= rank:
                out[name] = round((k + 1) * bucket * 1000, 3)
                break
    out["max"] = round((keys[-1] + 1) * bucket * 1000, 3)
    out["samples"] = samples
    return out


# -- sending -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerWire:
    """How one simulcast layer of a video goes on the wire (``bench.simulcast``)."""

    index: int  # 0 = lowest; also written into abs-send-time's low bits
    rid: str
    ssrc: int  # its own (the SFU learns it from the rid)
    rid_id: int  # the negotiated RTP stream id extension
    ts0: int  # RTP timestamp origin, shared by a publisher's layers
    reports: bool  # the aiortc sender's own SSRC: keep its RTCP sender reports truthful


class OutStream:
    """One published track, sent by hand: real headers, real SRTP, pre-made payloads."""

    def __init__(
        self,
        media: PacketizedStream,
        egress: adapter.Egress,
        sender: RTCRtpSender,
        payload_type: int,
        extension_ids: dict[str, int],
        mid: str,
        publisher_id: str,
        audio_level: int = 90,
        pacing: bool = True,
        layer: LayerWire | None = None,
    ) -> None:
        self.kind = media.kind
        self.publisher_id = publisher_id
        self.period = media.period_s
        self.closed = False
        self.paused = False  # a simulcast layer the SFU asked not to send (``layers``)
        self.rid = layer.rid if layer is not None else ""
        self.window: Window | None = None
        self.packets = 0
        self.octets = 0
        self.in_window = 0
        self._frames = media.frames
        self._ticks = media.frame_ticks
        self._egress = egress
        self._sender = sender
        self._ssrc: int = sender._ssrc
        self._pt = payload_type
        self._seq = random.randint(0, 0xFFFF)
        self._ts0 = random.randint(0, 0xFFFFFFFF)
        self._count = 0
        self._marked_start = False  # audio: the marker went on the window's first packet
        self._marked_end = False  # ... and on the first packet after it
        self._mid_block = rtp.mid_element(extension_ids.get(rtp.URI_MID), mid)
        self._tag = -1  # simulcast: the layer index carried in abs-send-time's low bits
        self._reports = True
        if layer is not None:
            self._ssrc, self._ts0, self._tag = layer.ssrc, layer.ts0, layer.index
            self._reports = layer.reports
            mid_id = extension_ids.get(rtp.URI_MID)
            items = [(mid_id, mid.encode())] if mid_id else []
            self._mid_block = rtp.one_byte_block([*items, (layer.rid_id, layer.rid.encode())])
        abs_id = extension_ids.get(rtp.URI_ABS_SEND_TIME) if self.kind == "video" else None
        self._abs_head = ((abs_id << 4) | 2) if abs_id else 0
        level_id = extension_ids.get(rtp.URI_AUDIO_LEVEL) if self.kind == "audio" else None
        # RFC 6464: V bit + level in -dBov (0 loudest); constant, so built once.
        self._level_block = (
            rtp.one_byte_block([(level_id, bytes([0x80 | audio_level]))]) if level_id else b""
        )
        # Video pacing: bytes per second of payload this stream may send (0: unpaced),
        # and what waits: (payload, marker, RTP timestamp).
        self._pace_rate = (
            PACE_MULTIPLIER * media.payload_kbps * 1000 / 8
            if pacing and self.kind == "video"
            else 0
        )
        self._queue: deque[tuple[bytes, int, int]] = deque()
        self._next_send = 0.0
        self.paced_pending = False  # the Pacer holds an event for this stream's queue

    def send_frame(self) -> float | None:
        """Send the next frame, or with pacing queue it; returns when a queued packet is due."""
        payloads = self._frames[self._count % len(self._frames)]
        timestamp = (self._ts0 + self._count * self._ticks) & 0xFFFFFFFF
        self._count += 1
        if self.paused:
            return None  # the clip and the clock run on; nothing is sent
        if not self._pace_rate:
            last = len(payloads) - 1
            self._send([(p, int(i == last), timestamp) for i, p in enumerate(payloads)])
            return None
        last = len(payloads) - 1
        self._queue.extend((p, int(i == last), timestamp) for i, p in enumerate(payloads))
        # No credit for idle time (libwebrtc's media budget does not build up either).
        self._next_send = max(self._next_send, time.monotonic())
        return self._next_send

    def send_due(self, now: float) -> float | None:
        """Send the queued packets due by ``now``; returns when the next one is due."""
        due: list[tuple[bytes, int, int]] = []
        queue = self._queue
        limit = now + PACE_SLACK_S
        while queue and self._next_send <= limit:
            item = queue.popleft()
            due.append(item)
            self._next_send += len(item[0]) / self._pace_rate
        if due:
            self._send(due)
        return self._next_send if queue else None

    def _send(self, packets: list[tuple[bytes, int, int]]) -> None:
        """Stamp, protect and send packets back to back (video marker given, audio's set here)."""
        protect, sendto, address = self._egress.protect, self._egress.sendto, self._egress.address
        window = self.window
        video = self.kind == "video"
        seq = self._seq
        octets = 0
        timestamp = 0
        tag = self._tag
        for payload, frame_end, timestamp in packets:
            now = time.time()
            units = int((now + NTP_UNIX_OFFSET) * UNITS)
            if tag >= 0:
                units -= (units - tag) & LAYER_MASK
            if video:
                marker = frame_end
                head = self._abs_head
                shared = (
                    bytes((head, (units >> 16) & 0xFF, (units >> 8) & 0xFF, units & 0xFF))
                    if head
                    else b""
                )
            else:
                marker = 0
                shared = self._level_block
                if window is not None and not self._marked_end:
                    if not self._marked_start:
                        if units >= window.start:
                            marker, self._marked_start = 1, True
                    elif units >= window.end:
                        marker, self._marked_end = 1, True
            if window is not None and window.start <= units < window.end:
                self.in_window += 1
            data = rtp.write(
                0, marker, self._pt, seq, timestamp, self._ssrc, self._mid_block, shared, payload
            )
            sendto(protect(data), address)
            seq = (seq + 1) & 0xFFFF
            octets += len(payload)
        self._seq = seq
        self.packets += len(packets)
        self.octets += octets
        if self._reports:
            # Keep the RTCP sender reports aiortc sends for this (idle) sender truthful.
            ntp = int((time.time() + NTP_UNIX_OFFSET) * (1 << 32))
            adapter.set_sender_report(self._sender, ntp, timestamp, self.packets, self.octets)


@dataclass
class Pacer:
    """The one timer task of a generator process: sends every stream's frames when due."""

    lag: Histogram = field(default_factory=lambda: Histogram(1e-4))
    skipped_frames: int = 0
    frames_sent: int = 0
    failed: list[str] = field(default_factory=list)  # streams that stopped: why
    # (due, order, stream, paced packets rather than a frame)
    _heap: list[tuple[float, int, OutStream, bool]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, stream: OutStream, phase: float | None = None) -> None:
        """Start sending ``stream`` at ``phase`` (0-1) of its frame period (None: random;
        a publisher's simulcast layers share one: they are one camera's frames)."""
        due = time.monotonic() + (random.random() if phase is None else phase) * stream.period
        heapq.heappush(self._heap, (due, next(self._order), stream, False))
        self._wake.set()

    def _paced(self, stream: OutStream, due: float | None) -> None:
        """Keep one event for a stream's queued packets while it has any."""
        if due is None:
            stream.paced_pending = False
        else:
            stream.paced_pending = True
            heapq.heappush(self._heap, (due, next(self._order), stream, True))

    async def run(self) -> None:
        """Send due frames until cancelled."""
        heap = self._heap
        while True:
            if not heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            due = heap[0][0]
            if due > now:
                await asyncio.sleep(due - now)
                continue
            while heap and heap[0][0] <= now:
                due, order, stream, packets = heapq.heappop(heap)
                if stream.closed:
                    continue
                if packets:
                    try:
                        self._paced(stream, stream.send_due(now))
                    except Exception as exc:
                        stream.closed = True
                        self.failed.append(f"{stream.publisher_id}:{stream.kind}: {exc!r}")
                    continue
                late = now - due
                if late > MAX_CATCH_UP_S:  # too far behind: skip, do not burst
                    self.skipped_frames += int(late / stream.period)
                    due = now
                    late = 0.0
                self.lag.add(late)
                try:
                    queued = stream.send_frame()
                except Exception as exc:  # e.g. its connection closed: stop only this stream
                    stream.closed = True
                    self.failed.append(f"{stream.publisher_id}:{stream.kind}: {exc!r}")
                    continue
                if queued is not None and not stream.paced_pending:
                    self._paced(stream, queued)
                self.frames_sent += 1
                heapq.heappush(heap, (due + stream.period, order, stream, False))
