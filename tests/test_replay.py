"""Replaying a class: a real recording (a bot as the instructor, 5 s, music excluded
while the instructor's music mode is on for 1.5 s of it) with a participant's heart
rate sent meanwhile through her strap bridge's device link; then the recording's
wall-clock start, the hole music left in its audio, its byte ranges and rights, the
ticket a ``<video>`` fetches it with, and the replay page in headless Chromium: the
video plays, the participant's curve is drawn with a cursor that follows it, her strap
rides along; the owner, logged in, picks whose curve.

One server and one class for the module (about 15 s, most of it the bot's start).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
import pytest_asyncio

from pulseroom.hr_link import HeartRateLink
from telemetry.hrm import HeartRateMeasurement
from tests.browser_fixtures import (
    NEEDS_CHROMIUM,
    SECRET,
    browser_fixture,  # noqa: F401 (fixture "browser")
    open_tab,
    screenshot,
)
from tests.conftest import RunningServer, start_server, stop_server
from tests.peers import run_bot
from tests.sio_client import Client
from tests.waiting import until

pytestmark = pytest.mark.asyncio(loop_scope="module")

SENT_BPM = [110 + 4 * i for i in range(10)]  # one every half second while recording
FAKE_STRAP = (Path(__file__).parent / "fake_web_bluetooth.js").read_text()


@dataclass
class Replayed:
    """The module's recorded class."""

    server: RunningServer
    room_id: str
    recording_id: str
    path: Path
    started_at: float  # from the listing
    asked_at: float  # unix s of the record ack
    stopped_at: float  # unix s of the stop ack
    music: tuple[float, float]  # unix s of the instructor's music mode on and off
    series: list[list[float]]  # Ann's, from the summary API
    ann_token: str  # her bound token
    ann_summary_token: str
    stranger_token: str


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def replay_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("replay"), PULSEROOM_RECORDING="on-request", PULSEROOM_SECRET=SECRET
    )
    yield running
    stop_server(running)


async def record_with_heart_rate(server: RunningServer) -> Replayed:
    room = server.create_room("Replayed ride")
    room_id, host_link = str(room["room"]["id"]), str(room["host_link"])
    host, ann, eve = [await Client(server.url).connect() for _ in range(3)]
    try:
        assert (await host.join(host_link, "Coach's desk"))["ok"]
        ann_ack = await ann.join(str(room["join_link"]), "Ann")
        other = server.create_room("Another class")
        stranger_token = (await eve.join(str(other["join_link"]), "Eve"))["token"]
        strap = HeartRateLink(
            f"{server.url}/r/{room_id}#t={ann_ack['device_token']}", "Ann's strap"
        )
        strap_task = asyncio.create_task(strap.run())
        await strap.wait_open(20)
        bot = asyncio.create_task(run_bot(host_link, "Coach", 8))
        await ann.wait_for(
            "participant_joined", lambda e: e["participant"]["name"] == "Coach", timeout=40
        )
        await asyncio.sleep(1.0)  # publishing
        # Recorded without music: the instructor's audio is left out while their music
        # mode is on (from the 4th reading to the 7th).
        record = {"v": 1, "on": True, "music": "exclude"}
        assert (await host.call("record", record))["recording"] is True
        asked_at = time.time()
        music: list[float] = []
        for i, bpm in enumerate(SENT_BPM):
            strap.send(HeartRateMeasurement(bpm=bpm, contact=True, rr=(512,)))
            if i in (3, 6):
                state = {"v": 1, "audio": True, "video": True, "music": i == 3}
                assert (await host.call("media_state", state))["ok"]
                music.append(time.time())
            await asyncio.sleep(0.5)
        assert (await host.call("record", {"v": 1, "on": False}))["recording"] is False
        stopped_at = time.time()
        await until(lambda: strap.counts["acked"] == len(SENT_BPM), what=f"acks: {strap.counts}")
        strap_task.cancel()
        await asyncio.gather(strap_task, bot, return_exceptions=True)
    finally:
        for client in (host, ann, eve):
            await client.close()
    async with httpx.AsyncClient(timeout=10) as http:
        api = f"{server.url}/api/rooms/{room_id}"
        listing = await http.get(f"{api}/recordings", headers=auth(ann_ack["token"]))
        summary = await http.get(f"{api}/summary", headers=auth(ann_ack["token"]))
    (item,) = listing.json()["recordings"]
    assert item["complete"], item
    (ann_summary,) = summary.json()["participants"]
    assert [bpm for _t, bpm in ann_summary["series"]] == SENT_BPM
    path = server.data_dir / "recordings" / room_id / f"{item['id']}.webm"
    return Replayed(
        server, room_id, item["id"], path, item["started_at"], asked_at, stopped_at,
        (music[0], music[1]), ann_summary["series"], ann_ack["token"], ann_ack["summary_token"],
        stranger_token,
    )  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replayed(replay_server: RunningServer) -> AsyncIterator[Replayed]:
    yield await record_with_heart_rate(replay_server)


@pytest.mark.timeout(120)
async def test_the_recording_knows_when_its_first_picture_was(replayed: Replayed) -> None:
    # The file starts at the first keyframe after the record event: within a second or
    # two of it (the recorder asks the publisher for one at once).
    assert replayed.asked_at - 0.5 < replayed.started_at < replayed.asked_at + 3.0
    with av.open(str(replayed.path)) as container:
        duration = container.duration / 1_000_000
        stamp = container.metadata["creation_time"]
    # The same instant inside the file (Matroska DateUTC), for a downloaded copy.
    assert abs(datetime.fromisoformat(stamp).timestamp() - replayed.started_at) < 0.002
    # Its end is the stop: start + duration is the wall clock of the last picture.
    assert abs(replayed.started_at + duration - replayed.stopped_at) < 1.5


@pytest.mark.timeout(60)
async def test_music_excluded_leaves_the_instructor_s_audio_out_while_it_is_on(
    replayed: Replayed,
) -> None:
    with av.open(str(replayed.path)) as container:
        heard = [
            float(packet.pts * packet.time_base)
            for packet in container.demux(audio=0)
            if packet.pts is not None and packet.size
        ]
    # Audio throughout (a frame every 20 ms), but for one hole where the music was.
    holes = [(a, b - a) for a, b in itertools.pairwise(heard) if b - a > 0.5]
    on, off = (t - replayed.started_at for t in replayed.music)
    assert len(holes) == 1, (holes, on, off)
    ((at, length),) = holes
    assert abs(at - on) < 0.3 and abs(at + length - off) < 0.3, (holes, on, off)
    assert len(heard) > 0.8 * (heard[-1] - heard[0] - length) / 0.02


@pytest.mark.timeout(60)
async def test_ranges_and_rights_of_the_file_and_its_ticket(replayed: Replayed) -> None:
    base = f"{replayed.server.url}/api/rooms/{replayed.room_id}/recordings"
    url = f"{base}/{replayed.recording_id}"
    data = replayed.path.read_bytes()
    async with httpx.AsyncClient(timeout=10) as http:
        part = await http.get(url, headers={**auth(replayed.ann_token), "Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == data[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
        tail = await http.get(url, headers={**auth(replayed.ann_token), "Range": "bytes=-500"})
        assert tail.status_code == 206 and tail.content == data[-500:]
        assert (await http.get(url, headers={"Range": "bytes=0-99"})).status_code == 401
        stranger = {**auth(replayed.stranger_token), "Range": "bytes=0-99"}
        assert (await http.get(url, headers=stranger)).status_code == 403
        # The ticket: with the class token only, for a recording that exists.
        assert (await http.post(f"{url}/ticket")).status_code == 401
        assert (
            await http.post(f"{url}/ticket", headers=auth(replayed.stranger_token))
        ).status_code == 403
        missing = await http.post(
            f"{base}/20000101T000000Z/ticket", headers=auth(replayed.ann_token)
        )
        assert missing.status_code == 404
        answer = await http.post(f"{url}/ticket", headers=auth(replayed.ann_summary_token))
        assert answer.status_code == 200
        cookie = answer.headers["set-cookie"]
        scope = f"Path=/api/rooms/{replayed.room_id}/recordings/{replayed.recording_id}"
        for attribute in ("HttpOnly", "SameSite=Strict", scope):
            assert attribute in cookie, cookie
        ticket = answer.cookies["pulseroom_replay"]
    async with httpx.AsyncClient(timeout=10, cookies={"pulseroom_replay": ticket}) as video:
        # What the <video> sends: the cookie and a range, no header.
        ranged = await video.get(url, headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 206 and ranged.content == data[:100]
        # Nothing else takes it: not the listing, not a deletion.
        assert (await video.get(base)).status_code == 401
        assert (await video.delete(url)).status_code == 401
    # A bound (joining) token is no ticket; a forged one neither.
    for value in (replayed.ann_token, ticket[:-2] + "xx"):
        async with httpx.AsyncClient(timeout=10, cookies={"pulseroom_replay": value}) as video:
            assert (await video.get(url)).status_code == 403


REPLAY_STATE_JS = """() => {
    const v = document.querySelector('[data-testid=replay-video]');
    const line = document.querySelector('[data-testid=hr-line]');
    const cursor = document.querySelector('[data-testid=hr-cursor]');
    return {
        state: document.body.dataset.state,
        error: document.querySelector('[data-testid=replay-error]').textContent,
        readyState: v.readyState, currentTime: v.currentTime, duration: v.duration,
        points: line ? Number(line.dataset.points) : 0,
        segments: line ? (line.getAttribute('d').match(/[ML]/g) || []).length : 0,
        cursorX: cursor ? Number(cursor.getAttribute('x1')) : null,
        bpm: document.querySelector('[data-testid=replay-bpm]').textContent,
        people: [...document.querySelectorAll('[data-testid=person-select] option')]
            .map((o) => o.textContent),
        live: Number(document.querySelector('[data-testid=live-line]')?.dataset.points || 0),
        liveBpm: document.querySelector('[data-testid=live-bpm]').textContent,
        strapSent: window.__fakeStrap ? window.__fakeStrap.sent : [],
    };
}"""


async def replay_state(tab: Any) -> dict[str, Any]:
    state: dict[str, Any] = await tab.page.evaluate(REPLAY_STATE_JS)
    return state


async def until_state(tab: Any, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
    """The page's replay state once ``predicate`` holds (polled: the page's policy
    forbids the eval that Playwright's wait_for_function needs)."""
    deadline = time.monotonic() + timeout
    while True:
        state = await replay_state(tab)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{tab.name}: {state}\n{tab.diagnostics()}")
        await asyncio.sleep(0.1)


def ready(state: dict[str, Any]) -> bool:
    return bool(state["readyState"] >= 2 and state["cursorX"] is not None)


def inside(replayed: Replayed, duration: float) -> int:
    """How many of Ann's readings fall within the recording (the first may come before
    its first picture)."""
    start, end = replayed.started_at, replayed.started_at + duration
    return sum(1 for t, _bpm in replayed.series if start <= t <= end)


@NEEDS_CHROMIUM
@pytest.mark.timeout(90)
async def test_a_participant_replays_the_class_beside_her_heart_rate(
    replayed: Replayed, browser: Any
) -> None:
    tab = await open_tab(browser, "ann-replay", enforce_csp=True, init_script=FAKE_STRAP)
    try:
        page = tab.page
        # The summary page offers the replay; its link carries her summary token.
        await page.goto(
            f"{replayed.server.url}/r/{replayed.room_id}/summary#t={replayed.ann_summary_token}"
        )
        link = page.get_by_test_id("replay-link")
        await link.wait_for()
        await link.click()
        await page.wait_for_url(f"**/r/{replayed.room_id}/replay?rec={replayed.recording_id}")
        video = page.get_by_test_id("replay-video")
        before = await until_state(tab, ready)
        assert before["state"] == "loaded", before
        shown = inside(replayed, before["duration"])
        assert shown >= len(SENT_BPM) - 2, before
        assert before["points"] == before["segments"] == shown, before
        assert before["people"] == []  # a participant sees only herself: no one to pick
        # She rides along with her strap: its heart rate now, beside the recorded one.
        await page.get_by_test_id("replay-pair").click()
        paired = await until_state(tab, lambda s: s["liveBpm"].isdigit())
        assert int(paired["liveBpm"]) in paired["strapSent"], paired
        await video.evaluate("v => { v.muted = true; return v.play(); }")
        await asyncio.sleep(1.5)
        playing = await replay_state(tab)
        assert playing["currentTime"] > before["currentTime"] + 0.5, (before, playing)
        assert playing["cursorX"] > before["cursorX"], (before, playing)
        assert playing["live"] >= 2, playing  # a point every half second of video
        # Sought to where she sent her 6th reading: the readout says it.
        await video.evaluate("v => v.pause()")
        at = 2.75 - (replayed.started_at - replayed.asked_at)  # reading 6 at ~2.5 s
        await video.evaluate(f"v => {{ v.currentTime = {max(at, 0.1)}; }}")
        # The readout: her latest reading at or before that moment of the class, by the
        # readings' own times (the summary's series; on a busy machine a reading goes out
        # later than its half-second schedule). The page redraws it on the seek's event,
        # after currentTime has moved: wait for it, not only for the time.
        wall = replayed.started_at + max(at, 0.1)
        before_it = [bpm for t, bpm in replayed.series if t <= wall]
        near = {bpm for t, bpm in replayed.series if abs(t - wall) < 0.05}  # a frame either way
        assert before_it, (wall, replayed.series)
        expected = {before_it[-1], *near}
        sought = await until_state(
            tab,
            lambda s: (
                abs(s["currentTime"] - max(at, 0.1)) < 0.01
                and s["bpm"].isdigit()
                and int(s["bpm"]) in expected
            ),
        )
        assert int(sought["bpm"]) in SENT_BPM[3:8], sought  # the 6th reading, give or take
        await screenshot(tab, "replay-participant")
        assert tab.errors == [], tab.diagnostics()
    finally:
        await tab.close()


@NEEDS_CHROMIUM
@pytest.mark.timeout(60)
async def test_the_owner_picks_whose_curve_and_no_token_reads_nothing(
    replayed: Replayed, browser: Any
) -> None:
    # The class's owner, logged in: the summary link their class list gives them, in a
    # browser holding their session (so the ticket's POST needs the session's CSRF token).
    owner = replayed.server.instructor()
    (listed,) = [
        c for c in owner.client.get("/api/classes").json()["classes"] if c["id"] == replayed.room_id
    ]
    session = owner.client.headers["Cookie"].split("=", 1)[1]
    tab = await open_tab(browser, "owner-replay")
    try:
        page = tab.page
        await tab.context.add_cookies(
            [{"name": "pulseroom_session", "value": session, "url": replayed.server.url}]
        )
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        replay = str(listed["summary_link"]).replace("/summary#", "/replay#")
        await page.goto(replay)
        state = await until_state(tab, ready)
        assert any(url.endswith("/api/auth/me") for url in asked), asked  # the CSRF token
        assert state["people"] == ["Ann"], state
        assert state["points"] == inside(replayed, state["duration"]), state
        assert "#t=" not in page.url  # the token left the address bar
        # Another browser with no token, or another class's: an explanation, no video.
        for fragment in ("", f"#t={replayed.stranger_token}"):
            stranger = await open_tab(browser, "stranger-replay")
            try:
                await stranger.page.goto(
                    f"{replayed.server.url}/r/{replayed.room_id}/replay{fragment}"
                )
                refused = await until_state(stranger, lambda s: s["state"] == "error")
                assert refused["readyState"] == 0 and refused["points"] == 0, refused
                assert refused["error"], refused
            finally:
                await stranger.close()
    finally:
        await tab.close()
