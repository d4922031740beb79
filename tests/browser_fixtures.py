"""Fixtures and helpers for the headless-Chromium tests of the browser client (web/).

Kept apart from conftest.py so the browser tests can be read (and skipped) on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import ROOT, RunningServer, start_server, stop_server

# Chromium's headless shell (Debian's chromium-headless-shell, the old headless mode and
# what Playwright itself runs for headless tests): the browser's Blink and WebRTC without
# the desktop browser around them. It halves what a page costs the two cores: measured
# serially, tests/test_browser.py took 55.5 CPU-seconds (33.7 s) in the desktop browser
# and 29.8 (23.0 s) in the shell. PULSEROOM_TEST_CHROMIUM runs the tests in another.
CHROMIUM = Path(os.environ.get("PULSEROOM_TEST_CHROMIUM", "/usr/bin/chromium-headless-shell"))
# The desktop browser participants run: a user's whole journey is tested in it.
DESKTOP_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The fake camera at 10 frames a second instead of its default 20 (at up to 1280x720,
    # what the class page asks for): each page's encoder, the others' decoders and the
    # compositor have half the frames. Measured on a slow 2-core machine: a three-page
    # class test 37 s -> 19 s alone, the parallel part of the suite 1,283 -> 1,193 s.
    # These tests are about what a class does; tests that judge video play a clip of
    # their own (--use-file-for-fake-video-capture, at the clip's rate).
    "--use-fake-device-for-media-stream=fps=10",
    "--use-fake-ui-for-media-stream",
    # Real host candidates instead of mDNS names, which aiortc cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
ARTIFACTS = ROOT / "test-artifacts"
# The test rig's own CPU is not the product's: several browsers, their encoders and the
# server share two cores, and Chromium's CPU adaptation then shrinks or drops the
# publisher's layers at moments of its choosing, which no assertion about the SFU's
# choice of layer can allow for. Publishing tabs of media-quality tests add this script:
# each sender keeps its resolution and frame rate as configured (the encoder may still
# drop a frame it has no time for). The product itself keeps Chromium's default.
FIXED_ENCODER_JS = """(() => {
  const add = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (...args) {
    const transceiver = add.apply(this, args);
    const params = transceiver.sender.getParameters();
    params.degradationPreference = 'maintain-framerate-and-resolution';
    transceiver.sender.setParameters(params).catch(() => {});
    return transceiver;
  };
})();"""


def devices_js(*, camera: bool, microphone: bool) -> str:
    """An init script for a browser with only the devices named plugged in: asking for
    another rejects as the browser does (NotFoundError), and the page joins with what
    there is (web/media.js). Tests that judge one publisher's video give the other pages
    no camera and every page no microphone: two cores then encode and decode the video
    under test, not other cameras and a fake microphone per page besides."""
    return f"""(() => {{
  const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  const have = {{ video: {str(camera).lower()}, audio: {str(microphone).lower()} }};
  navigator.mediaDevices.getUserMedia = (constraints) => (
    Object.keys(have).some((kind) => constraints && constraints[kind] && !have[kind])
      ? Promise.reject(new DOMException('Requested device not found', 'NotFoundError'))
      : open(constraints));
}})();"""


# What a module of browser tests declares: skipped without Chromium, and one event loop
# for the module, since the browser fixture lives as long as the module.
NEEDS_CHROMIUM = pytest.mark.skipif(
    not CHROMIUM.exists() or not DESKTOP_CHROMIUM.exists(),
    reason=f"{CHROMIUM} or {DESKTOP_CHROMIUM} is missing: install Debian's "
    "chromium-headless-shell and chromium packages (the README's test command does)",
)
BROWSER_MODULE = [NEEDS_CHROMIUM, pytest.mark.asyncio(loop_scope="module")]
# Known to the tests, so a test can sign an expired token (as strong as the app demands).
SECRET = "a3e7c1f09b2d4e68f5a0c7b93d1e2f46b8c05a7d9e3f1b2c4d6e8a0f7b9c1d3e"
JOIN_TIMEOUT_MS = 20_000
TILE = '[data-testid=tile][data-participant-id="{}"]'  # a participant's tile, by id


# Registered under a `name`: a test module imports the functions, and its tests' arguments
# `browser_server` and `browser` then do not shadow the imported names.
@pytest.fixture(scope="module", name="browser_server")
def browser_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One ``pulseroom serve`` subprocess for the module (SQLite, in-memory Socket.IO)."""
    running = start_server(tmp_path_factory.mktemp("browser"), PULSEROOM_SECRET=SECRET)
    yield running
    stop_server(running)


@contextlib.asynccontextmanager
async def chromium(executable: Path = CHROMIUM) -> AsyncIterator[Any]:
    """A headless Chromium with a fake camera and microphone that need no prompt."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield instance
        finally:
            await instance.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="browser")
async def browser_fixture() -> AsyncIterator[Any]:
    """Chromium's headless shell for the module's pages."""
    async with chromium() as instance:
        yield instance


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="browser")
async def desktop_browser_fixture() -> AsyncIterator[Any]:
    """The desktop Chromium (headless) instead, for a module that imports this one."""
    async with chromium(DESKTOP_CHROMIUM) as instance:
        yield instance


@dataclass
class Tab:
    """A page in its own browser context (own storage, own camera), with what it logged."""

    name: str
    page: Any
    context: Any
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def close(self) -> None:
        await self.context.close()

    def diagnostics(self) -> str:
        """Uncaught errors and the last console lines, for failure messages."""
        lines = [f"--- {self.name}: page errors: {self.errors or 'none'}"]
        lines += [f"    {line}" for line in self.console[-15:]]
        return "\n".join(lines)

    async def state(self) -> str:
        """The page's phase, status line and notice, for failure messages."""
        return str(
            await self.page.evaluate(
                """() => ({
                    phase: document.body.dataset.state,
                    status: document.querySelector('[data-testid=status]')?.textContent,
                    notice: document.querySelector('[data-testid=notice]')?.hidden ? null
                        : document.querySelector('[data-testid=notice]')?.innerText,
                    joinError: document.querySelector('[data-testid=join-error]')?.textContent,
                })"""
            )
        )


async def open_tab(
    browser: Any,
    name: str,
    *,
    viewport: tuple[int, int] = (1280, 800),
    init_script: str | None = None,
    enforce_csp: bool = False,
) -> Tab:
    """A new context and page that record page errors and console output."""
    # Playwright's wait_for_function evaluates its text with `new Function` inside the page,
    # which the server's Content-Security-Policy forbids (no eval): the test's own code is
    # exempt, the page's is not (test_browser checks that the class runs under the policy).
    context = await browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, bypass_csp=not enforce_csp
    )
    context.set_default_timeout(15_000)
    # Loading a page is a start, not a claim: a clean-clone CI run's phone test waited over
    # 15 s for a device link's page to load with two workers' browsers busy.
    context.set_default_navigation_timeout(45_000)
    if init_script:
        await context.add_init_script(init_script)
    page = await context.new_page()
    tab = Tab(name=name, page=page, context=context)
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    page.on("console", lambda message: tab.console.append(f"{message.type}: {message.text}"))
    return tab


async def open_class_page(tab: Tab, link: str) -> None:
    """Open a class link and wait for its join form. If it never shows (a page whose
    scripts failed to load: Chromium in a network namespace aborted them all with
    net::ERR_NETWORK_CHANGED when the veth's IPv6 address settled; tests/netns.py now
    turns IPv6 off there), the page state is printed and the page loaded once more
    (reload: a goto to the same URL with a fragment would load nothing)."""
    page = tab.page
    await page.goto(link)
    form = page.get_by_test_id("name-input")
    try:
        await form.wait_for(timeout=JOIN_TIMEOUT_MS)
    except Exception:
        print(f"{tab.name}: join form hidden after 20 s: {await tab.state()}\n{tab.diagnostics()}")
        await page.reload()
        await form.wait_for(timeout=JOIN_TIMEOUT_MS)


async def join(tab: Tab, link: str, name: str) -> str:
    """Open a class link, enter ``name``, join; return the participant id the server gave."""
    page = tab.page
    await open_class_page(tab, link)
    await page.get_by_test_id("name-input").fill(name)
    await page.get_by_test_id("join-button").click()
    try:
        await page.wait_for_function(
            "document.body.dataset.state === 'joined'", timeout=JOIN_TIMEOUT_MS
        )
    except Exception:
        raise AssertionError(
            f"{tab.name} did not join within {JOIN_TIMEOUT_MS} ms: {await tab.state()}\n"
            + tab.diagnostics()
        ) from None
    # The link's token is taken out of the address bar once read (signaling/headers.py's
    # policy keeps it out of Referer; this keeps it out of screen shares and history).
    assert "#t=" not in page.url, page.url
    participant_id: str = await page.evaluate("window.pulseroom.you.id")
    return participant_id


async def tile_action(tab: Tab, participant_id: str, action: str) -> None:
    """The instructor picks ``action`` (an item's test id: ``tile-spotlight``,
    ``tile-shout-out``, ``tile-mute``, ``tile-remove``) from a tile's actions menu: the
    menu button first, then the item (web/tilemenu.js)."""
    tile = tab.page.locator(TILE.format(participant_id))
    await tile.get_by_test_id("tile-menu-button").click()
    item = tile.get_by_test_id(action)
    await item.wait_for(state="visible")
    await item.click()


# Frames decoded per publisher, read from the subscribe connection's inbound-rtp stats
# and mapped to publishers through the m-line map of the subscribe offers.
FRAMES_JS = """async () => {
    const pr = window.pulseroom;
    const pc = pr.subscribePc;
    if (!pc) return {};
    const owners = pr.tracks;
    const frames = {};
    (await pc.getStats()).forEach((report) => {
        if (report.type !== 'inbound-rtp' || report.kind !== 'video') return;
        const owner = owners[report.mid];
        if (!owner) return;
        const id = owner.participant_id;
        frames[id] = (frames[id] || 0) + (report.framesDecoded || 0);
    });
    return frames;
}"""

# Width of the decoded video in each remote tile: proof that it reaches a <video> element.
VIDEO_WIDTHS_JS = """(ids) => Object.fromEntries(ids.map((id) => {
    const video = document.querySelector(`[data-testid=tile][data-participant-id="${id}"] video`);
    return [id, video ? video.videoWidth : null];
}))"""

# Tiles still covered by their placeholder ("Connecting video…") although video plays.
COVERED_JS = """(ids) => ids.filter((id) => {
    const tile = document.querySelector(`[data-testid=tile][data-participant-id="${id}"]`);
    if (!tile) return true;
    return !tile.querySelector('.placeholder').hidden || tile.dataset.connecting !== 'false';
})"""


# Frames decoded from a publisher before assert_video_flowing checks that more follow.
ESTABLISHED = 5


async def assert_video_flowing(
    tab: Tab, publishers: dict[str, str], *, first_frame_timeout: float = 20.0, gap: float = 1.5
) -> dict[str, tuple[int, int]]:
    """Video from every publisher (id → name) is decoded on ``tab`` and keeps being decoded.

    Waits (bounded) until ESTABLISHED frames from each are decoded, then takes two samples
    ``gap`` seconds apart; returns {name: (first, second)}. (Not from the first frame: a
    video's first second is where its layer goes up, and where the publisher's encoder
    turns a layer on when the recorder asks for it, and a clean-clone CI run's page
    decoded two frames, then none for 1.5 s, right then, with both cores busy.)
    """
    ids = list(publishers)
    deadline = time.monotonic() + first_frame_timeout
    frames: dict[str, int] = {}
    while True:
        frames = await tab.page.evaluate(FRAMES_JS)
        if all(frames.get(pid, 0) >= ESTABLISHED for pid in ids):
            break
        if time.monotonic() > deadline:
            missing = [publishers[pid] for pid in ids if frames.get(pid, 0) < ESTABLISHED]
            mlines = await tab.page.evaluate("window.pulseroom.tracks")
            raise AssertionError(
                f"{tab.name}: not {ESTABLISHED} decoded frames from {missing} "
                f"within {first_frame_timeout} s "
                f"(frames by publisher: {frames}, m-lines: {mlines})\n" + tab.diagnostics()
            )
        await asyncio.sleep(0.25)
    await asyncio.sleep(gap)
    later: dict[str, int] = await tab.page.evaluate(FRAMES_JS)
    samples = {publishers[pid]: (frames.get(pid, 0), later.get(pid, 0)) for pid in ids}
    stalled = {name: s for name, s in samples.items() if s[1] <= s[0]}
    assert not stalled, f"{tab.name}: video stalled (framesDecoded, then {gap} s later): {stalled}"
    widths = await tab.page.evaluate(VIDEO_WIDTHS_JS, ids)
    blank = {publishers[pid]: w for pid, w in widths.items() if not w}
    assert not blank, f"{tab.name}: tiles without decoded video (videoWidth): {blank}"
    covered = await tab.page.evaluate(COVERED_JS, ids)
    assert not covered, f"{tab.name}: tiles still 'connecting' while video plays: {covered}"
    return samples


async def screenshot(tab: Tab, name: str) -> Path:
    """Save a screenshot under test-artifacts/ for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await tab.page.screenshot(path=str(path))
    return path
