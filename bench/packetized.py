"""Media for the cheap load generators: encoded once, packetized once, sent as bytes.

The controller encodes the clips (``bench.media``) once per run: the instructor's
1280x720 VP8 at ~1.5 Mbit/s and the participants' 640x360 VP8 at ~500 kbit/s, plus
Opus for everyone. Each generator process packetizes them once with aiortc's own
payloaders (``Vp8Encoder.pack`` writes the VP8 payload descriptor and splits a frame
into <= 1,300-byte payloads, ``OpusEncoder.pack`` passes an Opus frame through) and
then only ever writes RTP headers in front of those payloads.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from pathlib import Path

import av
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder

from .media import Clip, EncodedStream, encode_audio, encode_video, save_clip

# Clip name -> (width, height, video kbit/s, qmax). "participant" is bench.sfu's default clip;
# at 720p the synthetic picture overshoots to ~1.75 Mbit/s unless qmax may reach 63 (at
# 180p, ~155 kbit/s at 56: 63 keeps it under the browser client's 150 kbit/s cap).
CLIP_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "instructor": (1280, 720, 1500, 63),
    "participant": (640, 360, 500, 56),
    "q180": (320, 180, 150, 63),
}
CLIP_SECONDS = 4.0
# ``--simulcast``: the layers (rid, clip) each publisher's clip is sent as, low to high,
# as the browser client sends them (web/layers.js): the instructor q/h/f of a 720p
# camera, a participant q/h of a 360p one. Every layer is its own encode of the same
# synthetic picture at that size, so each keyframe header carries the layer's height.
SIMULCAST_LAYERS: dict[str, tuple[tuple[str, str], ...]] = {
    "instructor": (("q", "q180"), ("h", "participant"), ("f", "instructor")),
    "participant": (("q", "q180"), ("h", "participant")),
}


def clips_needed(names: list[str], simulcast: bool) -> list[str]:
    """The clips to encode for publishers of ``names`` (with simulcast: every layer's)."""
    if not simulcast:
        return sorted(set(names))
    return sorted({clip for name in names for _rid, clip in SIMULCAST_LAYERS[name]})


@dataclass(frozen=True, slots=True)
class PacketizedStream:
    """One elementary stream as RTP payloads: ``frames[i]`` is frame i's payloads in order."""

    kind: str
    clock_rate: int
    frame_ticks: int
    frames: tuple[tuple[bytes, ...], ...]

    @property
    def period_s(self) -> float:
        """Seconds between frames."""
        return self.frame_ticks / self.clock_rate

    @property
    def packets_per_s(self) -> float:
        """RTP packets per second this stream sends."""
        return sum(len(f) for f in self.frames) / (len(self.frames) * self.period_s)

    @property
    def payload_kbps(self) -> float:
        """RTP payload bit rate (descriptors included, headers and SRTP not)."""
        size = sum(len(p) for f in self.frames for p in f)
        return size * 8 / (len(self.frames) * self.period_s) / 1000


@dataclass(frozen=True, slots=True)
class PacketizedClip:
    """What one publisher sends: video and (optionally) audio payloads."""

    video: PacketizedStream
    audio: PacketizedStream | None

    @property
    def packets_per_s(self) -> float:
        """RTP packets per second of video and audio together."""
        return self.video.packets_per_s + (self.audio.packets_per_s if self.audio else 0.0)


def packetize(stream: EncodedStream) -> PacketizedStream:
    """Split every frame of ``stream`` into RTP payloads with aiortc's payloader."""
    time_base = fractions.Fraction(1, stream.clock_rate)
    frames: list[tuple[bytes, ...]] = []
    if stream.kind == "video":
        vp8 = Vp8Encoder()
        for index, data in enumerate(stream.frames):
            packet = av.Packet(data)
            packet.pts = index * stream.frame_ticks
            packet.time_base = time_base
            payloads, _timestamp = vp8.pack(packet)
            frames.append(tuple(payloads))
    else:
        opus = OpusEncoder()
        for index, data in enumerate(stream.frames):
            packet = av.Packet(data)
            packet.pts = index * stream.frame_ticks
            packet.time_base = time_base
            payloads, _timestamp = opus.pack(packet)
            frames.append(tuple(payloads))
    return PacketizedStream(stream.kind, stream.clock_rate, stream.frame_ticks, tuple(frames))


def packetize_clip(clip: Clip) -> PacketizedClip:
    """Packetize a whole clip."""
    return PacketizedClip(
        video=packetize(clip.video),
        audio=packetize(clip.audio) if clip.audio is not None else None,
    )


def encode_class_clips(workdir: Path, names: list[str], audio: bool) -> dict[str, dict[str, float]]:
    """Encode the named clips (see CLIP_SHAPES) into ``workdir/<name>.clip``; Opus is
    encoded once and shared. Returns each clip's measured shape and bit rates."""
    sound = encode_audio(CLIP_SECONDS) if audio else None
    shapes: dict[str, dict[str, float]] = {}
    for name in names:
        width, height, kbps, qmax = CLIP_SHAPES[name]
        video = encode_video(
            CLIP_SECONDS, width=width, height=height, kbps=kbps, qmax=qmax, threads=1
        )
        clip = Clip(video=video, audio=sound)
        save_clip(clip, workdir / f"{name}.clip")
        packetized = packetize_clip(clip)
        shapes[name] = {
            "width": width,
            "height": height,
            "video_target_kbps": kbps,
            "video_clip_kbps": round(video.bitrate_kbps, 1),
            "video_packets_per_s": round(packetized.video.packets_per_s, 2),
            "audio_clip_kbps": round(sound.bitrate_kbps, 1) if sound else 0.0,
            "audio_packets_per_s": (
                round(packetized.audio.packets_per_s, 2) if packetized.audio else 0.0
            ),
        }
    return shapes
