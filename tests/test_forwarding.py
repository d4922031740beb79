"""Forwarding behaviour with real aiortc peers: loss recovery, pausing, keyframes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport

from pulseroom.bot import Bot
from tests.conftest import RunningServer
from tests.peers import join, start_bot

VP8_PT, VP8_RTX_PT = 97, 98  # aiortc's offer numbering, which the SFU uses for subscribers


def video_of(bot: Bot, publisher_name: str) -> Any:
    return next(
        t for t in bot.tracks.values()
        if t.kind == "video" and bot.names.get(t.publisher_id) == publisher_name
    )  # fmt: skip


@pytest.mark.timeout(90)
async def test_lossy_subscriber_recovers_through_nack_and_rtx(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every 10th video packet to this subscriber is lost; the SFU resends from its cache."""
    seen = {"dropped": 0, "rtx": 0}
    original = RTCDtlsTransport._handle_rtp_data
    counter = iter(range(10**9))

    async def lossy(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
        pt = data[1] & 0x7F
        if pt == VP8_RTX_PT:
            seen["rtx"] += 1
        elif pt == VP8_PT and next(counter) % 10 == 9:
            seen["dropped"] += 1
            return
        await original(self, data, arrival_time_ms)

    # Only this process's peer (the subscriber) is affected: the server is another process.
    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", lossy)
    room = server.create_room("Lossy")
    coach = await join(str(room["host_link"]), "Coach")
    ann = await start_bot(str(room["join_link"]), "Ann", 8)
    try:
        await asyncio.sleep(7)
        track = video_of(coach, "Ann")
        stats = server.stats()
        assert seen["dropped"] > 10
        assert stats["nacks_received"] > 0
        assert stats["retransmitted_packets"] >= seen["dropped"] // 2, (stats, seen)
        assert seen["rtx"] >= seen["dropped"] // 2, seen
        assert track.frames > 40, "the picture kept going despite 10 % loss"
    finally:
        await coach.stop()
        await ann.wait()


@pytest.mark.timeout(90)
async def test_video_nobody_shows_is_not_sent_and_resumes_with_a_keyframe(
    server: RunningServer,
) -> None:
    room = server.create_room("Pause")
    coach = await join(str(room["host_link"]), "Coach")
    ann = await start_bot(str(room["join_link"]), "Ann", 12)
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            if coach.tracks and all(t.frames > 3 for t in coach.tracks.values()):
                break
        video = video_of(coach, "Ann")
        audio = next(t for t in coach.tracks.values() if t.kind == "audio")
        assert video.frames > 3

        assert (await coach.call("visibility", {"visible": []}))["ok"]
        await asyncio.sleep(0.5)  # what was in flight arrives
        video_before, audio_before = video.packets, audio.packets
        await asyncio.sleep(2)
        assert video.packets - video_before <= 2, "paused video kept flowing"
        assert audio.packets - audio_before > 60, "audio is never paused"

        requests_before = server.stats()["keyframe_requests"]
        frames_before = video.frames
        ann_id = video.publisher_id
        assert (await coach.call("visibility", {"visible": [ann_id]}))["ok"]
        await asyncio.sleep(1.0)
        assert video.frames - frames_before >= 5, "the picture came back within a second"
        assert server.stats()["keyframe_requests"] > requests_before
    finally:
        await coach.stop()
        await ann.wait()


@pytest.mark.timeout(90)
async def test_active_speaker_is_announced(server: RunningServer) -> None:
    room = server.create_room("Speaker")
    coach = await join(str(room["host_link"]), "Coach", silent=True)
    ann = await start_bot(str(room["join_link"]), "Ann", 8)
    try:
        await asyncio.sleep(5)
        speakers = [who for _, kind, who in coach.timeline if kind == "active_speaker"]
        ann_id = next(i for i, n in coach.names.items() if n == "Ann")
        assert speakers and speakers[-1] == ann_id, (speakers, coach.names)
        assert coach.you["id"] not in speakers, "silence never counts as speech"
    finally:
        await coach.stop()
        await ann.wait()


@pytest.mark.timeout(90)
async def test_publisher_is_held_to_the_class_video_cap(tmp_path: Any) -> None:
    """Subscribers' REMB (aiortc's estimate on loopback: megabits) is folded under the cap."""
    from tests.conftest import start_server, stop_server

    server = start_server(tmp_path, PULSEROOM_VIDEO_KBPS="300")
    try:
        room = server.create_room("Capped")
        coach = await join(str(room["host_link"]), "Coach")
        ann = await start_bot(str(room["join_link"]), "Ann", 8)
        try:
            assert coach.publish_pc is not None
            sender = next(s for s in coach.publish_pc.getSenders() if s.kind == "video")
            targets: list[int] = []
            for _ in range(60):
                await asyncio.sleep(0.1)
                encoder = sender.__dict__.get("_RTCRtpSender__encoder")
                if encoder is not None and encoder.target_bitrate != 500_000:
                    targets.append(encoder.target_bitrate)
                    break
            assert targets and targets[0] <= 300_000, targets
        finally:
            await coach.stop()
            await ann.wait()
    finally:
        stop_server(server)
