"""Pre-encoded media for load generators: encode once, replay forever without re-encoding.

``encode_clip`` runs VP8 (and optionally Opus) once over a few seconds of synthetic
content and writes the encoded frames to a file. ``ReplayTrack`` loops over those
frames and yields ``av.Packet`` objects with continuous, correctly paced timestamps;
aiortc's sender packetizes an ``av.Packet`` with ``encoder.pack()`` and never encodes.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_FRAME_SAMPLES = 960  # 20 ms
_MAGIC = b"PRCLIP1\n"
_HEADER = struct.Struct("!8sIIIII")  # kind, clock rate, frame duration (clock units), count, w, h
_FRAME = struct.Struct("!IB")  # size, keyframe flag


@dataclass(frozen=True, slots=True)
class EncodedStream:
    """One encoded elementary stream: frames in order, each frame_ticks long."""

    kind: str
    clock_rate: int
    frame_ticks: int
    frames: tuple[bytes, ...]
    keyframes: tuple[bool, ...]
    width: int = 0
    height: int = 0

    @property
    def duration_s(self) -> float:
        """Length of one pass through the clip."""
        return len(self.frames) * self.frame_ticks / self.clock_rate

    @property
    def bitrate_kbps(self) -> float:
        """Average payload bitrate of the clip (before RTP/SRTP overhead)."""
        return sum(len(f) for f in self.frames) * 8 / self.duration_s / 1000


@dataclass(frozen=True, slots=True)
class Clip:
    """The media every publisher replays."""

    video: EncodedStream
    audio: EncodedStream | None


def _synthetic_image(index: int, width: int, height: int) -> np.ndarray:
    """A moving colour gradient: smooth enough that VP8 at ~500 kbit/s looks like a camera."""
    y, x = np.mgrid[0:height, 0:width]
    base = ((x * 2 + y + index * 6) % 256).astype(np.uint8)
    return np.dstack([base, np.roll(base, index * 5, axis=0), 255 - base])


def encode_video(
    seconds: float = 4.0,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    kbps: int = 500,
    qmax: int = 56,
    threads: int = 0,
) -> EncodedStream:
    """Encode ``seconds`` of synthetic video to VP8 once (CBR, a keyframe every 2 s).

    ``qmax`` is the coarsest quantizer allowed (aiortc uses 56); at 720p the synthetic
    picture needs 63 to come down to ~1.5 Mbit/s. ``threads`` 0 lets libvpx pick (the
    output then depends on the CPUs this process may use); 1 gives the same clip on any
    machine and with any CPU pinning."""
    bit_rate = kbps * 1000
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.bit_rate = bit_rate
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps)
    codec.gop_size = 2 * fps
    codec.qmin, codec.qmax = 2, qmax
    if threads:
        codec.thread_count = threads
    # The realtime CBR settings aiortc's own Vp8Encoder uses.
    codec.options = {
        "bufsize": str(bit_rate),
        "cpu-used": "-6",
        "deadline": "realtime",
        "lag-in-frames": "0",
        "minrate": str(bit_rate),
        "maxrate": str(bit_rate),
        "overshoot-pct": "15",
        "undershoot-pct": "100",
        "static-thresh": "1",
        "partitions": "0",
    }
    frames: list[bytes] = []
    keyframes: list[bool] = []
    count = round(seconds * fps)
    packets: list[av.Packet[Any]] = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(_synthetic_image(i, width, height), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        packets.extend(codec.encode(frame))
    packets.extend(codec.encode(None))
    for packet in packets:
        frames.append(bytes(packet))
        keyframes.append(bool(packet.is_keyframe))
    return EncodedStream(
        "video", VIDEO_CLOCK, VIDEO_CLOCK // fps, tuple(frames), tuple(keyframes), width, height
    )


def encode_audio(seconds: float = 4.0, kbps: int = 32) -> EncodedStream:
    """Encode ``seconds`` of a 440 Hz tone with a little noise to Opus once (20 ms frames)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = kbps * 1000
    codec.sample_rate = AUDIO_RATE
    codec.format = "s16"
    codec.layout = "stereo"
    codec.time_base = fractions.Fraction(1, AUDIO_RATE)
    codec.options = {"application": "voip"}
    rng = np.random.default_rng(7)
    frames: list[bytes] = []
    count = round(seconds * AUDIO_RATE / AUDIO_FRAME_SAMPLES)
    for i in range(count):
        t = (np.arange(AUDIO_FRAME_SAMPLES) + i * AUDIO_FRAME_SAMPLES) / AUDIO_RATE
        tone = 0.2 * np.sin(2 * math.pi * 440 * t) + 0.02 * rng.standard_normal(t.size)
        mono = (tone * 32767).astype(np.int16)
        stereo = np.repeat(mono, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = i * AUDIO_FRAME_SAMPLES
        frames.extend(bytes(p) for p in codec.encode(frame))
    frames.extend(bytes(p) for p in codec.encode(None))
    return EncodedStream(
        "audio", AUDIO_RATE, AUDIO_FRAME_SAMPLES, tuple(frames), tuple(True for _ in frames)
    )


def encode_clip(seconds: float = 4.0, audio: bool = True, video_kbps: int = 500) -> Clip:
    """The clip every publisher replays: VP8 640x360@30 and, if asked, Opus."""
    return Clip(
        video=encode_video(seconds, kbps=video_kbps),
        audio=encode_audio(seconds) if audio else None,
    )


def _write_stream(out: list[bytes], stream: EncodedStream) -> None:
    out.append(
        _HEADER.pack(
            stream.kind.encode().ljust(8, b"\0"),
            stream.clock_rate,
            stream.frame_ticks,
            len(stream.frames),
            stream.width,
            stream.height,
        )
    )
    for data, key in zip(stream.frames, stream.keyframes, strict=True):
        out.append(_FRAME.pack(len(data), int(key)))
        out.append(data)


def save_clip(clip: Clip, path: Path) -> None:
    """Write ``clip`` to ``path`` (a simple length-prefixed format, read by ``load_clip``)."""
    parts = [_MAGIC, struct.pack("!B", 2 if clip.audio else 1)]
    _write_stream(parts, clip.video)
    if clip.audio is not None:
        _write_stream(parts, clip.audio)
    path.write_bytes(b"".join(parts))


def load_clip(path: Path) -> Clip:
    """Read a clip written by ``save_clip``."""
    data = memoryview(path.read_bytes())
    if bytes(data[: len(_MAGIC)]) != _MAGIC:
        raise ValueError(f"{path} is not a PulseRoom bench clip")
    pos = len(_MAGIC)
    (count,) = struct.unpack_from("!B", data, pos)
    pos += 1
    streams: list[EncodedStream] = []
    for _ in range(count):
        kind, clock, ticks, n, width, height = _HEADER.unpack_from(data, pos)
        pos += _HEADER.size
        frames: list[bytes] = []
        keys: list[bool] = []
        for _ in range(n):
            size, key = _FRAME.unpack_from(data, pos)
            pos += _FRAME.size
            frames.append(bytes(data[pos : pos + size]))
            keys.append(bool(key))
            pos += size
        streams.append(
            EncodedStream(
                kind.rstrip(b"\0").decode(), clock, ticks, tuple(frames), tuple(keys), width, height
            )
        )
    return Clip(video=streams[0], audio=streams[1] if len(streams) > 1 else None)


class ReplayTrack(MediaStreamTrack):
    """Loops an encoded stream in real time, yielding ``av.Packet`` (never a decoded frame).

    Timestamps run on across loops (frame n has pts ``n * frame_ticks``), so receivers
    see one continuous stream; pacing follows the monotonic clock from the first ``recv``.

    ``before_frame``, if given, is awaited with the wall-clock time just before each frame
    is handed to the sender. aiortc's sender asks for a frame only after it has sent every
    packet of the previous one, so at that moment its packet count covers exactly the
    frames handed over earlier: a precise place to read it.
    """

    def __init__(
        self,
        stream: EncodedStream,
        before_frame: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.kind = stream.kind
        self._stream = stream
        self._before_frame = before_frame
        self._time_base = fractions.Fraction(1, stream.clock_rate)
        self._period = stream.frame_ticks / stream.clock_rate
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet[Any]:
        """The next encoded frame, at its due time."""
        if self.readyState != "live":
            from aiortc.mediastreams import MediaStreamError

            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._count * self._period
        if due > now:
            await asyncio.sleep(due - now)
        if self._before_frame is not None:
            await self._before_frame(time.time())
        frames = self._stream.frames
        packet = av.Packet(frames[self._count % len(frames)])
        packet.pts = self._count * self._stream.frame_ticks
        packet.time_base = self._time_base
        self._count += 1
        return packet
