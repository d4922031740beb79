"""The recorder's parts alone: RTP packets back into frames (reordered, duplicated,
lost), frames into a WebM file that a real demuxer and decoder read back, and the
recorder on a simulcast track fed through its real Streams (layer choice, fallback).

Real VP8 from libvpx, packetized by aiortc's own VP8 payloader (what a bot sends).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder

from sfu.depacketize import VIDEO_WINDOW, Frame, FrameAssembler, Vp8Pictures, keyframe_size
from sfu.forwarder import Codec, Source
from sfu.recorder import Recorder
from sfu.recording_file import RecordingFile, new_path
from sfu.stats import ForwardingStats

Packet = tuple[int, int, int, bytes]  # seq, timestamp, marker, payload


def vp8_pictures(count: int, keyframe_every: int = 0) -> list[bytes]:
    """``count`` encoded 320x240 VP8 pictures of a moving gradient."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = 320, 240, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.bit_rate = 500_000
    # Not "realtime": libvpx then adapts its speed to the clock, so a busy machine got
    # smaller pictures (fewer packets: a hole never held back VIDEO_WINDOW of them).
    codec.options = {"deadline": "good", "cpu-used": "5", "lag-in-frames": "0"}
    if keyframe_every:
        codec.gop_size = keyframe_every
    codec.open()
    pictures: list[bytes] = []
    noise = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    for i in range(count):
        image = np.roll(noise, i * 4, axis=1)  # detail that moves: pictures of several packets
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        pictures += [bytes(p) for p in codec.encode(frame)]
    pictures += [bytes(p) for p in codec.encode(None)]
    return pictures


def packetize(pictures: list[bytes], first_seq: int = 65500) -> list[Packet]:
    """RTP packets of the pictures (3000 ticks apart), small enough to span several."""
    payloader = Vp8Encoder()
    packets: list[Packet] = []
    seq = first_seq
    for i, picture in enumerate(pictures):
        payloads = payloader._packetize(picture, i % 0x8000)
        for n, payload in enumerate(payloads):
            packets.append((seq, i * 3000, int(n == len(payloads) - 1), payload))
            seq = (seq + 1) & 0xFFFF
    return packets


def assemble(assembler: FrameAssembler, packets: list[Packet]) -> list[Frame]:
    frames: list[Frame] = []
    for seq, timestamp, marker, payload in packets:
        frames += assembler.push(seq, timestamp, marker, payload, 0.0)
    return frames


def test_reordered_and_duplicated_packets_give_every_picture_once() -> None:
    pictures = vp8_pictures(40)
    packets = packetize(pictures)
    assert len(packets) > len(pictures)  # some pictures span several packets
    rng = random.Random(7)
    shuffled: list[Packet] = packets[:1]  # the stream's start is its first packet seen
    for start in range(1, len(packets), 6):  # then reordered within windows of six
        window = packets[start : start + 6]
        rng.shuffle(window)
        shuffled += window + window[:1]  # and one duplicate each
    frames = assemble(FrameAssembler(Vp8Pictures()), shuffled)
    assert [f.data for f in frames] == pictures
    assert [f.timestamp for f in frames] == [i * 3000 for i in range(len(pictures))]
    assert frames[0].keyframe and keyframe_size(frames[0].data) == (320, 240)
    assert not any(f.after_loss for f in frames)


def test_a_lost_packet_marks_the_frames_after_it_until_given_up() -> None:
    pictures = vp8_pictures(120)
    packets = packetize(pictures, first_seq=10)
    lost = next(i for i, p in enumerate(packets) if p[1] == 50 * 3000)  # picture 50
    assert len(packets) - lost > VIDEO_WINDOW  # enough after the hole for it to be given up
    assembler = FrameAssembler(Vp8Pictures())
    frames = assemble(assembler, packets[:lost] + packets[lost + 1 :])
    assert assembler.lost_holes == 1
    stamps = [f.timestamp for f in frames]
    assert 50 * 3000 not in stamps  # the damaged picture is never emitted
    after = [f for f in frames if f.timestamp > 50 * 3000]
    assert after and after[0].after_loss and not any(f.after_loss for f in after[1:])
    assert stamps == sorted(stamps)


def test_a_hole_inside_a_picture_whose_first_packet_came_is_given_up_once() -> None:
    """The picture goes whole and the stream goes on (it used to stop there for good)."""
    pictures = vp8_pictures(100, keyframe_every=60)
    packets = packetize(pictures, first_seq=10)
    assert packets[1][1] == 0  # the first picture spans several packets: lose its second
    assembler = FrameAssembler(Vp8Pictures())
    frames = assemble(assembler, packets[:1] + packets[2:])
    assert assembler.lost_holes == 1
    assert frames[0].timestamp == 3000 and frames[0].after_loss
    assert [f.timestamp for f in frames] == [i * 3000 for i in range(1, len(pictures))]


def test_audio_frames_are_one_packet_each_and_padding_only_packets_are_skipped() -> None:
    assembler = FrameAssembler(None)
    frames = assembler.push(5, 960, 0, b"b", 0.0)
    frames += assembler.push(4, 0, 0, b"a", 0.0)  # older than the first: too late
    frames += assembler.push(7, 2880, 0, b"d", 0.0)
    frames += assembler.push(6, 1920, 0, b"", 0.0)  # padding only
    assert [f.data for f in frames] == [b"b", b"d"]


def test_frames_written_without_reencoding_demux_and_decode(tmp_path: Path) -> None:
    pictures = vp8_pictures(60, keyframe_every=30)
    writer = RecordingFile(tmp_path / "room", "20260101T000000Z")
    writer.open("vp8", 320, 240, 1_767_225_600.25)
    path = writer.path
    assert path is not None and writer.part is not None and path.suffix == ".webm"
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format = 48000, "stereo", "s16"
    opus.open()
    silence = np.zeros((1, 960 * 2), dtype=np.int16)
    for i, picture in enumerate(pictures):
        writer.write_video(i * 33, picture, keyframe_size(picture) is not None)
        for k in range(2):  # ~two 20 ms Opus frames per picture
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="stereo")
            frame.sample_rate = 48000
            frame.pts = (i * 2 + k) * 960
            for packet in opus.encode(frame):
                writer.write_audio((i * 2 + k) * 20, bytes(packet))
    assert not path.exists() and writer.part.exists()  # unfinished: a .part file
    writer.close()
    writer.close()  # idempotent
    assert path.exists() and not writer.part.exists()
    assert new_path(tmp_path / "room", "20260101T000000Z").name == "20260101T000000Z-2.webm"
    # Ids are unique across formats: an H.264 recording of the same second is -2 too.
    assert new_path(tmp_path / "room", "20260101T000000Z", ".mkv").name == "20260101T000000Z-2.mkv"
    # When the file's zero was, for the replay: beside it, and in it (Matroska's DateUTC).
    assert json.loads(path.with_suffix(".json").read_text()) == {"started_at": 1_767_225_600.25}
    with av.open(str(path)) as container:
        assert container.metadata["creation_time"] == "2026-01-01T00:00:00.250000Z"
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("vp8", "opus")
        assert (video.codec_context.width, video.codec_context.height) == (320, 240)
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == len(pictures)


class _LayeredTrack(Source):
    """A two-layer VP8 track with no publisher connection behind it: packets are fed by
    hand through its real Streams (as tests/test_shedding.py does)."""

    def __init__(self) -> None:
        codec = Codec("video/VP8", 90000, None, {})
        super().__init__(
            "pub:video", "pub", "video", codec, ForwardingStats(), 2_000_000, ("q", "h")
        )
        self.keyframe_requests: list[int] = []  # the layer asked for, by SSRC

    def _request_keyframe(self, media_ssrc: int) -> None:
        self.keyframe_requests.append(media_ssrc)

    async def _send_estimate(self, bitrate: int) -> None:
        pass


def sized_pictures(width: int, height: int, count: int, gop: int) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.gop_size = gop
    # Not "realtime": libvpx then adapts its speed to the clock, so a busy machine got
    # smaller pictures (fewer packets: a hole never held back VIDEO_WINDOW of them).
    codec.options = {"deadline": "good", "cpu-used": "5", "lag-in-frames": "0"}
    codec.open()
    noise = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out: list[bytes] = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(np.roll(noise, i * 2, axis=1), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    return out + [bytes(p) for p in codec.encode(None)]


@pytest.mark.timeout(60)
async def test_the_recorder_takes_the_best_layer_and_falls_back_when_it_stops(
    tmp_path: Path,
) -> None:
    """Both layers for 1.33 s, then only the small one (the publisher switched the top
    off): the file has the top layer from its first keyframe, then the small one from
    its keyframe once the top has been silent for a second, every picture decoding, on
    one clock."""
    track = _LayeredTrack()
    small = sized_pictures(320, 180, 105, gop=15)
    large = sized_pictures(640, 360, 45, gop=15)[5:]  # joins mid-GOP: wait for a keyframe
    recorder = Recorder("room", tmp_path)
    recorder.follow({"video": track})
    (tap,) = recorder.taps.values()
    assert tap.wanted == 1 and tap.layer == -1  # waiting for the top layer's keyframe
    payloaders = [Vp8Encoder(), Vp8Encoder()]
    seqs, bases = [1000, 30000], [12345, 987654321]
    started, wall_started = time.monotonic(), time.time()
    for i in range(len(small)):
        layers = [(0, small[i]), (1, large[i])] if i < len(large) else [(0, small[i])]
        for index, picture in layers:
            stream = track.streams[index]
            stream.media_ssrc = 5000 + index
            payloads = payloaders[index]._packetize(picture, i)
            for n, payload in enumerate(payloads):
                marker = int(n == len(payloads) - 1)
                timestamp = (bases[index] + i * 3000) & 0xFFFFFFFF
                stream.fan_out(payload, memoryview(payload), 0, marker, seqs[index],
                               timestamp, 0, b"")  # fmt: skip
                seqs[index] = (seqs[index] + 1) & 0xFFFF
        await asyncio.sleep(max(0.0, started + (i + 1) / 30 - time.monotonic()))
    assert tap.layer == 0  # fell back to the small layer
    assert 5001 in track.keyframe_requests and 5000 in track.keyframe_requests
    path = recorder.writer.path
    recorder.close()
    await recorder.wait_closed()
    assert track.consumers == [] and recorder.taps == {}
    with av.open(str(path)) as container:
        stamps, sizes = [], []
        for frame in container.decode(video=0):
            stamps.append(float(frame.time))
            sizes.append((frame.width, frame.height))
    large_written = sizes.count((640, 360))
    assert sizes == [(640, 360)] * large_written + [(320, 180)] * (len(sizes) - large_written)
    assert large_written == 30  # from its first keyframe (frame 10) to its last (39)
    # The small layer from its first keyframe after the top has been silent for 1 s
    # (frame 75, or 90 if the switch came late on a loaded machine) to the end.
    assert len(sizes) - large_written in (15, 30)
    assert stamps == sorted(stamps) and stamps[0] == 0.0
    # One clock across both layers: the last picture (104) is where it was sent.
    assert abs(stamps[-1] - (104 - 10) / 30) < 0.2
    assert stamps[large_written] - stamps[large_written - 1] < 1.8
    # The file's zero on the wall clock is when its first picture (frame 10) came.
    started_at = json.loads(path.with_suffix(".json").read_text())["started_at"]
    assert abs(started_at - (wall_started + 10 / 30)) < 0.2


async def test_a_layer_switch_waiting_for_its_keyframe_is_called_off_when_the_top_returns(
    tmp_path: Path,
) -> None:
    track = _LayeredTrack()
    recorder = Recorder("room", tmp_path)
    recorder.follow({"video": track})
    (tap,) = recorder.taps.values()
    top, low = track.streams[1], track.streams[0]
    top.media_ssrc = 7
    payloads = Vp8Encoder()._packetize(sized_pictures(64, 48, 1, gop=1)[0], 1)
    for seq, payload in enumerate(payloads):
        marker = int(seq == len(payloads) - 1)
        top.fan_out(payload, memoryview(payload), 0, marker, seq, 0, 0, b"")
    assert tap.stream is top and tap.target is None  # entered at its keyframe
    tap.switch_to(low)  # the top went quiet: wait for the low layer's keyframe…
    assert tap.target is low and low.joining == [tap]
    tap.switch_to(top)  # …but the top came back first
    assert tap.stream is top and tap.target is None and low.joining == []
    recorder.close()
    await recorder.wait_closed()
    assert track.consumers == [] and top.consumers == []
    assert recorder.writer.path.exists()  # one keyframe written, the file finished


class _AudioTrack(Source):
    """An Opus track fed by hand, like ``_LayeredTrack``."""

    def __init__(self) -> None:
        codec = Codec("audio/opus", 48000, 2, {})
        super().__init__("pub:audio", "pub", "audio", codec, ForwardingStats(), 128_000)

    def _request_keyframe(self, media_ssrc: int) -> None:
        pass

    async def _send_estimate(self, bitrate: int) -> None:
        pass


@pytest.mark.timeout(60)
async def test_the_instructor_s_audio_is_left_out_while_music_is_excluded(
    tmp_path: Path,
) -> None:
    """Music mode's audio excluded from 0.5 s to 1.0 s: the file's audio has a hole
    there and only there; the pictures go on."""
    video, audio = _LayeredTrack(), _AudioTrack()
    recorder = Recorder("room", tmp_path)
    recorder.follow({"video": video, "audio": audio})
    pictures = sized_pictures(64, 48, 38, gop=15)  # one every other step
    payloader = Vp8Encoder()
    top, voice = video.streams[1], audio.streams[0]
    seq = 0
    started = time.monotonic()
    for i in range(75):  # 20 ms steps: a picture every 40 ms, an Opus frame each step
        recorder.audio = not 25 <= i < 50
        if i % 2 == 0 and i // 2 < len(pictures):
            for n, payload in enumerate(payloads := payloader._packetize(pictures[i // 2], i)):
                marker = int(n == len(payloads) - 1)
                top.fan_out(payload, memoryview(payload), 0, marker, seq, i * 1800, 0, b"")
                seq += 1
        frame = b"\xfc\xff\xfe"  # an Opus frame (TOC: 20 ms CELT), content irrelevant
        voice.fan_out(frame, memoryview(frame), 0, 0, 100 + i, i * 960, 0, b"")
        await asyncio.sleep(max(0.0, started + (i + 1) * 0.02 - time.monotonic()))
    path = recorder.writer.path
    recorder.close()
    await recorder.wait_closed()
    with av.open(str(path)) as container:
        stamps = {"video": [], "audio": []}
        for packet in container.demux():
            if packet.pts is not None and packet.size:
                stamps[packet.stream.type].append(float(packet.pts * packet.time_base))
    heard = stamps["audio"]
    assert len(heard) == 75 - 25  # every frame but those of the excluded half second
    gaps = [b - a for a, b in itertools.pairwise(heard) if b - a > 0.1]
    assert len(gaps) == 1 and abs(gaps[0] - 0.52) < 0.1, heard
    assert len(stamps["video"]) == len(pictures)  # pictures throughout
