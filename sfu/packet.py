"""RTP packets as bytes: read a publisher's header once, write each subscriber's header.

The forwarding path never builds packet objects. A packet from a publisher is read
once (``read``); header extensions the subscribers understand are re-numbered to
their ids once (``ExtensionMap``); then each subscriber's copy is its own fixed header,
its own MID element, the shared extensions and the untouched payload.
"""

from __future__ import annotations

import struct
from typing import Final

VERSION_BITS: Final = 0x80
PADDING_BIT: Final = 0x20
EXTENSION_BIT: Final = 0x10
ONE_BYTE_PROFILE: Final = 0xBEDE

FIXED = struct.Struct("!BBHII")  # flags, marker|pt, seq, timestamp, ssrc
FIXED_WITH_EXT = struct.Struct("!BBHIIHH")  # ... then profile, length in 32-bit words
_FIXED_SIZE: Final = 12

URI_MID: Final = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME: Final = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL: Final = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
# What subscribers get besides MID: the rest is specific to the publisher's connection
# (transport-wide sequence numbers, its own MID) and must not leak across.
FORWARDED_URIS: Final = (URI_ABS_SEND_TIME, URI_AUDIO_LEVEL)


class RtpError(ValueError):
    """Bytes that are not a well-formed RTP packet."""


def read(data: bytes) -> tuple[int, int, int, int, int, int, int, int]:
    """``(marker, payload_type, seq, timestamp, ssrc, ext_profile, ext_start, payload_start)``.

    ``ext_profile`` is 0 when there is no extension block; the block's elements are
    ``data[ext_start:payload_start]``. The payload runs to the end (padding included).
    """
    size = len(data)
    if size < _FIXED_SIZE:
        raise RtpError(f"RTP packet too short: {size} bytes")
    flags, marker_pt, seq, timestamp, ssrc = FIXED.unpack_from(data)
    if flags & 0xC0 != VERSION_BITS:
        raise RtpError("not RTP version 2")
    offset = _FIXED_SIZE + 4 * (flags & 0x0F)
    profile = 0
    ext_start = offset
    if flags & EXTENSION_BIT:
        if size < offset + 4:
            raise RtpError("RTP extension header truncated")
        profile, words = struct.unpack_from("!HH", data, offset)
        ext_start = offset + 4
        offset = ext_start + 4 * words
    if offset > size:
        raise RtpError("RTP header longer than the packet")
    if flags & PADDING_BIT and (offset == size or data[-1] > size - offset):
        raise RtpError("RTP padding longer than the payload")
    return marker_pt >> 7, marker_pt & 0x7F, seq, timestamp, ssrc, profile, ext_start, offset


def elements(data: bytes, profile: int, start: int, end: int) -> list[tuple[int, bytes]]:
    """The ``(id, value)`` header-extension elements of a one- or two-byte block."""
    found: list[tuple[int, bytes]] = []
    pos = start
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            head = data[pos]
            if head == 0:  # padding
                pos += 1
                continue
            ext_id, length = head >> 4, (head & 0x0F) + 1
            if ext_id == 15:
                break
            if pos + 1 + length > end:
                raise RtpError("RTP extension element truncated")
            found.append((ext_id, data[pos + 1 : pos + 1 + length]))
            pos += 1 + length
    elif profile & 0xFFF0 == 0x1000:
        while pos < end:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                raise RtpError("RTP extension element truncated")
            length = data[pos + 1]
            if pos + 2 + length > end:
                raise RtpError("RTP extension element truncated")
            found.append((ext_id, data[pos + 2 : pos + 2 + length]))
            pos += 2 + length
    return found


def one_byte_block(items: list[tuple[int, bytes]]) -> bytes:
    """One-byte-form elements, zero-padded to a 32-bit boundary (no block header)."""
    out = bytearray()
    for ext_id, value in items:
        if not 1 <= ext_id <= 14 or not 1 <= len(value) <= 16:
            raise ValueError(f"extension {ext_id} with {len(value)} bytes needs the two-byte form")
        out.append((ext_id << 4) | (len(value) - 1))
        out += value
    out += bytes(-len(out) % 4)
    return bytes(out)


class ExtensionMap:
    """Re-numbers a publisher's forwarded header extensions to the subscribers' ids."""

    def __init__(self, publisher_ids: dict[str, int], subscriber_ids: dict[str, int]) -> None:
        self._renumber = {
            publisher_ids[uri]: subscriber_ids[uri]
            for uri in FORWARDED_URIS
            if uri in publisher_ids and uri in subscriber_ids
        }
        self._level_id = publisher_ids.get(URI_AUDIO_LEVEL, -1)
        self._abs_id = subscriber_ids.get(URI_ABS_SEND_TIME, -1)
        # One-byte form, by an element's first byte: that byte re-numbered (None: not
        # forwarded), so the common case costs one list lookup per element.
        self._heads: list[bytes | None] = [None] * 256
        for head in range(16, 240):
            new_id = self._renumber.get(head >> 4)
            if new_id is not None:
                self._heads[head] = bytes(((new_id << 4) | (head & 0x0F),))
        abs_sources = [i for i, new_id in self._renumber.items() if new_id == self._abs_id]
        self._abs_source = abs_sources[0] if abs_sources else -1
        # Level of the last packet read, in -dBov (0 loudest, 127 silence; RFC 6464).
        self.audio_level = 127

    def shared_block(self, data: bytes, profile: int, start: int, end: int) -> bytes:
        """The forwarded elements of one packet, as a padded one-byte-form block body
        (abs-send-time first, so a re-sent copy can restamp bytes 1-3: ``restamp``)."""
        if not profile or not self._renumber:
            return b""
        if profile != ONE_BYTE_PROFILE:
            return self._shared_two_byte(data, profile, start, end)
        # ``elements`` and ``one_byte_block`` inlined: this runs for every packet in.
        heads = self._heads
        level_id = self._level_id
        abs_source = self._abs_source
        first = rest = b""
        pos = start
        while pos < end:
            head = data[pos]
            if head == 0:  # padding
                pos += 1
                continue
            ext_id = head >> 4
            if ext_id == 15:
                break
            after = pos + 2 + (head & 0x0F)
            if after > end:
                raise RtpError("RTP extension element truncated")
            if ext_id == level_id:
                self.audio_level = data[pos + 1] & 0x7F
            renumbered = heads[head]
            if renumbered is not None:
                if ext_id == abs_source:
                    first += renumbered + data[pos + 1 : after]
                else:
                    rest += renumbered + data[pos + 1 : after]
            pos = after
        block = first + rest
        return block + bytes(-len(block) % 4) if block else b""

    def _shared_two_byte(self, data: bytes, profile: int, start: int, end: int) -> bytes:
        renumber = self._renumber
        found = elements(data, profile, start, end)
        kept = [(renumber[i], v) for i, v in found if i in renumber]
        if len(kept) > 1:
            kept.sort(key=self._abs_first)
        level_id = self._level_id
        for ext_id, value in found:
            if ext_id == level_id and value:
                self.audio_level = value[0] & 0x7F
        return one_byte_block(kept) if kept else b""

    def _abs_first(self, item: tuple[int, bytes]) -> int:
        return 0 if item[0] == self._abs_id else 1


def restamp(shared: bytes, abs_id: int, elapsed_s: float) -> bytes:
    """A forwarded block whose leading abs-send-time (id ``abs_id``) is ``elapsed_s`` later.

    A padding or retransmitted copy sent now must not carry the stale send time of the
    packet it copies: the subscriber's bandwidth estimator would read the difference as
    queueing delay. Moving the publisher's time on by what passed at the SFU keeps every
    packet of the stream on one clock. Blocks without it come back unchanged.
    """
    if len(shared) < 4 or shared[0] != (abs_id << 4) | 2:
        return shared
    value = (int.from_bytes(shared[1:4], "big") + int(elapsed_s * 262144)) & 0xFFFFFF
    return shared[:1] + value.to_bytes(3, "big") + shared[4:]


def mid_element(mid_id: int | None, mid: str) -> bytes:
    """A subscriber's own MID element, padded (empty when MID was not negotiated)."""
    if not mid_id:
        return b""
    return one_byte_block([(mid_id, mid.encode())])


def write(
    padding: int,
    marker: int,
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    own_block: bytes,
    shared_block: bytes,
    payload: bytes | memoryview,
) -> bytes:
    """A whole RTP packet: fixed header, one extension block, payload."""
    words = (len(own_block) + len(shared_block)) >> 2
    marker_pt = (marker << 7) | payload_type
    if words:
        head = FIXED_WITH_EXT.pack(
            VERSION_BITS | EXTENSION_BIT | padding,
            marker_pt,
            seq,
            timestamp,
            ssrc,
            ONE_BYTE_PROFILE,
            words,
        )
        return b"".join((head, own_block, shared_block, payload))
    return FIXED.pack(VERSION_BITS | padding, marker_pt, seq, timestamp, ssrc) + payload
