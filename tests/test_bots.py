"""Real aiortc peers (the ``pulseroom bot`` command) in a class through a real server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, RunningServer, start_server, stop_server
from tests.peers import run_bot


def received(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(publisher name, kind) → track figures, for tracks that really carried media."""
    return {(t["publisher"], t["kind"]): t for t in report["tracks"]}


def assert_flowing(
    tracks: dict[tuple[str, str], dict[str, Any]], expected: set[tuple[str, str]]
) -> None:
    assert set(tracks) == expected, f"expected {sorted(expected)}, got {sorted(tracks)}"
    for key, track in tracks.items():
        assert track["packets"] > 20, f"{key}: {track}"
        assert track["bytes"] > 1000, f"{key}: {track}"
        assert track["frames"] > 5, f"{key}: {track}"
        assert (
            track["time_to_first_frame_s"] is not None and track["time_to_first_frame_s"] < 3.0
        ), f"{key}: {track}"


async def class_of_four(server: RunningServer, gallery: bool) -> list[dict[str, Any]]:
    room = server.create_room("Bots")
    host_link, join_link = str(room["host_link"]), str(room["join_link"])
    extra = ("--gallery",) if gallery else ()
    host = asyncio.create_task(run_bot(host_link, "Coach", 14, *extra))
    await asyncio.sleep(2.5)
    participants = [
        asyncio.create_task(run_bot(join_link, name, 9)) for name in ("Ann", "Bob", "Cy")
    ]
    return [await host, *[await p for p in participants]]


@pytest.mark.timeout(120)
async def test_instructor_mode_topology(server: RunningServer) -> None:
    host, *participants = await class_of_four(server, gallery=False)
    kinds = ("audio", "video")
    assert_flowing(received(host), {(n, k) for n in ("Ann", "Bob", "Cy") for k in kinds})
    for report in participants:
        assert_flowing(received(report), {("Coach", k) for k in kinds})
    assert server.stats()["forwarded_packets"] > 2000


@pytest.mark.alone  # a deadline measured in wall time: the cores to itself
@pytest.mark.timeout(120)
async def test_gallery_mode_topology(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        host, *participants = await class_of_four(server, gallery=True)
        names = ("Ann", "Bob", "Cy")
        kinds = ("audio", "video")
        assert_flowing(received(host), {(n, k) for n in names for k in kinds})
        for report in participants:
            me = report["you"]["name"]
            expected = {(n, k) for n in ("Coach", *names) if n != me for k in kinds}
            assert_flowing(received(report), expected)
    finally:
        stop_server(server)


def test_bot_refuses_a_bad_link() -> None:
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pulseroom.cli",
            "bot",
            "http://127.0.0.1:9/nowhere",
            "--seconds",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not a class link" in result.stderr


@pytest.mark.timeout(120)
async def test_h264_only_publisher_is_forwarded_as_h264(server: RunningServer) -> None:
    room = server.create_room("H.264")
    host = asyncio.create_task(run_bot(str(room["host_link"]), "Coach", 10))
    await asyncio.sleep(2)
    ann = await run_bot(str(room["join_link"]), "Ann", 6, "--codec", "h264")
    coach = await host
    tracks = received(coach)
    assert_flowing(tracks, {("Ann", "audio"), ("Ann", "video")})
    assert tracks[("Ann", "video")]["codec"] == "video/H264"
    assert received(ann)[("Coach", "video")]["codec"] == "video/VP8"


def make_workout_file(path: Path, seconds: float = 6.0) -> None:
    """A small WebM with VP8 video and Opus audio, like a recorded workout."""
    import fractions

    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        video = container.add_stream("libvpx", rate=15)
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        video.bit_rate = 300_000
        # Passthrough cannot honour keyframe requests: like real recordings, the file
        # has a keyframe every 2 s, so a subscriber joining mid-file gets a picture.
        video.codec_context.gop_size = 30
        audio = container.add_stream("libopus", rate=48000)
        audio.layout = "mono"
        frames = int(seconds * 15)
        for i in range(frames):
            image = np.full((180, 320, 3), (i * 3) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, 15)
            for packet in video.encode(frame):
                container.mux(packet)
        samples_per_frame = 960
        for i in range(int(seconds * 48000 / samples_per_frame)):
            t = (np.arange(samples_per_frame) + i * samples_per_frame) / 48000
            pcm = (3000 * np.sin(2 * np.pi * 330 * t)).astype(np.int16).reshape(1, -1)
            aframe = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            aframe.sample_rate = 48000
            aframe.pts = i * samples_per_frame
            for packet in audio.encode(aframe):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)


@pytest.mark.timeout(120)
async def test_recorded_workout_is_played_without_reencoding(
    server: RunningServer, tmp_path: Path
) -> None:
    workout = tmp_path / "workout.webm"
    make_workout_file(workout)
    room = server.create_room("Replay")
    host = asyncio.create_task(run_bot(str(room["host_link"]), "Viewer", 9))
    await asyncio.sleep(2)
    player = await run_bot(str(room["join_link"]), "Recorded", 6, "--video", str(workout))
    assert player["published"] == {
        "source": str(workout),
        "video_codec": "vp8",
        "passthrough": True,
    }
    tracks = received(await host)
    assert_flowing(tracks, {("Recorded", "audio"), ("Recorded", "video")})
    assert tracks[("Recorded", "video")]["codec"] == "video/VP8"


@pytest.mark.timeout(120)
async def test_leaver_disappears_from_everyone_within_2s(server: RunningServer) -> None:
    from client.protocol import parse_link
    from pulseroom.bot import Bot

    room = server.create_room("Leave")
    base, room_id, token = parse_link(str(room["host_link"]))
    coach = Bot(base_url=base, token=token, name="Coach", video="synthetic", room=room_id)
    await coach.start()
    try:
        report = await run_bot(str(room["join_link"]), "Ann", 4)
        left_process_at = asyncio.get_running_loop().time()
        ann_id = report["you"]["id"]
        await asyncio.sleep(2.5)
        left = [
            t for t, kind, who in coach.timeline if kind == "participant_left" and who == ann_id
        ]
        assert left, coach.timeline
        offers_without_ann = [
            t
            for t, kind, active in coach.timeline
            if kind == "subscribe_offer" and t >= left[0] and ann_id not in active
        ]
        assert offers_without_ann, coach.timeline
        # The bot's clock is the loop's monotonic clock; both are time.monotonic().
        assert offers_without_ann[0] - left[0] < 2.0
        assert left[0] - left_process_at < 2.0
        ann_tracks = [t for t in coach.tracks.values() if t.publisher_id == ann_id]
        assert len(ann_tracks) == 2 and all(t.frames > 5 for t in ann_tracks)
    finally:
        await coach.stop()


def test_sequence_tracker_counts_gaps_across_the_wrap() -> None:
    from pulseroom.bot import SequenceTracker

    tracker = SequenceTracker()
    for seq in [65530, 65531, 65533, 65535, 0, 1, 3, 65532, 4]:  # late 65532, missing 65534 and 2
        tracker.add(seq)
    assert tracker.loss_percent == round(100 * 2 / 11, 3)
