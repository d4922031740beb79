"""One RTP stream of a published track: its only one, or one of its simulcast layers.

The packet path's last shared step: a Stream keeps the last packets for NACKs, fans
each one out to the consumers it feeds, and merges and rate-limits keyframe requests
for its SSRC. On a layered track it also measures its bitrate, reads each packet's VP8
picture numbers (sfu/vp8.py), and lets the consumers switching to it (``joining``) in
at its next keyframe, so a subscriber's decoder never starts mid-picture.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from . import vp8

if TYPE_CHECKING:
    from .forwarder import Source

KEYFRAME_INTERVAL_S = 0.3  # at most one PLI upstream per stream in this window
CACHE_SIZE = 1024  # packets kept per stream for answering NACKs (power of two)
CACHE_MASK = CACHE_SIZE - 1
ARRIVING_S = 1.0  # a layer with no packet for this long is not being sent


class Subscription(Protocol):
    """What a stream feeds: a subscriber's ``Consumer`` (sfu/consumer.py), or a
    recording's ``RecordingTap`` (sfu/recorder.py), which takes the same packets the
    same way but writes them to a file."""

    remb: int  # its bandwidth estimate (0: none)
    fraction_lost: int  # of its latest receiver report, out of 256
    preferred: int  # the layer it would take if it could

    @property
    def paused(self) -> bool:
        """Whether it takes nothing now."""

    @property
    def layer(self) -> int:
        """The layer it is fed from (-1: none yet)."""

    @property
    def wanted(self) -> int:
        """The layer it is fed from, or is switching to."""

    def send(
        self, padding: int, marker: int, seq: int, timestamp: int, shared: bytes,
        payload: memoryview,
    ) -> int:  # fmt: skip
        """Take one source packet; returns the bytes sent on (0: none)."""

    def enter(self, stream: Stream) -> None:
        """At ``stream``'s keyframe: from this packet on, it is fed from ``stream``."""

    def resync(self) -> None:
        """The source's numbering jumped (a new SSRC)."""

    def source_report(self, ntp_time: int, rtp_timestamp: int) -> None:
        """The publisher's sender report for the stream it is fed from."""

    def close(self) -> None:
        """Detach (idempotent)."""


class Stream:
    """One RTP stream of a track: its only one, or one simulcast layer.

    Keeps the last packets for NACKs, fans each packet out to the consumers it feeds,
    and merges and rate-limits keyframe requests for its SSRC. On a layered track it
    also measures its bitrate, reads each packet's VP8 picture numbers and lets the
    consumers waiting for it (``joining``) in at its next keyframe.
    """

    def __init__(self, source: Source, index: int, rid: str, consumers: list[Subscription]) -> None:
        self.source = source
        self.index = index
        self.rid = rid
        self.media_ssrc: int | None = None
        self.consumers = consumers  # fed from this stream (the track's own list if alone)
        self.joining: list[Subscription] = []  # switching here at the next keyframe
        self.keyframe_wanted = False
        self.newest_seq = -1
        self.octets = 0  # bytes in since the last bitrate measurement (layered only)
        self.bitrate = 0  # bits/s, smoothed (layered only)
        self.height = 0  # of the last keyframe (VP8), 0 until one came
        self.last_packet_at = 0.0  # monotonic (layered only)
        self.picture_id = -1  # VP8 numbering of the newest packet (layered only)
        self.tl0 = -1
        self.tid = -1  # temporal index of the newest packet's picture (-1: none)
        self.starts_frame = False  # whether the newest packet is its picture's first
        self.keyframe = 0  # the newest packet's keyframe height (0: not a keyframe start)
        self._cache_data: list[bytes | None] = [None] * CACHE_SIZE
        self._cache_seq: list[int] = [-1] * CACHE_SIZE
        self._cache_fields: list[tuple[int, int, int, int, bytes] | None] = [None] * CACHE_SIZE
        self._last_keyframe_request = 0.0
        self._stats = source.stats
        self.fan_out = self._fan_out_layered if source.layered else self._fan_out

    def new_ssrc(self, ssrc: int) -> None:
        """The stream's packets now carry ``ssrc`` (a method only for this rare branch)."""
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
        self.newest_seq = seq
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

    def _fan_out_layered(
        self, data: bytes, payload: memoryview, padding: int, marker: int, seq: int,
        timestamp: int, payload_start: int, shared: bytes,
    ) -> None:  # fmt: skip
        """``_fan_out`` for one layer of a simulcast track."""
        self.octets += len(data)
        self.last_packet_at = time.monotonic()
        keyframe = 0
        self.tid = -1
        if self.source.vp8 and len(payload):
            try:  # noqa: SIM105 (per packet: a context manager costs more)
                keyframe, self.picture_id, self.tl0, self.tid, _size = vp8.read(payload)
            except IndexError:
                pass  # a truncated descriptor: forwarded as it is
            if keyframe:
                self.height = keyframe
            self.starts_frame = vp8.starts_frame(payload)
        self.keyframe = keyframe
        if self.joining and keyframe:
            for consumer in self.joining:
                consumer.enter(self)
            self.joining.clear()
        self._fan_out(data, payload, padding, marker, seq, timestamp, payload_start, shared)

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
        """Ask the publisher for a keyframe of this stream, at most once per
        KEYFRAME_INTERVAL_S; requests inside the window merge into one sent by the
        first packet after it."""
        source = self.source
        if source.kind != "video" or source.closed:
            self.keyframe_wanted = False
            return
        if self.media_ssrc is None:
            # No packet yet (a pipe just made, or a layer not started): the first one
            # sends the request. Dropped here, a subscriber that joined a track before its
            # first packet could wait for a keyframe for ever (aiortc's encoder makes one
            # only when asked), as one did across a pipe on a loaded machine.
            self.keyframe_wanted = True
            return
        now = time.monotonic()
        if now - self._last_keyframe_request < KEYFRAME_INTERVAL_S:
            self.keyframe_wanted = True
            return
        self.keyframe_wanted = False
        self._last_keyframe_request = now
        self._stats.keyframe_requests += 1
        source.request_keyframe(self)

    def source_report(self, ntp_time: int, rtp_timestamp: int) -> None:
        """The publisher's sender report for this stream, passed to its consumers."""
        for consumer in self.consumers:
            consumer.source_report(ntp_time, rtp_timestamp)

    def measure(self, elapsed_s: float, now: float) -> None:
        """Fold the bytes since the last call into ``bitrate`` (layered tracks)."""
        rate = int(self.octets * 8 / elapsed_s) if elapsed_s > 0 else 0
        self.octets = 0
        if now - self.last_packet_at > ARRIVING_S:
            self.bitrate = 0
        else:
            self.bitrate = rate if not self.bitrate else (self.bitrate * 3 + rate * 2) // 5

    def clear(self) -> None:
        """Drop the cache and every consumer reference (the track closed)."""
        self._cache_data = [None] * CACHE_SIZE
        self._cache_fields = [None] * CACHE_SIZE
        self.joining.clear()
