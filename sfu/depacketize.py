"""RTP packets of one stream back into the frames they carry, without decoding.

A recording needs whole frames in order: a video picture is split over packets (all
sharing one timestamp, the last with the marker bit; VP8, RFC 7741: the first has the S
bit set and partition 0; H.264, RFC 6184: sfu/h264.py); an Opus frame is one packet.
What differs between video codecs (which packet starts a picture, how payloads join
into one, which pictures are keyframes and their size) is a ``Pictures`` of the codec.
Packets arrive out of order, twice, or late (a retransmission the SFU asked the
publisher for), so ``FrameAssembler`` keeps a small reorder window and emits a frame
once every packet of it is there, in sequence order. A hole that outlives the window
is given up: the frames after it are marked ``after_loss`` so the recorder waits for a
keyframe (and asks for one) instead of writing pictures that refer to one it never got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from . import h264, vp8

# Packets a hole may hold back before it is given up: about half a second of 720p video
# (Galène's sample builder keeps 128), ~300 ms of audio.
VIDEO_WINDOW = 128
AUDIO_WINDOW = 16


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete frame: its RTP timestamp, when its first packet arrived, its bytes."""

    timestamp: int
    arrived: float  # monotonic seconds
    data: bytes
    keyframe: bool
    after_loss: bool  # a hole before it was given up


def keyframe_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a VP8 keyframe's bitstream (RFC 6386 9.1), None if it is not
    one."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


class Pictures(Protocol):
    """How one video codec's packet payloads make pictures."""

    def starts(self, payload: bytes) -> bool:
        """Whether the packet is the first of a picture."""

    def picture(self, parts: list[bytes]) -> tuple[bytes, bool]:
        """``(bitstream, keyframe)`` of one picture's payloads, in order (IndexError or
        ValueError: damaged)."""

    def size(self, data: bytes) -> tuple[int, int] | None:
        """``(width, height)`` of a keyframe's bitstream, None if it says none."""

    def reset(self) -> None:
        """A new stream (SSRC or layer) follows: forget what the last one said."""


class Vp8Pictures:
    """VP8 pictures: the payloads without their descriptors (sfu/vp8.py)."""

    def starts(self, payload: bytes) -> bool:
        """The S bit and partition 0."""
        return len(payload) > 0 and vp8.starts_frame(payload)

    def picture(self, parts: list[bytes]) -> tuple[bytes, bool]:
        """The joined partitions; a keyframe by its frame tag."""
        data = b"".join(part[vp8.read(part)[4] :] for part in parts)
        return data, keyframe_size(data) is not None

    def size(self, data: bytes) -> tuple[int, int] | None:
        """From the keyframe header."""
        return keyframe_size(data)

    def reset(self) -> None:
        """Nothing kept between pictures."""


class H264Pictures(h264.AccessUnits):
    """H.264 access units in Annex-B, parameter sets kept (sfu/h264.py)."""

    def starts(self, payload: bytes) -> bool:
        """A NAL unit that begins an access unit."""
        return len(payload) > 0 and h264.starts_frame(payload)

    def size(self, data: bytes) -> tuple[int, int] | None:
        """From the keyframe's SPS."""
        return h264.keyframe_size(data)


def pictures_for(mime_type: str) -> Pictures | None:
    """The ``Pictures`` of a video codec (``video/VP8``, ``video/H264``), None for one
    not recorded."""
    kind = mime_type.lower()
    if kind == "video/vp8":
        return Vp8Pictures()
    if kind == "video/h264":
        return H264Pictures()
    return None


class FrameAssembler:
    """Reorders one RTP stream's packets and joins them into frames (``push``): video
    pictures by ``pictures``, or (None) one audio frame per packet."""

    def __init__(self, pictures: Pictures | None) -> None:
        self.pictures = pictures
        self.video = pictures is not None
        self._window = VIDEO_WINDOW if self.video else AUDIO_WINDOW
        # seq -> (timestamp, marker, payload, arrival)
        self._packets: dict[int, tuple[int, int, bytes, float]] = {}
        self._next = -1  # the first sequence number not yet emitted or given up
        self._newest = -1
        self._lost = False
        self.lost_holes = 0  # holes given up since the start (for tests and stats)

    def reset(self) -> None:
        """Forget everything: the stream's numbering restarts (a new SSRC or layer)."""
        self._packets.clear()
        self._next = self._newest = -1
        self._lost = False
        if self.pictures is not None:
            self.pictures.reset()

    def push(
        self, seq: int, timestamp: int, marker: int, payload: bytes, arrived: float
    ) -> list[Frame]:
        """Take one packet; return the frames it completes, oldest first."""
        if self._next < 0:
            self._next = self._newest = seq
        elif (seq - self._next) & 0xFFFF >= 0x8000:
            return []  # older than what was emitted already: a duplicate or too late
        if (seq - self._newest) & 0xFFFF < 0x8000:
            self._newest = seq
        self._packets[seq] = (timestamp, marker, payload, arrived)
        frames = self._drain()
        if self._window <= (self._newest - self._next) & 0xFFFF < 0x8000:
            self._give_up()
            frames += self._drain()
        return frames

    def _give_up(self) -> None:
        """Skip the oldest hole, to the next packet that starts a frame."""
        self._lost = True
        self.lost_holes += 1
        # What is at ``_next`` cannot complete (a picture with a hole inside, or the
        # hole itself): the whole picture goes, even a later packet of it that looks
        # like a start (H.264's second slice, when the hole is in the first).
        broken = self._packets.pop(self._next, None)
        seq = (self._next + 1) & 0xFFFF
        while (self._newest - seq) & 0xFFFF < 0x8000:
            packet = self._packets.get(seq)
            if (
                packet is not None
                and (broken is None or packet[0] != broken[0])
                and (self.pictures is None or self.pictures.starts(packet[2]))
            ):
                break
            self._packets.pop(seq, None)
            seq = (seq + 1) & 0xFFFF
        self._next = seq

    def _drain(self) -> list[Frame]:
        frames: list[Frame] = []
        while True:
            filler = self._packets.get(self._next)
            if filler is not None and not filler[2]:
                # Padding only (a bandwidth probe on the media SSRC): a number, no data.
                del self._packets[self._next]
                self._next = (self._next + 1) & 0xFFFF
                continue
            frame = self._take_audio() if self.pictures is None else self._take_video(self.pictures)
            if frame is None:
                return frames
            frames.append(frame)

    def _take_audio(self) -> Frame | None:
        packet = self._packets.pop(self._next, None)
        if packet is None:
            return None
        self._next = (self._next + 1) & 0xFFFF
        timestamp, _marker, payload, arrived = packet
        frame = Frame(timestamp, arrived, payload, True, self._lost)
        self._lost = False
        return frame

    def _take_video(self, pictures: Pictures) -> Frame | None:
        """The picture starting at ``_next`` if all of its packets are here."""
        first = self._packets.get(self._next)
        if first is None:
            return None
        seq = self._next
        end = -1
        while True:
            packet = self._packets.get(seq)
            if packet is None:
                return None  # a hole inside the picture: wait
            if packet[0] != first[0]:
                end = (seq - 1) & 0xFFFF  # the marker was lost with nothing missing
                break
            if packet[1]:
                end = seq
                break
            seq = (seq + 1) & 0xFFFF
        parts = []
        seq = self._next
        while True:
            parts.append(self._packets.pop(seq)[2])
            if seq == end:
                break
            seq = (seq + 1) & 0xFFFF
        self._next = (end + 1) & 0xFFFF
        try:
            if not pictures.starts(parts[0]):
                raise IndexError("the picture's start is gone")
            data, keyframe = pictures.picture(parts)
        except (IndexError, ValueError):
            self._lost = True  # what follows may refer to this picture: it cannot decode
            return self._take_video(pictures)
        frame = Frame(first[0], first[3], data, keyframe, self._lost)
        self._lost = False
        return frame
