"""A class recorded for real, for the recording tests: bots publish through a running
server, the instructor starts and stops recording, and the instructor's bot leaves and
comes back meanwhile (as an instructor whose browser reloads would); then the file is
checked with a real demuxer and decoder (PyAV).

The file is judged against the wall clock and the bots' 15 pictures a second, which a
bot short of CPU does not keep: the modules using this run in the alone part
(scripts/test). A clean-clone CI run on two parallel workers: 143 pictures in 17.9 s and
a second gap.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from tests.conftest import RunningServer
from tests.peers import run_bot, start_bot
from tests.sio_client import Client

BOT_FPS = 15  # SyntheticVideo's


@dataclass
class Recorded:
    """What a recorded class left behind."""

    server: RunningServer
    room_id: str
    host_token: str
    participant_token: str
    participant_summary_token: str  # what her summary (and replay) link carries
    path: Path
    wall_s: float  # from the record ack to the stop ack
    left_at_s: float  # when the first bot ended, from the record ack
    broadcasts: list[Any]  # the participant's ``recording`` events


async def record_a_class(
    server: RunningServer, *instructor_args: str, other_publisher: tuple[str, ...] | None = None
) -> Recorded:
    """Record a class whose instructor's bot (``instructor_args``: its options, e.g.
    ``--codec h264``) publishes, leaves and comes back; ``other_publisher``: the options
    of a participant's bot publishing throughout as well."""
    room = server.create_room("Recorded ride")
    host_link, join_link = str(room["host_link"]), str(room["join_link"])
    host, participant = await Client(server.url).connect(), await Client(server.url).connect()
    other = None
    try:
        host_ack = await host.join(host_link, "Coach's desk")
        participant_ack = await participant.join(join_link, "Ann")
        assert participant_ack["recording"] is False
        if other_publisher is not None:
            other = await start_bot(join_link, "Bea", 25, *other_publisher)
        # Seconds counted from each bot's join: a bot process takes 2-6 s to start on a
        # loaded machine.
        first = asyncio.create_task(run_bot(host_link, "Coach", 7, *instructor_args))
        bot = await joined(participant, "Coach", set(), first)
        await asyncio.sleep(1.5)  # publishing
        assert await host.call("record", {"v": 1, "on": True}) == {"ok": True, "recording": True}
        started = time.monotonic()
        await participant.wait_for("recording", lambda e: e["on"] is True)
        await participant.wait_for("participant_left", lambda e: e["id"] == bot, timeout=30)
        left_at = time.monotonic() - started  # the instructor left…
        await first
        await asyncio.sleep(1.0)
        second = asyncio.create_task(run_bot(host_link, "Coach", 6, *instructor_args))
        await joined(participant, "Coach", {bot}, second)  # …and comes back
        await asyncio.sleep(4.0)
        assert await host.call("record", {"v": 1, "on": False}) == {"ok": True, "recording": False}
        wall = time.monotonic() - started
        await participant.wait_for("recording", lambda e: e["on"] is False)
        await second
        directory = server.data_dir / "recordings" / room["room"]["id"]
        files = [p for p in directory.iterdir() if p.suffix in (".webm", ".mkv")]
        assert len(files) == 1, files
        return Recorded(
            server, str(room["room"]["id"]), host_ack["token"], participant_ack["token"],
            participant_ack["summary_token"], files[0], wall, left_at,
            participant.received["recording"],
        )  # fmt: skip
    finally:
        if other is not None and other.returncode is None:
            other.terminate()
            await other.wait()
        await host.close()
        await participant.close()


async def joined(watcher: Client, name: str, known: set[str], bot: asyncio.Task[Any]) -> str:
    """The id of the next participant called ``name`` to join (not one of ``known``)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not bot.done():
        for event in watcher.received["participant_joined"]:
            person = event["participant"]
            if person["name"] == name and person["id"] not in known:
                return str(person["id"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} did not join: {bot.result() if bot.done() else 'timeout'}")


def check_the_file(recorded: Recorded, codec: str) -> None:
    """Both tracks, in sync, as long as the wall time it was recorded in, with the pause
    while the instructor was away, and every picture there and decoding."""
    assert [e["on"] for e in recorded.broadcasts] == [True, False]
    with av.open(str(recorded.path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == (codec, "opus")
        duration = container.duration / 1_000_000
        firsts: dict[str, float] = {}
        stamps: list[float] = []
        pictures = decoded = 0
        decoder = av.CodecContext.create(codec, "r")
        decoder.extradata = video.codec_context.extradata  # H.264's avcC
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None:
                continue
            at = float(packet.pts * packet.time_base)
            firsts.setdefault(packet.stream.type, at)
            if packet.stream.type == "video":
                stamps.append(at)
                pictures += 1
                frames = decoder.decode(packet)  # raises on a picture it cannot read
                assert not any(f.is_corrupt for f in frames), at  # nor one missing a reference
                decoded += len(frames)
        decoded += len(decoder.decode(None))
    print(
        f"recording ({codec}): wall {recorded.wall_s:.2f} s, file {duration:.2f} s, "
        f"{pictures} pictures, first video {firsts['video']:.3f} s, audio {firsts['audio']:.3f} s"
    )  # the figures for the report
    assert abs(duration - recorded.wall_s) < 1.0
    assert abs(firsts["video"] - firsts["audio"]) < 0.080
    # The pause while the instructor was away, and pictures on both sides of it.
    gaps = [(a, b - a) for a, b in itertools.pairwise(stamps) if b - a > 1.0]
    assert len(gaps) == 1, gaps
    ((away_at, away_s),) = gaps
    assert abs(away_at - recorded.left_at_s) < 1.0
    assert away_at > 3.0 and stamps[-1] - (away_at + away_s) > 3.0
    # The bot sends 15 pictures a second: (nearly) all of them are there, and decode.
    assert decoded == pictures > 0.9 * BOT_FPS * (duration - away_s)
