"""The load generators' receive path: count a subscribe connection's RTP undecrypted.

SRTP leaves the RTP header and its extensions in the clear, so ``ReceiveTap`` sits on
aioice's datagram callback and reads sequence number, SSRC, marker and abs-send-time
straight from the encrypted datagram; it never decrypts, never queues, never wakes
aiortc. Everything else (STUN, DTLS, RTCP) goes on to aiortc.

Window accounting (see ``bench.fastpath``): a video packet belongs to the window if
its abs-send-time stamp is inside it; audio is bounded by the markers its publisher set
at the window's edges. With simulcast (``bench.simulcast``) the publisher writes the
layer's index into the two lowest bits of each video packet's stamp (the SFU forwards
the stamp unchanged), so a subscriber knows which layer every packet was sent as,
though the SFU gives all of them one SSRC; and since the SFU numbers a subscription's
packets without a gap across layer switches, a layered video's loss is the holes in the
sequence numbers it got inside the window (``span``).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sfu import packet as rtp

from .fastpath import MASK, NTP_UNIX_OFFSET, UNITS, Histogram, Window

# Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS): the kernel stamps each datagram as it
# reaches the socket (not in Python's socket module).
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")
MAX_DATAGRAM = 2048
DRAIN_LIMIT = 64  # datagrams read per wake-up of a subscriber's socket
LAYER_BITS = 3  # abs-send-time units whose value is the simulcast layer (bench.simulcast)
_FIXED = struct.Struct("!BBHII")
_EXT_HEAD = struct.Struct("!HH")


def sequence_span(seqs: set[int]) -> int:
    """How many sequence numbers (16-bit, wrapping) run from the first of ``seqs`` to the
    last: the largest hole between neighbours (around the circle) is outside the run."""
    if not seqs:
        return 0
    ordered = sorted(seqs)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    gaps.append(ordered[0] + 0x10000 - ordered[-1])
    return 0x10000 - max(gaps) + 1


@dataclass(slots=True)
class InStream:
    """What one subscribed m-line delivered, counted from clear RTP headers."""

    mid: str
    kind: str
    publisher_id: str
    direction: str
    abs_id: int
    layered: bool = False  # video of a simulcast publisher: stamps carry the layer
    seen: int = 0
    duplicates: int = 0
    unstamped: int = 0
    seqs: set[int] = field(default_factory=set)  # video: stamped inside the window
    audio_seqs: set[int] = field(default_factory=set)  # audio: every seq once the window is set
    arrived_in_window: set[int] = field(default_factory=set)  # audio fallback
    markers: list[tuple[int, float]] = field(default_factory=list)  # audio: (seq, arrival)
    layer_packets: list[int] = field(default_factory=lambda: [0] * (LAYER_BITS + 1))
    last_layer: int = -1  # layered: the layer of the newest packet inside the window

    def received_in_window(self) -> tuple[int, str]:
        """Distinct packets sent inside the window that arrived, and how that was decided."""
        if self.kind == "video":
            return len(self.seqs), "sequence-span" if self.layered else "abs-send-time"
        if len(self.markers) >= 2:
            m0, m1 = self.markers[0][0], self.markers[1][0]
            span = (m1 - m0) & 0xFFFF
            return sum(1 for s in self.audio_seqs if (s - m0) & 0xFFFF < span), "markers"
        return len(self.arrived_in_window), "arrival"

    def expected_in_window(self) -> int | None:
        """Layered video: the packets the SFU numbered inside the window (None otherwise:
        the publisher's own count is the reference)."""
        return sequence_span(self.seqs) if self.layered else None


class ReceiveTap:
    """Counts a subscribe connection's RTP at aioice's datagram callback, undecrypted."""

    def __init__(self, histograms: dict[str, Histogram], receive_delay: Histogram) -> None:
        self.by_ssrc: dict[int, InStream] = {}
        # Arrival is the kernel's stamp when it can be had: latency is then what the
        # server and the network added, not how late this generator's own loop read the
        # socket; that lateness is counted apart, in ``receive_delay``.
        self.receive_delay = receive_delay
        self.kernel_stamped = 0
        self._arrival: float | None = None
        self.rtx_ssrcs: set[int] = set()
        self.rtx_packets = 0
        self.unknown_packets = 0
        self.rtp_packets = 0
        self.octets = 0  # every RTP datagram's size (media, RTX and padding), for REMB
        self.window: Window | None = None
        self._histograms = histograms
        self._hooked: set[int] = set()

    def attach(self, connection: Any) -> int:
        """Hook every UDP protocol of an aioice ``Connection`` (again: only new ones)."""
        hooked = 0
        for protocol in connection._protocols:
            if id(protocol) in self._hooked:
                continue
            self._hooked.add(id(protocol))
            protocol.datagram_received = self._hook(protocol.datagram_received)
            self._read_with_stamps(protocol)
            hooked += 1
        return hooked

    def _read_with_stamps(self, protocol: Any) -> None:
        """Read ``protocol``'s socket with ``recvmsg`` and the kernel's arrival stamps.

        Replaces asyncio's reader of the datagram transport (one datagram per call, like
        asyncio's own); left as it is wherever that cannot be done.
        """
        transport = getattr(protocol, "transport", None)
        sock = getattr(transport, "_sock", None)
        loop: Any = asyncio.get_running_loop()  # a selector loop's private reader API
        if sock is None or not hasattr(loop, "_add_reader"):
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            return
        space = socket.CMSG_SPACE(_TIMESPEC.size)

        def read() -> None:
            # Everything already queued, up to a bound: one event-loop turn per burst
            # instead of one per datagram (the stamps keep arrival times exact).
            for _ in range(DRAIN_LIMIT):
                try:
                    data, ancillary, _flags, addr = sock.recvmsg(MAX_DATAGRAM, space)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    protocol.error_received(exc)
                    return
                for level, kind, raw in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        seconds, nanoseconds = _TIMESPEC.unpack_from(raw)
                        self._arrival = seconds + nanoseconds * 1e-9
                try:
                    protocol.datagram_received(data, addr)
                finally:
                    self._arrival = None

        fd = sock.fileno()
        loop._remove_reader(fd)
        loop._add_reader(fd, read)

    def _hook(self, original: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        count = self.count

        def datagram_received(data: bytes, addr: Any) -> None:
            # RTP: version 2 (first byte 128-191) and not RTCP (second byte 192-208).
            if len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 209:
                count(data)
            else:
                original(data, addr)

        return datagram_received

    def count(self, data: bytes) -> None:
        """One SRTP packet: read its clear header, count it."""
        flags, marker_pt, seq, _timestamp, ssrc = _FIXED.unpack_from(data)
        stream = self.by_ssrc.get(ssrc)
        self.rtp_packets += 1
        self.octets += len(data)
        if stream is None:
            if ssrc in self.rtx_ssrcs:
                self.rtx_packets += 1
            else:
                self.unknown_packets += 1
            return
        stream.seen += 1
        window = self.window
        if window is None:
            return
        now = time.time()
        if self._arrival is not None:
            self.kernel_stamped += 1
            self.receive_delay.add(now - self._arrival)
            now = self._arrival
        if stream.kind != "video":
            if seq in stream.audio_seqs:
                stream.duplicates += 1
                return
            stream.audio_seqs.add(seq)
            if marker_pt & 0x80:
                stream.markers.append((seq, now))
            if window.start_s <= now < window.end_s:
                stream.arrived_in_window.add(seq)
            return
        stamp = _abs_send_time(data, flags, stream.abs_id)
        if stamp < 0:
            stream.unstamped += 1
            return
        now_units = (now + NTP_UNIX_OFFSET) * UNITS
        whole = int(now_units)
        sent = whole - ((whole - stamp) & MASK)
        if window.start <= sent < window.end:
            if seq in stream.seqs:
                stream.duplicates += 1
                return
            stream.seqs.add(seq)
            if stream.layered:
                stream.last_layer = layer = stamp & LAYER_BITS
                stream.layer_packets[layer] += 1
            self._histograms[stream.direction].add((now_units - sent) / UNITS)


def _abs_send_time(data: bytes, flags: int, abs_id: int) -> int:
    """The 24-bit abs-send-time of a packet with a one-byte-form extension block, or -1."""
    if not flags & 0x10 or not abs_id:
        return -1
    pos = 12 + 4 * (flags & 0x0F)
    profile, words = _EXT_HEAD.unpack_from(data, pos)
    if profile != rtp.ONE_BYTE_PROFILE:
        return -1
    pos += 4
    end = min(pos + 4 * words, len(data))
    while pos < end:
        head = data[pos]
        if head == 0:
            pos += 1
            continue
        ext_id = head >> 4
        if ext_id == abs_id and pos + 4 <= end:
            return (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]
        if ext_id == 15:
            break
        pos += 2 + (head & 0x0F)
    return -1
