"""``python -m bench.recording``: the CPU a class's recording costs the SFU.

The recorder (sfu/recorder.py) sits in a track's consumer list and does its work inside
the ``send`` the track makes per packet: reorder, join frames, mux into the file. So
this feeds it what an instructor sends, in real time, through a real ``Source`` and its
``Stream`` (the path the SFU's ingress takes): 720p video at 30 pictures a second
(libvpx for VP8; x264 with aiortc's settings for H.264, packetized by aiortc's own
payloaders, ~1,200-byte packets) and Opus at 50 frames a second, a clip of
``--clip`` seconds (starting with a keyframe) looped for ``--seconds``.

Measured per codec:

- ``recorder_cpu_s``: ``time.process_time()`` around every ``fan_out`` with the
  recorder's taps as the track's only consumers (reorder, frames, muxing, the file's
  writes, and the Stream's own packet cache, ~1 µs a packet), plus ``close()``
  (trailer and cues); the file opens inside the first keyframe's ``fan_out``;
- ``process_cpu_s`` of the whole run against ``baseline_cpu_s``, the same paced run
  with no recorder: the difference also holds the recorder's 4 Hz tick and whatever the
  recorder costs outside ``send`` (garbage collection of the frames it made);
- ``percent_of_a_core``: ``recorder_cpu_s`` per second of class.

The issue's goal: recording a class adds less than 5 % of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

from sfu.forwarder import Codec, Source
from sfu.recorder import Recorder
from sfu.stats import ForwardingStats

FPS = 30
AUDIO_FRAME_S = 0.02
MIME = {"vp8": "video/VP8", "h264": "video/H264"}


class BenchTrack(Source):
    """A track with no publisher connection: packets are fed through its Stream."""

    def __init__(self, kind: str, mime_type: str, clock_rate: int, channels: int | None) -> None:
        codec = Codec(mime_type, clock_rate, channels, {})
        super().__init__(f"coach:{kind}", "coach", kind, codec, ForwardingStats(), 2_500_000)
        self.keyframe_requests = 0

    def _request_keyframe(self, media_ssrc: int) -> None:
        # The clip starts each loop with a keyframe: the request is only counted.
        self.keyframe_requests += 1

    async def _send_estimate(self, bitrate: int) -> None:
        pass


def _images(width: int, height: int, count: int) -> list[av.VideoFrame]:
    """A moving picture with detail an encoder must spend its bitrate on."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))  # 8x8 blocks, not white noise
    frames = []
    for i in range(count):
        image = np.roll(base, (i * 3, i * 5), axis=(0, 1))
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = i, Fraction(1, FPS)
        frames.append(frame)
    return frames


def encode_clip(codec: str, width: int, height: int, count: int, bitrate: int) -> list[list[bytes]]:
    """``count`` pictures (the first a keyframe, no other) as RTP payloads each."""
    name = "libvpx" if codec == "vp8" else "libx264"
    context: Any = av.CodecContext.create(name, "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = Fraction(1, FPS)
    context.framerate = Fraction(FPS, 1)
    context.bit_rate = bitrate
    context.gop_size = count  # one keyframe, at the start of each loop
    if codec == "vp8":
        context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        context.options = {"level": "31", "tune": "zerolatency"}  # aiortc's H264Encoder
        context.profile = "Baseline"
    pictures = [bytes(p) for f in _images(width, height, count) for p in context.encode(f)]
    pictures += [bytes(p) for p in context.encode(None)]
    if codec == "vp8":
        packer = Vp8Encoder()
        return [packer._packetize(p, i) for i, p in enumerate(pictures)]
    return [H264Encoder._packetize(H264Encoder._split_bitstream(p)) for p in pictures]


def opus_clip(count: int) -> list[bytes]:
    """``count`` 20 ms stereo Opus frames of a tone with noise (~64 kbit/s)."""
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format = 48000, "stereo", "s16"
    context.bit_rate = 64000
    context.open()
    rng = np.random.default_rng(3)
    out: list[bytes] = []
    for i in range(count):
        t = (np.arange(960) + i * 960) / 48000
        wave = (np.sin(2 * np.pi * 440 * t) * 8000 + rng.normal(0, 800, 960)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(wave, 2)[None, :], format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in context.encode(frame)]
    return out


@dataclass
class Feed:
    """One codec's clip and where its numbering stands."""

    video: list[list[bytes]]
    audio: list[bytes]


async def run_once(
    feed: Feed, codec: str, seconds: float, directory: Path | None
) -> dict[str, Any]:
    """Send ``seconds`` of the class in real time; record it into ``directory`` (None:
    the baseline, nobody takes the packets)."""
    video_track = BenchTrack("video", MIME[codec], 90000, None)
    audio_track = BenchTrack("audio", "audio/opus", 48000, 2)
    video, audio = video_track.streams[0], audio_track.streams[0]
    video.media_ssrc, audio.media_ssrc = 1111, 2222
    recorder = Recorder("bench", directory) if directory is not None else None
    if recorder is not None:
        recorder.follow({"video": video_track, "audio": audio_track})
    events = sorted(
        [(i / FPS, 0, i) for i in range(int(seconds * FPS))]
        + [(i * AUDIO_FRAME_S, 1, i) for i in range(int(seconds / AUDIO_FRAME_S))]
    )
    spent = 0.0
    packets = octets = 0
    seqs = [1000, 5000]
    clock = time.process_time
    started = time.monotonic()
    process_started = clock()
    for due, kind, i in events:
        delay = started + due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if kind == 0:
            payloads, stream, timestamp = feed.video[i % len(feed.video)], video, i * 3000
        else:
            payloads, stream, timestamp = [feed.audio[i % len(feed.audio)]], audio, i * 960
        for n, payload in enumerate(payloads):
            marker = int(n == len(payloads) - 1)
            seq = seqs[kind]
            seqs[kind] = (seq + 1) & 0xFFFF
            view = memoryview(payload)
            before = clock()
            stream.fan_out(payload, view, 0, marker, seq, timestamp & 0xFFFFFFFF, 0, b"")
            spent += clock() - before
            packets += 1
            octets += len(payload)
    clip_bytes = sum(len(payload) for picture in feed.video for payload in picture)
    path = None
    before = clock()
    if recorder is not None:
        path = recorder.writer.path
        recorder.close()
        await recorder.wait_closed()
    spent += clock() - before
    result: dict[str, Any] = {
        "process_cpu_s": round(clock() - process_started, 4),
        "packets": packets,
        "bytes": octets,
        "video_kbit_s": round(clip_bytes * 8 * FPS / len(feed.video) / 1000),
        "wall_s": round(time.monotonic() - started, 2),
    }
    if recorder is not None:
        result.update(
            recorder_cpu_s=round(spent, 4), keyframe_requests=video_track.keyframe_requests
        )
        result.update(_file(path))
    return result


def _file(path: Path | None) -> dict[str, Any]:
    """What the recording holds, read back with PyAV's demuxer."""
    if path is None or not path.exists():
        return {"file": None}
    with av.open(str(path)) as container:
        pictures = sum(1 for p in container.demux(video=0) if p.size)
        duration = container.duration / 1_000_000 if container.duration else None
    return {"file": path.name, "file_bytes": path.stat().st_size, "file_s": duration,
            "file_pictures": pictures}  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Each codec: the recorded run, then the baseline."""
    codecs = ["vp8", "h264"] if args.codec == "both" else [args.codec]
    report: dict[str, Any] = {
        "scenario": {
            "seconds": args.seconds, "clip_s": args.clip, "width": args.width,
            "height": args.height, "fps": FPS, "video_bitrate": args.bitrate,
            "audio": "Opus 20 ms frames, ~64 kbit/s",
        },
    }  # fmt: skip
    audio = opus_clip(int(args.clip / AUDIO_FRAME_S))
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as temporary:
        for codec in codecs:
            video = encode_clip(codec, args.width, args.height, int(args.clip * FPS), args.bitrate)
            feed = Feed(video, audio)
            recorded = await run_once(feed, codec, args.seconds, Path(temporary) / codec)
            if not args.no_baseline:
                baseline = await run_once(feed, codec, args.seconds, None)
                recorded["baseline_cpu_s"] = baseline["process_cpu_s"]
                recorded["process_cpu_minus_baseline_s"] = round(
                    recorded["process_cpu_s"] - baseline["process_cpu_s"], 4
                )
            recorded["percent_of_a_core"] = round(
                100 * recorded["recorder_cpu_s"] / args.seconds, 3
            )
            recorded["us_per_packet"] = round(
                1e6 * recorded["recorder_cpu_s"] / recorded["packets"], 2
            )
            report[codec] = recorded
    report["machine"] = {"cores": os.cpu_count(), "load_average_1m_at_end": os.getloadavg()[0]}
    report["method"] = "time.process_time() around each fan_out into the recorder's taps, paced"
    return report


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.recording", description=__doc__)
    parser.add_argument("--codec", choices=["vp8", "h264", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=20.0, help="class recorded (20)")
    parser.add_argument("--clip", type=float, default=2.0, help="encoded clip looped (2 s)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--bitrate", type=int, default=2_500_000, help="video bit/s (2.5M)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without recorder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.clip <= 0:
        print("bench.recording: --seconds and --clip must be positive", file=sys.stderr)
        return 2
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
