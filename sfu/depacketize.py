"""RTP packets of one stream back into the frames they carry, without decoding.

A recording needs whole frames in order: a VP8 picture is split over packets (RFC
7741: the first has the S bit set and partition 0, the last the marker bit, all share
one timestamp); an Opus frame is one packet. Packets arrive out of order, twice, or
late (a retransmission the SFU asked the publisher for), so ``FrameAssembler`` keeps a
small reorder window and emits a frame once every packet of it is there, in sequence
order. A hole that outlives the window is given up: the frames after it are marked
``after_loss`` so the recorder waits for a keyframe (and asks for one) instead of
writing pictures that refer to one it never got.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import vp8

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


class FrameAssembler:
    """Reorders one RTP stream's packets and joins them into frames (``push``)."""

    def __init__(self, video: bool) -> None:
        self.video = video
        self._window = VIDEO_WINDOW if video else AUDIO_WINDOW
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
        seq = self._next
        while (self._newest - seq) & 0xFFFF < 0x8000:
            packet = self._packets.get(seq)
            if packet is not None and (not self.video or _starts(packet[2])):
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
            frame = self._take_video() if self.video else self._take_audio()
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

    def _take_video(self) -> Frame | None:
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
            if not _starts(parts[0]):
                raise IndexError("the picture's start is gone")
            frame = _picture(first[0], first[3], parts, self._lost)
        except IndexError:
            self._lost = True  # what follows may refer to this picture: it cannot decode
            return self._take_video()
        self._lost = False
        return frame


def _starts(payload: bytes) -> bool:
    return len(payload) > 0 and vp8.starts_frame(payload)


def _picture(timestamp: int, arrived: float, parts: list[bytes], lost: bool) -> Frame:
    """One VP8 picture from its packets' payloads, descriptors stripped (IndexError: a
    descriptor longer than its packet)."""
    data = b"".join(bytes(part[vp8.read(part)[4] :]) for part in parts)
    return Frame(timestamp, arrived, data, keyframe_size(data) is not None, lost)
