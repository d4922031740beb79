"""Recording a class for real: bots publish VP8 and Opus through a running server, the
instructor starts and stops recording, and the file is checked with a real demuxer and
decoder (PyAV); then who may list, fetch and delete it.

One server and one class for the whole module (about 25 s): the instructor's bot
publishes, leaves and comes back while the recording runs (tests/recorded_class.py).
tests/test_recording_class_h264.py records the same class with an H.264 instructor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.loopback import loopback_server
from tests.recorded_class import Recorded, check_the_file, record_a_class
from tests.sio_client import Client

# Judged against the wall clock and the bots' frame rate (tests/recorded_class.py), with
# ~0.4 of a core busy (tests/cpu_log.py): beside one other such module, not the parallel part.
pytestmark = [pytest.mark.alone, pytest.mark.paired(seconds=20)]


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("recording"), PULSEROOM_RECORDING="on-request")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def recorded(recording_server: RunningServer) -> Recorded:
    # Set up before any test's event loop runs: a loop of its own.
    return asyncio.run(record_a_class(recording_server))


@pytest.mark.timeout(120)
async def test_the_file_has_both_tracks_in_sync_and_every_picture_decodes(
    recorded: Recorded,
) -> None:
    check_the_file(recorded, "vp8")


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
        assert item["content_type"] == "video/webm"
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
