"""H.264 in recordings: RTP payloads (RFC 6184) back into access units, byte by byte
and from real x264 pictures packetized by aiortc's own H.264 payloader (what a bot
sends), reordered, duplicated and lost; those written into Matroska without re-encoding
and decoded back by a real decoder (PyAV); the recorder following an instructor whose
codec changes; and the listing of recordings in both formats.
"""

from __future__ import annotations

import asyncio
import random
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from hypothesis import given
from hypothesis import strategies as st

from sfu import h264
from sfu.depacketize import Frame, FrameAssembler, H264Pictures
from sfu.forwarder import Codec, Source
from sfu.recorder import Recorder
from sfu.recording_file import RecordingFile
from sfu.stats import ForwardingStats
from storage.recordings import RecordingFiles
from tests.test_recording_frames import sized_pictures

Packet = tuple[int, int, int, bytes]  # seq, timestamp, marker, payload
SC = h264.START_CODE


def x264_pictures(
    count: int, width: int = 320, height: int = 240, keyframes: tuple[int, ...] = ()
) -> list[list[bytes]]:
    """``count`` pictures of a moving noise image from aiortc's H264Encoder (x264,
    baseline), each as its NAL units."""
    encoder = H264Encoder()
    noise = np.random.default_rng(5).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pictures = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(np.roll(noise, i * 4, axis=1), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = i, Fraction(1, 30)
        pictures.append(list(encoder._encode_frame(frame, i in keyframes)))
    return pictures


def packetize(pictures: list[list[bytes]], first_seq: int = 65530) -> list[Packet]:
    """RTP packets (single NAL, STAP-A, FU-A) of the pictures, 3000 ticks apart."""
    packets: list[Packet] = []
    seq = first_seq
    for i, units in enumerate(pictures):
        payloads = H264Encoder._packetize(units)
        for n, payload in enumerate(payloads):
            packets.append((seq, i * 3000, int(n == len(payloads) - 1), payload))
            seq = (seq + 1) & 0xFFFF
    return packets


def annex_b(units: list[bytes]) -> bytes:
    return SC + SC.join(units)


def assemble(assembler: FrameAssembler, packets: list[Packet]) -> list[Frame]:
    frames: list[Frame] = []
    for seq, timestamp, marker, payload in packets:
        frames += assembler.push(seq, timestamp, marker, payload, 0.0)
    return frames


# A baseline SPS (x264, 320x180: 20x12 macroblocks cropped by 12 rows), its PPS, and
# slices whose first macroblock is 0 (first bit 1) or not (0x00...: first_mb > 0).
SPS_320x180 = bytes.fromhex("6742c01fd901419f9e10000003001000000303c8f1832480")
PPS = bytes.fromhex("68cb8cb2")
IDR_START = bytes([0x65, 0x88, 0x84, 0x00, 0x33])
IDR_MIDDLE = bytes([0x65, 0x05, 0x12, 0x34])
P_START = bytes([0x41, 0x9A, 0x02, 0x05])


def stap_a(*units: bytes) -> bytes:
    return bytes([0x78]) + b"".join(struct.pack("!H", len(u)) + u for u in units)


def fu_a(unit: bytes, pieces: int) -> list[bytes]:
    body = unit[1:]
    step = -(-len(body) // pieces)
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    out = []
    for n, chunk in enumerate(chunks):
        header = unit[0] & 0x1F | (0x80 if n == 0 else 0) | (0x40 if n == len(chunks) - 1 else 0)
        out.append(bytes([unit[0] & 0xE0 | 28, header]) + chunk)
    return out


def test_single_stap_a_and_fu_a_payloads_give_the_nal_units() -> None:
    idr = IDR_START + bytes(range(200))
    parts = [stap_a(SPS_320x180, PPS), *fu_a(idr, 3), IDR_MIDDLE]
    assert h264.nal_units(parts) == [SPS_320x180, PPS, idr, IDR_MIDDLE]
    assert h264.sps_size(SPS_320x180) == (320, 180)
    data, keyframe = H264Pictures().picture(parts)
    assert keyframe and data == annex_b([SPS_320x180, PPS, idr, IDR_MIDDLE])
    assert h264.keyframe_size(data) == (320, 180)
    # Which packets start a picture.
    starts = H264Pictures().starts
    assert starts(parts[0]) and starts(fu_a(idr, 3)[0]) and starts(P_START)
    assert not starts(fu_a(idr, 3)[1]) and not starts(IDR_MIDDLE) and not starts(b"")


@pytest.mark.parametrize(
    "parts",
    [
        [fu_a(IDR_START + bytes(50), 2)[1]],  # an FU-A fragment without its start
        [fu_a(IDR_START + bytes(50), 2)[0]],  # … without its end
        [fu_a(IDR_START + bytes(50), 2)[0], P_START],
        [stap_a(SPS_320x180, PPS)[:-2]],  # a STAP-A cut short
        [bytes([0x78, 0x00, 0x00])],  # a STAP-A unit of size 0
        [bytes([0x79, 0x00])],  # STAP-B: not packetization mode 1
        [bytes([0x7C])],  # an FU-A without its header
    ],
)
def test_payloads_that_cannot_make_a_picture_are_refused(parts: list[bytes]) -> None:
    with pytest.raises(ValueError):
        H264Pictures().picture(parts)


def test_an_idr_without_parameter_sets_gets_the_last_ones_or_is_no_keyframe() -> None:
    pictures = H264Pictures()
    data, keyframe = pictures.picture([IDR_START])
    assert not keyframe and data == annex_b([IDR_START])  # none seen: no file starts here
    pictures.picture([stap_a(SPS_320x180, PPS), IDR_START])
    aud = bytes([0x09, 0xF0])
    data, keyframe = pictures.picture([aud, IDR_START])
    assert keyframe and data == annex_b([aud, SPS_320x180, PPS, IDR_START])
    assert pictures.picture([P_START]) == (annex_b([P_START]), False)
    pictures.reset()  # a new stream: its own parameter sets
    assert pictures.picture([IDR_START])[1] is False


@given(st.binary(max_size=40), st.lists(st.binary(max_size=30), max_size=4))
def test_any_bytes_give_a_picture_or_a_value_error(first: bytes, rest: list[bytes]) -> None:
    pictures = H264Pictures()
    pictures.starts(first)
    try:
        data, _keyframe = pictures.picture([first, *rest])
    except ValueError:
        return
    assert data.startswith(SC)
    h264.keyframe_size(data)  # never raises


@pytest.mark.parametrize(
    ("width", "height", "profile"),
    [(320, 180, "baseline"), (1280, 720, "high"), (642, 360, "main"), (176, 144, "high")],
)
def test_the_size_comes_from_a_real_sps(width: int, height: int, profile: str) -> None:
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.options = {"tune": "zerolatency", "profile": profile}
    codec.open()
    frame = av.VideoFrame(width, height, "yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in codec.encode(frame))
    data += b"".join(bytes(p) for p in codec.encode(None))
    assert h264.keyframe_size(data.replace(b"\x00\x00\x01", SC)) == (width, height)


def test_reordered_and_duplicated_packets_give_every_access_unit_once() -> None:
    pictures = x264_pictures(40, keyframes=(20,))
    packets = packetize(pictures)
    assert len(packets) > len(pictures)  # FU-A: pictures over several packets
    rng = random.Random(11)
    shuffled = packets[:1]
    for start in range(1, len(packets), 5):
        window = packets[start : start + 5]
        rng.shuffle(window)
        shuffled += window + window[-1:]
    frames = assemble(FrameAssembler(H264Pictures()), shuffled)
    assert [f.data for f in frames] == [annex_b(units) for units in pictures]
    assert [i for i, f in enumerate(frames) if f.keyframe] == [0, 20]
    assert not any(f.after_loss for f in frames)


def test_a_lost_fragment_drops_its_picture_and_marks_the_next() -> None:
    pictures = x264_pictures(200, keyframes=(150,))
    packets = packetize(pictures, first_seq=10)
    # A middle FU-A fragment of picture 0 (the IDR, split over many packets).
    lost = next(i for i, p in enumerate(packets) if p[3][0] & 0x1F == 28 and not p[3][1] & 0xC0)
    assembler = FrameAssembler(H264Pictures())
    frames = assemble(assembler, packets[:lost] + packets[lost + 1 :])
    assert assembler.lost_holes == 1
    assert frames[0].timestamp > 0 and frames[0].after_loss and not frames[0].keyframe
    assert [f.timestamp for f in frames if f.keyframe] == [150 * 3000]


def test_access_units_written_into_matroska_demux_and_every_one_decodes(tmp_path: Path) -> None:
    pictures = x264_pictures(45, width=320, height=180, keyframes=(30,))
    writer = RecordingFile(tmp_path, "20260101T000000Z")
    writer.open("h264", 320, 180, 1_767_225_600.0)
    assert writer.path == tmp_path / "20260101T000000Z.mkv"
    pictures_of = H264Pictures()
    for i, units in enumerate(pictures):
        data, keyframe = pictures_of.picture(H264Encoder._packetize(units))
        writer.write_video(i * 33, data, keyframe)
        writer.write_audio(i * 33, b"\xfc\xff\xfe")
    writer.close()
    with av.open(str(writer.path)) as container:
        assert container.format.name.startswith("matroska")
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert (video.codec_context.width, video.codec_context.height) == (320, 180)
        assert container.streams.audio[0].codec_context.name == "opus"
        frames = list(container.decode(video=0))
    assert len(frames) == len(pictures) and not any(f.is_corrupt for f in frames)
    assert (frames[0].width, frames[0].height) == (320, 180)


class _Track(Source):
    """A one-layer video track with no publisher behind it, fed through its Stream."""

    def __init__(self, mime_type: str, name: str) -> None:
        codec = Codec(mime_type, 90000, None, {})
        super().__init__(name, "pub", "video", codec, ForwardingStats(), 2_000_000)
        self.keyframe_requests = 0

    def _request_keyframe(self, media_ssrc: int) -> None:
        self.keyframe_requests += 1

    async def _send_estimate(self, bitrate: int) -> None:
        pass


def feed(track: _Track, ssrc: int, payloads: list[list[bytes]], seq: int, step: int) -> None:
    stream = track.streams[0]
    if stream.media_ssrc != ssrc:
        stream.new_ssrc(ssrc)
    for i, picture in enumerate(payloads):
        for n, payload in enumerate(picture):
            marker = int(n == len(picture) - 1)
            stream.fan_out(payload, memoryview(payload), 0, marker, seq, (step + i) * 3000, 0, b"")
            seq = (seq + 1) & 0xFFFF


async def test_the_recorder_writes_h264_to_mkv_and_starts_a_new_file_for_another_codec(
    tmp_path: Path,
) -> None:
    """An H.264 instructor (joined mid-GOP: the file waits for the keyframe it asks
    for), then the same instructor back with a new SSRC, then publishing VP8: the
    H.264 file has every picture from its first keyframe on, decoding; the VP8 pictures
    go into a second file, a WebM."""
    recorder = Recorder("room", tmp_path)
    first = _Track("video/H264", "pub:video")
    recorder.follow({"video": first})
    pictures = x264_pictures(40, keyframes=(10, 25))
    payloads = [H264Encoder._packetize(units) for units in pictures]
    feed(first, 1111, payloads[5:20], 100, 5)  # from picture 10 (a keyframe) on
    assert first.keyframe_requests == 1  # asked at its first packet
    await asyncio.sleep(0.05)
    feed(first, 2222, payloads[20:], 40000, 20)  # rejoined: a new SSRC, from its keyframe 25
    h264_file = recorder.writer
    assert h264_file.path is not None and h264_file.path.suffix == ".mkv"
    vp8 = _Track("video/VP8", "pub:video2")
    recorder.follow({"video": vp8})
    assert h264_file.path.exists() is False  # not before VP8's first keyframe comes
    vp8_pictures = sized_pictures(64, 48, 10, gop=30)
    packer = Vp8Encoder()
    feed(vp8, 3333, [packer._packetize(p, i) for i, p in enumerate(vp8_pictures)], 7, 0)
    assert h264_file.path.exists() and recorder.writer is not h264_file
    webm = recorder.writer.path
    recorder.close()
    await recorder.wait_closed()
    assert webm is not None and webm.suffix == ".webm" and webm.exists()
    with av.open(str(h264_file.path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == (20 - 10) + (40 - 25) and not any(f.is_corrupt for f in frames)
    with av.open(str(webm)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(vp8_pictures)
    listed = RecordingFiles(tmp_path.parent).list(tmp_path.name)
    assert [(r.id, r.media_type, r.complete) for r in listed] == [
        (h264_file.path.stem, "video/x-matroska", True),
        (webm.stem, "video/webm", True),
    ]


def test_recordings_are_listed_found_and_deleted_in_both_formats(tmp_path: Path) -> None:
    files = RecordingFiles(tmp_path)
    room = tmp_path / "room1"
    room.mkdir()
    (room / "20260101T000000Z.mkv").write_bytes(b"x" * 5)
    (room / "20260101T000000Z.json").write_text('{"started_at": 1767225600.5}')
    (room / "20260101T000001Z.webm.part").write_bytes(b"y")
    (room / "20260101T000002Z.mkv.part").write_bytes(b"z")
    (room / "20260101T000003Z.mp4").write_bytes(b"not ours")
    listed = files.list("room1")
    assert [(r.id, r.complete, r.media_type, r.started_at) for r in listed] == [
        ("20260101T000000Z", True, "video/x-matroska", 1767225600.5),
        ("20260101T000001Z", False, "video/webm", None),
        ("20260101T000002Z", False, "video/x-matroska", None),
    ]
    assert files.path("room1", "20260101T000000Z") == room / "20260101T000000Z.mkv"
    assert files.path("room1", "20260101T000002Z") is None  # unfinished
    assert files.in_progress("room1", "20260101T000002Z")
    assert files.path("room1", "../room1/20260101T000000Z") is None
    assert files.delete("room1", "20260101T000000Z")
    assert not (room / "20260101T000000Z.mkv").exists()
    assert not (room / "20260101T000000Z.json").exists()
