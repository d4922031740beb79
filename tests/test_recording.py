"""Recording a class for real: bots publish VP8 and Opus through a running server, the
instructor starts and stops recording, and the file is checked with a real demuxer and
decoder (PyAV); then who may list, fetch and delete it.

One server and one class for the whole module (about 25 s): the instructor's bot
publishes, leaves and comes back while the recording runs, as an instructor whose
browser reloads would.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.loopback import loopback_server
from tests.peers import run_bot
from tests.sio_client import Client

# The file is judged against the wall clock and the bots' 15 pictures a second, which a
# bot short of CPU does not keep: the module runs in the alone part (scripts/test). A
# clean-clone CI run on two parallel workers: 143 pictures in 17.9 s and a second gap.
pytestmark = pytest.mark.alone


@dataclass
class Recorded:
    """What the module's class left behind."""

    server: RunningServer
    room_id: str
    host_token: str
    participant_token: str
    path: Path
    wall_s: float  # from the record ack to the stop ack
    left_at_s: float  # when the first bot ended, from the record ack
    broadcasts: list[Any]  # the participant's ``recording`` events


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("recording"), PULSEROOM_RECORDING="on-request")
    yield running
    stop_server(running)


async def record_a_class(server: RunningServer) -> Recorded:
    room = server.create_room("Recorded ride")
    host_link, join_link = str(room["host_link"]), str(room["join_link"])
    host, participant = await Client(server.url).connect(), await Client(server.url).connect()
    try:
        host_ack = await host.join(host_link, "Coach's desk")
        participant_ack = await participant.join(join_link, "Ann")
        assert participant_ack["recording"] is False
        # Seconds counted from each bot's join: a bot process takes 2-6 s to start on a
        # loaded machine.
        first = asyncio.create_task(run_bot(host_link, "Coach", 7))
        bot = await joined(participant, "Coach", set(), first)
        await asyncio.sleep(1.5)  # publishing
        assert await host.call("record", {"v": 1, "on": True}) == {"ok": True, "recording": True}
        started = time.monotonic()
        await participant.wait_for("recording", lambda e: e["on"] is True)
        await participant.wait_for("participant_left", lambda e: e["id"] == bot, timeout=30)
        left_at = time.monotonic() - started  # the instructor left…
        await first
        await asyncio.sleep(1.0)
        second = asyncio.create_task(run_bot(host_link, "Coach", 6))  # …and comes back
        await joined(participant, "Coach", {bot}, second)
        await asyncio.sleep(4.0)
        assert await host.call("record", {"v": 1, "on": False}) == {"ok": True, "recording": False}
        wall = time.monotonic() - started
        await participant.wait_for("recording", lambda e: e["on"] is False)
        await second
        files = list((server.data_dir / "recordings" / room["room"]["id"]).glob("*.webm"))
        assert len(files) == 1, files
        return Recorded(
            server, str(room["room"]["id"]), host_ack["token"], participant_ack["token"],
            files[0], wall, left_at, participant.received["recording"],
        )  # fmt: skip
    finally:
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


@pytest.fixture(scope="module")
def recorded(recording_server: RunningServer) -> Recorded:
    # Set up before any test's event loop runs: a loop of its own.
    return asyncio.run(record_a_class(recording_server))


@pytest.mark.timeout(120)
async def test_the_file_has_both_tracks_in_sync_and_every_picture_decodes(
    recorded: Recorded,
) -> None:
    assert [e["on"] for e in recorded.broadcasts] == [True, False]
    with av.open(str(recorded.path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("vp8", "opus")
        duration = container.duration / 1_000_000
        firsts: dict[str, float] = {}
        stamps: list[float] = []
        pictures = decoded = 0
        decoder = av.CodecContext.create("vp8", "r")
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None:
                continue
            at = float(packet.pts * packet.time_base)
            firsts.setdefault(packet.stream.type, at)
            if packet.stream.type == "video":
                stamps.append(at)
                pictures += 1
                decoded += len(decoder.decode(packet))  # raises on a broken picture
    print(
        f"recording: wall {recorded.wall_s:.2f} s, file {duration:.2f} s, "
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
    assert decoded == pictures > 0.9 * 15 * (duration - away_s)


@pytest.mark.timeout(60)
async def test_recordings_have_the_summary_s_rights_and_ranges(recorded: Recorded) -> None:
    url = f"{recorded.server.url}/api/rooms/{recorded.room_id}/recordings"
    other = recorded.server.create_room("Another class")
    stranger = await Client(recorded.server.url).connect()
    try:
        stranger_token = (await stranger.join(str(other["join_link"]), "Eve"))["token"]
    finally:
        await stranger.close()

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(url)).status_code == 401
        assert (await http.get(url, headers=auth(stranger_token))).status_code == 403
        listing = (await http.get(url, headers=auth(recorded.participant_token))).json()
        (item,) = listing["recordings"]
        assert item["complete"] and item["bytes"] == recorded.path.stat().st_size
        one = f"{url}/{item['id']}"
        assert (await http.get(one)).status_code == 401
        assert (await http.get(one, headers=auth(stranger_token))).status_code == 403
        ranged = {**auth(recorded.participant_token), "Range": "bytes=0-99"}
        part = await http.get(one, headers=ranged)
        assert part.status_code == 206 and part.content == recorded.path.read_bytes()[:100]
        full = await http.get(one, headers=auth(recorded.host_token))
        assert full.status_code == 200 and full.headers["content-type"] == "video/webm"
        assert (await http.get(f"{url}/nope", headers=auth(recorded.host_token))).status_code == 404
        refused = await http.delete(one, headers=auth(recorded.participant_token))
        assert refused.status_code == 403
        assert (await http.delete(one, headers=auth(recorded.host_token))).status_code == 200
        assert (await http.get(one, headers=auth(recorded.host_token))).status_code == 404
        assert (await http.get(url, headers=auth(recorded.host_token))).json() == {"recordings": []}
    # The deletion is in the audit log, from where it came.
    audit = recorded.server.instructor().client.get(
        "/api/admin/audit", params={"action": "recording_deleted"}
    )
    assert [(e["target"], e["address"]) for e in audit.json()["entries"]] == [
        (f"recording {item['id']} of class {recorded.room_id}", "127.0.0.1")
    ]


@pytest.mark.timeout(60)
async def test_off_refuses_and_always_records_from_the_instructor_s_arrival(
    tmp_path: Path,
) -> None:
    async with loopback_server(tmp_path / "off", PULSEROOM_RECORDING="off") as server:
        room = await server.create_room("Never recorded")
        host = await Client(server.url).connect()
        try:
            assert (await host.join(str(room["host_link"]), "Coach"))["recording"] is False
            refused = await host.call("record", {"v": 1, "on": True})
            assert refused["error"]["code"] == "recording_off"
        finally:
            await host.close()
    async with loopback_server(tmp_path / "always", PULSEROOM_RECORDING="always") as server:
        room = await server.create_room("Always recorded")
        host, participant = await Client(server.url).connect(), await Client(server.url).connect()
        try:
            assert (await participant.join(str(room["join_link"]), "Ann"))["recording"] is False
            assert (await host.join(str(room["host_link"]), "Coach"))["recording"] is True
            await participant.wait_for("recording", lambda e: e["on"] is True)
            refused = await host.call("record", {"v": 1, "on": False})
            assert refused["error"]["code"] == "bad_request"
            by_participant = await participant.call("record", {"v": 1, "on": False})
            assert by_participant["error"]["code"] == "forbidden"
        finally:
            await host.close()
            await participant.close()
