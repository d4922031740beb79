"""Recording a class whose instructor publishes H.264 (``pulseroom bot --codec h264``)
beside a participant publishing VP8: the instructor's bot leaves and comes back while
the recording runs (tests/recorded_class.py); the file is Matroska, checked with a real
demuxer and decoder (PyAV), served as such, and played by the replay page in Chromium.

One server and one class for the module (about 25 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.browser_fixtures import (
    NEEDS_CHROMIUM,
    browser_fixture,  # noqa: F401 (fixture "browser")
    open_tab,
)
from tests.conftest import RunningServer, start_server, stop_server
from tests.recorded_class import Recorded, check_the_file, record_a_class

# Judged against the wall clock and the bots' frame rate (tests/recorded_class.py).
# ~0.6 of a core busy (tests/cpu_log.py): beside one other such module, as test_recording.
pytestmark = [
    pytest.mark.alone,
    pytest.mark.paired(seconds=23),
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest.fixture(scope="module")
def h264_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("h264"), PULSEROOM_RECORDING="on-request")
    yield running
    stop_server(running)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def recorded(h264_server: RunningServer) -> AsyncIterator[Recorded]:
    yield await record_a_class(h264_server, "--codec", "h264", other_publisher=())


@pytest.mark.timeout(150)
async def test_the_mkv_has_both_tracks_in_sync_and_every_picture_decodes(
    recorded: Recorded,
) -> None:
    assert recorded.path.suffix == ".mkv"
    check_the_file(recorded, "h264")


@pytest.mark.timeout(60)
async def test_the_recording_is_listed_and_served_as_matroska(recorded: Recorded) -> None:
    url = f"{recorded.server.url}/api/rooms/{recorded.room_id}/recordings"
    headers = {"Authorization": f"Bearer {recorded.participant_token}"}
    async with httpx.AsyncClient(timeout=10) as http:
        (item,) = (await http.get(url, headers=headers)).json()["recordings"]
        assert item["id"] == recorded.path.stem and item["complete"]
        assert item["content_type"] == "video/x-matroska"
        part = await http.get(f"{url}/{item['id']}", headers={**headers, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == recorded.path.read_bytes()[:100]
    assert part.headers["content-type"] == "video/x-matroska"


@NEEDS_CHROMIUM
@pytest.mark.timeout(60)
async def test_the_replay_page_plays_the_h264_recording(recorded: Recorded, browser: Any) -> None:
    tab = await open_tab(browser, "h264-replay", enforce_csp=True)
    try:
        await tab.page.goto(
            f"{recorded.server.url}/r/{recorded.room_id}/replay?rec={recorded.path.stem}"
            f"#t={recorded.participant_summary_token}"
        )
        video = tab.page.get_by_test_id("replay-video")
        state = "v => [v.readyState, v.videoWidth, v.currentTime, v.error && v.error.message]"
        deadline = time.monotonic() + 15
        while (shown := await video.evaluate(state))[0] < 2:
            assert shown[3] is None and time.monotonic() < deadline, (shown, tab.diagnostics())
            await asyncio.sleep(0.1)
        assert shown[1] == 320, shown  # the bot's picture, decoded by the page's <video>
        await video.evaluate("v => { v.muted = true; return v.play(); }")
        await asyncio.sleep(1.0)
        assert (await video.evaluate(state))[2] > shown[2] + 0.5
        # The file to download (a browser without H.264 or Matroska gets it this way),
        # fetched with the ticket cookie alone.
        fetched = await tab.page.get_by_test_id("replay-download").evaluate(
            "async a => { const r = await fetch(a.href, {headers: {Range: 'bytes=0-3'}});"
            " return [r.status, r.headers.get('content-type'), a.hidden]; }"
        )
        assert fetched == [206, "video/x-matroska", False]
        assert tab.errors == [], tab.diagnostics()
    finally:
        await tab.close()
