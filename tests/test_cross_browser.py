"""The browser client (web/) in Firefox and in WebKit, the engine of Safari.

Chromium is tested with Playwright (test_browser.py, test_browser_hr.py). Here Debian's
Firefox ESR (over WebDriver BiDi) and WebKitGTK's MiniBrowser (over WebKitWebDriver)
join a real ``pulseroom serve`` whose instructor is an aiortc bot: media both ways,
chat both ways, and heart rate through the bridge, since neither has Web Bluetooth.
WebKitGTK as Debian builds it has no WebRTC: the page must say so and keep chat, the
people list and heart rate working. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pulseroom.bot import Bot
from pulseroom.hr_link import HeartRateLink
from telemetry.hrm import HeartRateMeasurement
from tests import peers
from tests.browser_fixtures import (
    ARTIFACTS,
    FRAMES_JS,
    VIDEO_WIDTHS_JS,
    browser_server_fixture,  # noqa: F401 (fixture "browser_server": one server for the module)
)
from tests.conftest import ROOT, RunningServer
from tests.webdriver import (
    FIREFOX,
    WEBKIT_DRIVER,
    XVFB,
    Page,
    firefox,
    text,
    wait_for,
    webkit,
)

pytestmark = pytest.mark.timeout(120)

MEDIA_TIMEOUT_S = 25.0  # first frames on a loaded 2-core machine

# Audio packets received on the subscribe connection, by publisher.
AUDIO_PACKETS_JS = """async () => {
    const pc = window.pulseroom.subscribePc;
    const owners = window.pulseroom.tracks;
    const packets = {};
    if (!pc) return packets;
    (await pc.getStats()).forEach((r) => {
        if (r.type !== 'inbound-rtp' || r.kind !== 'audio' || !owners[r.mid]) return;
        const id = owners[r.mid].participant_id;
        packets[id] = (packets[id] || 0) + (r.packetsReceived || 0);
    });
    return packets;
}"""


@dataclass
class Instructor:
    """The class's host: an aiortc bot that publishes and records the chat it gets."""

    server: RunningServer
    room: dict[str, Any]
    bot: Bot
    chat: list[dict[str, Any]] = field(default_factory=list)

    @property
    def room_id(self) -> str:
        return str(self.room["room"]["id"])

    @property
    def join_link(self) -> str:
        return str(self.room["join_link"])


async def start_instructor(server: RunningServer, title: str) -> Instructor:
    room = server.create_room(title)
    bot = await peers.join(str(room["host_link"]), "Coach Ana")
    instructor = Instructor(server=server, room=room, bot=bot)

    async def on_chat(data: dict[str, Any]) -> None:
        instructor.chat.append(data["message"])

    bot.sio.on("chat", on_chat)
    return instructor


@pytest.fixture
async def instructor(browser_server: RunningServer) -> AsyncIterator[Instructor]:
    """A class of its own on the module's server, its instructor (a bot) already in it."""
    host = await start_instructor(browser_server, "Cross-browser spin")
    yield host
    await host.bot.stop()


@dataclass
class Stopwatch:
    """Seconds each step of a test took, printed for whoever watches the suite's time."""

    last: float = field(default_factory=time.monotonic)
    laps: dict[str, float] = field(default_factory=dict)

    def mark(self, step: str) -> None:
        now = time.monotonic()
        self.laps[step] = round(now - self.last, 1)
        self.last = now


def token_payload(token: str) -> dict[str, Any]:
    """A token's payload, unverified (the test only reads what the server signed)."""
    body = token.split(".")[0]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return data


async def uncaught(page: Page) -> list[str]:
    """Uncaught errors and unhandled rejections the page logged."""
    return [line for line in await page.logs() if line.startswith("javascript/")]


async def diagnostics(page: Page, host: Instructor) -> str:
    state = await page.call(
        """() => ({phase: document.body.dataset.state,
                   status: document.querySelector('[data-testid=status]')?.textContent,
                   tracks: window.pulseroom?.tracks})"""
    )
    return (
        f"--- {page.name} {page.version}: {state}\n"
        + "\n".join((await page.logs())[-30:])
        + f"\n--- server log:\n{host.server.log()[-3000:]}"
    )


async def prejoin_and_join(page: Page, host: Instructor, name: str, *, preview: bool) -> str:
    """Open the join link, check the bridge note (no Web Bluetooth), join; our id.

    With ``preview``, the (fake) camera must show in the pre-join preview first.
    """
    await page.goto(host.join_link)
    await wait_for(
        page, "() => document.body.dataset.state === 'prejoin'", timeout=10, what="join form"
    )
    if preview:
        await wait_for(
            page,
            "() => document.querySelector('[data-testid=preview]').videoWidth > 0",
            timeout=10,
            what="the camera preview",
        )
    # Neither engine has Web Bluetooth: the pre-join form points at the bridge instead.
    assert await page.call("() => !document.getElementById('prejoin-bridge-note').hidden")
    assert await page.call(
        "() => document.querySelector('[data-testid=prejoin-pair-strap-button]').hidden"
    )
    await page.fill("[data-testid=name-input]", name)
    await page.click("[data-testid=join-button]")
    await wait_for(
        page, "() => document.body.dataset.state === 'joined'", timeout=20, what="joined"
    )
    participant_id: str = await page.call("() => window.pulseroom.you.id")
    # Everyone is listed: the instructor and us.
    await wait_for(
        page,
        "() => document.querySelector('[data-testid=people-count]').textContent === '2'",
        timeout=10,
        what="two people in the roster",
    )
    return participant_id


async def media_both_ways(page: Page, host: Instructor, me: str) -> dict[str, Any]:
    """The instructor decodes our camera and hears our microphone; we decode theirs."""
    host_id = str(host.bot.you["id"])
    deadline = time.monotonic() + MEDIA_TIMEOUT_S
    while True:
        ours = {t.kind: t for t in host.bot.tracks.values() if t.publisher_id == me}
        video, audio = ours.get("video"), ours.get("audio")
        frames = await page.call(FRAMES_JS)
        if video and video.frames > 2 and audio and audio.frames > 2 and frames.get(host_id):
            break
        assert time.monotonic() < deadline, (
            f"media not flowing within {MEDIA_TIMEOUT_S} s: the instructor got "
            f"{ {k: (t.packets, t.frames) for k, t in ours.items()} } (packets, frames) from "
            f"{page.name}; {page.name} decoded {frames} frames by publisher"
        )
        await asyncio.sleep(0.3)
    await asyncio.sleep(1.5)
    later = await page.call(FRAMES_JS)
    assert later[host_id] > frames[host_id], f"{page.name}: the instructor's video stalled"
    widths = await page.call(VIDEO_WIDTHS_JS, [host_id])
    assert widths[host_id] and widths[host_id] > 0, f"{page.name}: no picture in the tile"
    audio_packets = await page.call(AUDIO_PACKETS_JS)
    assert audio_packets.get(host_id, 0) > 0, f"{page.name}: no sound from the instructor"
    return {
        "instructor_got": {k: (t.codec, t.frames) for k, t in ours.items()},
        "decoded_from_instructor": (frames[host_id], later[host_id]),
        "video_width": widths[host_id],
        "audio_packets_from_instructor": audio_packets[host_id],
    }


async def chat_both_ways(page: Page, host: Instructor, me: str, name: str) -> None:
    sent = f"Hello from {page.name} <b>!</b>"
    await page.fill("[data-testid=chat-input]", sent)
    await page.click("[data-testid=chat-send]")
    deadline = time.monotonic() + 10
    while not any(m["text"] == sent and m["participant_id"] == me for m in host.chat):
        assert time.monotonic() < deadline, f"the instructor never got {sent!r}: {host.chat}"
        await asyncio.sleep(0.1)
    reply = f"Welcome, {name}!"
    await host.bot.call("chat", {"text": reply})
    await wait_for(
        page,
        """(reply) => [...document.querySelectorAll('[data-testid=chat-text]')]
            .some((e) => e.textContent === reply)""",
        reply,
        timeout=10,
        what="the instructor's chat message",
    )
    # Our own message shows as text, not markup.
    assert await page.call(
        "() => document.querySelectorAll('[data-testid=chat-log] b').length === 0"
    )


async def device_link(page: Page, host: Instructor, me: str) -> str:
    """The bridge note is open in class and shows our device link; the link."""
    assert await page.call("() => window.pulseroom.hr.bluetooth === false")
    assert await page.call("() => document.querySelector('[data-testid=bridge-note]').open")
    assert "pulseroom hr-bridge" in await text(page, "[data-testid=bridge-note]")
    link = str(await page.call("() => document.querySelector('[data-testid=device-link]').value"))
    assert link.startswith(f"{host.server.url}/r/{host.room_id}#t="), link
    grant = token_payload(link.split("#t=", 1)[1])
    assert (grant["role"], grant["p"], grant["r"]) == ("device", me, host.room_id)
    return link


OWN_HR_JS = """() => {
    const own = document.querySelector('[data-testid=own-hr]');
    const bpm = document.querySelector('[data-testid=own-hr-bpm]').textContent;
    return own.hidden || bpm === '--' ? null : {
        bpm: Number(bpm),
        pct: document.querySelector('[data-testid=own-hr-pct]').textContent,
        zone: document.querySelector('[data-testid=own-hr-zone]').textContent,
    };
}"""


@pytest.mark.skipif(not FIREFOX.exists(), reason=f"{FIREFOX} is missing (Debian's firefox-esr)")
async def test_firefox_participant(instructor: Instructor) -> None:
    host = instructor
    took = Stopwatch()
    async with firefox() as page:
        took.mark("start")
        try:
            me = await prejoin_and_join(page, host, "Fern", preview=True)
            took.mark("join")
            # Firefox has WebRTC: no "cannot play video here" banner.
            assert await page.call(
                "() => document.querySelector('[data-testid=webrtc-banner]').hidden"
            )
            flow = await media_both_ways(page, host, me)
            took.mark("media")
            await chat_both_ways(page, host, me, "Fern")
            link = await device_link(page, host, me)
            took.mark("chat")

            # `pulseroom hr-bridge` with the device link: its readings are Fern's own.
            bridge = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pulseroom.cli", "hr-bridge", link,
                "--simulate", "--seconds", "4", "--seed", "7",
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(bridge.communicate(), 60)
            assert bridge.returncode == 0, stderr.decode()[-2000:]
            report = json.loads(stdout)
            assert report["participant_id"] == me, report
            assert report["unacknowledged"] == 0 and report["acked"] >= 3, report
            shown = await wait_for(
                page, OWN_HR_JS, timeout=10, what="the bridge's heart rate on Fern's page"
            )
            received = await page.call(
                "(me) => window.pulseroom.hr.log.filter((r) => r.participant_id === me)", me
            )
            assert len(received) >= 3, received
            # The big readout shows the newest reading, with its zone.
            assert shown["bpm"] == received[-1]["bpm"], (shown, received[-1])
            assert shown["zone"].startswith("Zone "), shown
            await page.screenshot(ARTIFACTS / "firefox-participant.png")
            took.mark("heart rate")
            print(f"Firefox {page.version}: {flow}; heart rate {shown}, {len(received)} readings")
            print(f"Firefox seconds per step: {took.laps}")
            assert not await uncaught(page), await diagnostics(page, host)
        except BaseException:
            print(await diagnostics(page, host))
            raise


@pytest.mark.skipif(
    not (WEBKIT_DRIVER.exists() and XVFB.exists()),
    reason=f"{WEBKIT_DRIVER} or {XVFB} is missing (Debian's webkit2gtk-driver and xvfb)",
)
async def test_webkit_participant(instructor: Instructor, tmp_path: Path) -> None:
    host = instructor
    took = Stopwatch()
    async with webkit(log_dir=tmp_path) as page:
        took.mark("start")
        hr_link: HeartRateLink | None = None
        task: asyncio.Task[None] | None = None
        try:
            await page.goto(host.join_link)
            webrtc = await page.call("() => typeof RTCPeerConnection === 'function'")
            if not webrtc:
                # Said before joining, where the camera preview would be.
                await wait_for(
                    page,
                    "() => !document.querySelector('[data-testid=media-message]').hidden",
                    timeout=10,
                    what="the no-WebRTC message",
                )
                message = await text(page, "[data-testid=media-message]")
                assert "no WebRTC" in message and "chat" in message, message
            me = await prejoin_and_join(page, host, "Wren", preview=bool(webrtc))
            took.mark("join")
            if webrtc:
                flow: dict[str, Any] = await media_both_ways(page, host, me)
            else:
                # In class, a banner says what does not work here, and nothing was tried.
                assert await page.call(
                    "() => !document.querySelector('[data-testid=webrtc-banner]').hidden"
                )
                assert "no WebRTC" in await text(page, "[data-testid=webrtc-banner]")
                assert await page.call(
                    "() => window.pulseroom.publishPc === null"
                    " && window.pulseroom.subscribePc === null"
                )
                # The class sees that Wren has no camera or microphone on.
                await wait_for(
                    page,
                    """(me) => document.querySelector(`[data-testid=roster-item]`
                        + `[data-participant-id="${me}"][data-audio="false"][data-video="false"]`)
                        !== null""",
                    me,
                    timeout=10,
                    what="Wren's roster entry with microphone and camera off",
                )
                flow = {"webrtc": False}
            took.mark("media")
            await chat_both_ways(page, host, me, "Wren")
            link = await device_link(page, host, me)
            took.mark("chat")

            # Heart rate through the bridge (here in-process, with a known reading).
            hr_link = HeartRateLink(link, name="bridge")
            task = asyncio.create_task(hr_link.run())
            await asyncio.wait_for(hr_link.wait_open(), 20)
            hr_link.send(HeartRateMeasurement(bpm=133, contact=True))
            shown = await wait_for(
                page, OWN_HR_JS, timeout=10, what="the bridge's heart rate on Wren's page"
            )
            assert shown["bpm"] == 133, shown
            assert shown["pct"].endswith("% of max") and shown["zone"].startswith("Zone "), shown
            await page.screenshot(ARTIFACTS / "webkit-participant.png")
            took.mark("heart rate")
            print(f"WebKitGTK {page.version}: {flow}; heart rate {shown}")
            print(f"WebKitGTK seconds per step: {took.laps}")
            assert not await uncaught(page), await diagnostics(page, host)
        except BaseException:
            print(await diagnostics(page, host))
            raise
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
