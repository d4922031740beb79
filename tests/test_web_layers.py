"""The browser client's side of simulcast (issue 14), in headless Chromium and Firefox.

- web/layers.js on its own, in a page: two peer connections on loopback whose answer
  accepts the three layers, so the real sender's encodings are switched by real
  ``setParameters`` calls and the layers left off really stop sending.
- The class page against a real ``pulseroom serve``: the instructor's publish offer
  carries three RID layers and a participant's two; the SFU's ``layers`` event switches
  them; ``visibility`` carries each remote tile's drawn height and the viewer's quality
  cap from the Devices dialog, remembered for next time.
- Firefox (over WebDriver BiDi) publishes its layers too.

An SFU that answers without ``a=simulcast`` leaves the browser one encoding: the tests
check the page then sends it at full size, and switch layers through the server only
when the answer took simulcast (the page's own `layers` handler is called either way).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from signaling.messages import VisibilityIn
from tests.browser_fixtures import (
    BROWSER_MODULE,
    FRAMES_JS,
    TILE,
    Tab,
    assert_video_flowing,
    browser_fixture,  # noqa: F401 (fixture "browser")
    browser_server_fixture,  # noqa: F401 (fixture "browser_server")
    join,
    open_tab,
)
from tests.conftest import RunningServer
from tests.webdriver import FIREFOX, firefox, wait_for

pytestmark = [*BROWSER_MODULE, pytest.mark.timeout(180), pytest.mark.alone]

# Whether the server takes the new `visibility` fields yet (the SFU side of issue 14
# lands in parallel): until it does, it refuses them as bad_request.
SERVER_TAKES_SIZES = "sizes" in VisibilityIn.model_fields


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll an async ``check`` until it returns something truthy; that result."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {result!r})")
        await asyncio.sleep(0.2)


def simulcast_lines(sdp: str) -> tuple[list[str], list[str]]:
    """The video section's ``a=simulcast`` and ``a=rid`` lines."""
    video = sdp.split("m=video", 1)[1].split("\nm=", 1)[0]
    lines = [line.strip() for line in video.splitlines()]
    return (
        [line for line in lines if line.startswith("a=simulcast:")],
        [line for line in lines if line.startswith("a=rid:")],
    )


# -- web/layers.js alone, on loopback ----------------------------------------------------

# Two connections in one page. The answer is given `a=simulcast:recv` for the offered
# rids, as an SFU that takes simulcast answers; Chromium's own answer has none.
LOOPBACK_JS = """async () => {
    const L = await import('/static/layers.js');
    const video = L.videoConstraints('instructor');
    const stream = await navigator.mediaDevices.getUserMedia({ video });
    const track = stream.getVideoTracks()[0];
    const pc1 = new RTCPeerConnection();
    const pc2 = new RTCPeerConnection();
    pc1.onicecandidate = (e) => e.candidate && pc2.addIceCandidate(e.candidate);
    pc2.onicecandidate = (e) => e.candidate && pc1.addIceCandidate(e.candidate);
    const init = { direction: 'sendonly', streams: [stream] };
    const transceiver = L.addLayeredVideo(pc1, track, init, 'instructor');
    const offer = await pc1.createOffer();
    await pc1.setLocalDescription(offer);
    await pc2.setRemoteDescription(offer);
    const answer = await pc2.createAnswer();
    await pc2.setLocalDescription(answer);
    const rids = [...offer.sdp.matchAll(/^a=rid:(\\S+) send/gm)].map((m) => m[1]);
    const recv = rids.map((r) => `a=rid:${r} recv\\r\\n`).join('')
        + `a=simulcast:recv ${rids.join(';')}\\r\\n`;
    const sdp = answer.sdp.replace(/(a=mid:\\S+\\r\\n)/, (mid) => mid + recv);
    await pc1.setRemoteDescription({ type: 'answer', sdp });
    const layers = new L.LayerSwitch('instructor');
    window.loop = { L, pc1, pc2, track, sender: transceiver.sender, layers };
    return { settings: track.getSettings(), offer: offer.sdp };
}"""

# (frame height, bytes sent) by rid of the video a connection sends: the loopback pair's
# sender, or the class page's publish connection.
OUTBOUND_JS = """async (loopback) => {
    const pc = loopback ? window.loop.pc1 : window.pulseroom.publishPc;
    const out = {};
    (await pc.getStats()).forEach((r) => {
        if (r.type === 'outbound-rtp' && r.kind === 'video')
            out[r.rid ?? '-'] = [r.frameHeight ?? 0, r.bytesSent ?? 0];
    });
    return out;
}"""

ACTIVE_JS = """() => Object.fromEntries(
    window.loop.sender.getParameters().encodings.map((e) => [e.rid, e.active]))"""


async def sending(tab: Tab, seconds: float, *, loopback: bool) -> dict[str, tuple[int, int]]:
    """(frame height, bytes sent over ``seconds``) by rid."""
    before = await tab.page.evaluate(OUTBOUND_JS, loopback)
    await asyncio.sleep(seconds)
    after = await tab.page.evaluate(OUTBOUND_JS, loopback)
    return {rid: (h, sent - before.get(rid, [0, 0])[1]) for rid, (h, sent) in after.items()}


async def all_sending(tab: Tab, rids: list[str]) -> dict[str, tuple[int, int]] | None:
    """What each rid sent over a second, if every one of ``rids`` sent some."""
    growth = await sending(tab, 1.0, loopback=True)
    return growth if all(growth.get(rid, (0, 0))[1] > 0 for rid in rids) else None


async def test_layer_switch_on_a_real_sender(browser: Any, browser_server: RunningServer) -> None:
    tab = await open_tab(browser, "loopback")
    page = tab.page
    try:
        await page.goto(f"{browser_server.url}/")
        setup = await page.evaluate(LOOPBACK_JS)
        assert setup["settings"]["height"] == 720, setup["settings"]
        simulcast, rids = simulcast_lines(setup["offer"])
        assert simulcast == ["a=simulcast:send q;h;f"], simulcast
        assert rids == ["a=rid:q send", "a=rid:h send", "a=rid:f send"], rids

        # A `layers` set that arrives before the sender is negotiated waits for it.
        await page.evaluate("window.loop.layers.want(['q', 'h'])")
        assert await page.evaluate(ACTIVE_JS) == {"q": True, "h": True, "f": True}
        await page.evaluate("window.loop.layers.attach(window.loop.sender)")
        assert await page.evaluate(ACTIVE_JS) == {"q": True, "h": True, "f": False}
        encodings = await page.evaluate("window.loop.L.describeEncodings(window.loop.sender)")
        assert [(e["rid"], e["scaleResolutionDownBy"], e["maxBitrate"]) for e in encodings] == [
            ("q", 4, 150_000),
            ("h", 2, 500_000),
            ("f", 1, 1_500_000),
        ], encodings
        assert {e["scalabilityMode"] for e in encodings} == {"L1T3"}, encodings

        # Sets that arrive during a call: no two calls at once (Chromium refuses the
        # second), and the latest set is what stays. Then "nobody" keeps q on.
        await page.evaluate(
            """async () => {
                const l = window.loop.layers;
                await Promise.all([l.want(['q']), l.want(['h']), l.want(['q', 'h', 'f'])]);
                while (l.busy) await new Promise((r) => setTimeout(r, 20));
            }"""
        )
        assert await page.evaluate(ACTIVE_JS) == {"q": True, "h": True, "f": True}
        await eventually(
            lambda: page.evaluate("window.loop.pc1.connectionState === 'connected'"),
            15,
            "the loopback pair connected",
        )
        before = await eventually(
            lambda: all_sending(tab, ["q", "h", "f"]), 15, "all three layers sending"
        )
        await page.evaluate("window.loop.layers.want([])")
        assert await page.evaluate(ACTIVE_JS) == {"q": True, "h": False, "f": False}
        await asyncio.sleep(0.5)  # what was queued before the switch drains
        paused = {rid: sent for rid, (_, sent) in (await sending(tab, 1.5, loopback=True)).items()}
        assert paused["q"] > 0 and paused["h"] == 0 and paused["f"] == 0, (before, paused)
        print("bytes per rid in 1.5 s with only q on:", paused)
        assert not tab.errors, tab.diagnostics()
    finally:
        await tab.close()


PURE_JS = """async () => {
    const L = await import('/static/layers.js');
    const V = await import('/static/visibility.js');
    const Q = await import('/static/quality.js');
    const rids = (list) => list.map((e) => e.rid ?? null);
    const first = { rid: 'q', active: false };
    const vp8 = (scalabilityModes) => ({ codecs: [{ mimeType: 'video/VP8', scalabilityModes }] });
    return {
        instructor720: rids(L.encodingsFor('instructor', 720)),
        instructor360: rids(L.encodingsFor('instructor', 360)),
        instructor240: rids(L.encodingsFor('instructor', 240)),
        instructor120: L.encodingsFor('instructor', 120),
        participant360: rids(L.encodingsFor('participant', 360)),
        participant120: L.encodingsFor('participant', 120),
        unknown: rids(L.encodingsFor('participant', 0)),
        withMode: L.encodingsFor('participant', 360, { scalabilityMode: 'L1T3' })
            .map((e) => e.scalabilityMode),
        modeListed: L.temporalMode(vp8(['L1T1', 'L1T3'])),
        modeMissing: L.temporalMode(vp8(['L1T1'])),
        modeUnlisted: L.temporalMode(vp8(undefined)),
        firstStaysOn: (() => {
            const e = [first, { rid: 'h', active: true }];
            L.setActive(e, []);
            return e.map((x) => x.active);
        })(),
        widened: (() => {
            const e = [{ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 }];
            return [L.widenLoneEncoding(e, 'instructor'), e[0]];
        })(),
        planOfHost: L.planFor('host'),
        planOfParticipant: L.planFor('participant'),
        heights: [[200, 1.5], [9000, 1], [null, 2]].map(([h, ratio]) =>
            V.renderedHeight(h === null ? null : { clientHeight: h }, ratio)),
        changed: [[100, 109], [100, 111], [0, 5], [undefined, 5]].map(([before, after]) =>
            V.sizesChanged(before === undefined ? {} : { a: before }, { a: after })),
        caps: ['', '720', '180', 'junk'].map(Q.parseMaxHeight),
    };
}"""


async def test_layer_plans_and_helpers(browser: Any, browser_server: RunningServer) -> None:
    tab = await open_tab(browser, "helpers")
    try:
        await tab.page.goto(f"{browser_server.url}/")
        got = await tab.page.evaluate(PURE_JS)
        assert got["instructor720"] == ["q", "h", "f"]
        assert got["instructor360"] == ["q", "h", "f"]  # 90p is still worth sending
        assert got["instructor240"] == ["h", "f"]
        # One layer left: plain sending, no rid, full size.
        assert got["instructor120"] == [{"scaleResolutionDownBy": 1, "maxBitrate": 1_500_000}]
        assert got["participant360"] == ["q", "h"]
        assert got["participant120"] == [{"scaleResolutionDownBy": 1, "maxBitrate": 600_000}]
        assert got["unknown"] == ["q", "h"]
        assert got["withMode"] == ["L1T3", "L1T3"]
        assert (got["modeListed"], got["modeMissing"], got["modeUnlisted"]) == (
            "L1T3",
            None,
            "L1T3",
        )
        assert got["firstStaysOn"] == [True, False]
        assert got["widened"] == [
            True,
            {"rid": "q", "scaleResolutionDownBy": 1, "maxBitrate": 1_500_000},
        ]
        assert (got["planOfHost"], got["planOfParticipant"]) == ("instructor", "participant")
        assert got["heights"] == [300, 4320, 0]
        assert got["changed"] == [False, True, True, True]
        assert got["caps"] == [None, 720, 180, None]
    finally:
        await tab.close()


# -- the class page against the real server -----------------------------------------------

LAYERS_JS = "() => window.pulseroom.layers"
ANSWER_JS = "() => window.pulseroom.publishPc?.remoteDescription?.sdp ?? null"
# Deliver a server event to the page's own handler, as if the socket had received it.
DELIVER_JS = """([event, payload]) => {
    const handlers = window.pulseroom.socket.listeners(event);
    handlers.forEach((handler) => handler(payload));
    return handlers.length;
}"""


async def publish_state(tab: Tab) -> dict[str, Any]:
    """The page's layers hook once its publish connection has the SFU's answer."""
    await eventually(
        lambda: tab.page.evaluate(ANSWER_JS), 20, f"{tab.name}: the publish answer applied"
    )
    state: dict[str, Any] = await tab.page.evaluate(LAYERS_JS)
    state["answer"] = await tab.page.evaluate(ANSWER_JS)
    return state


def active_of(state: dict[str, Any]) -> dict[str | None, bool]:
    return {e["rid"]: e["active"] for e in state["encodings"]}


def check_offer(state: dict[str, Any], rids: list[str]) -> None:
    """The publish offer names ``rids`` as send layers, in order."""
    simulcast, rid_lines = simulcast_lines(state["offer"])
    assert simulcast == [f"a=simulcast:send {';'.join(rids)}"], simulcast
    assert rid_lines == [f"a=rid:{rid} send" for rid in rids], rid_lines


def check_answered_encodings(state: dict[str, Any], rids: list[str], top_bitrate: int) -> bool:
    """The encodings after the SFU's answer; whether the SFU took simulcast.

    An SFU that answers without ``a=simulcast`` leaves the browser one encoding, the
    first and smallest: the page sends it at full size instead.
    """
    encodings = state["encodings"]
    if "a=simulcast:recv" in state["answer"]:
        assert [e["rid"] for e in encodings] == rids, encodings
        return True
    assert len(encodings) == 1, encodings
    lone = encodings[0]
    assert (lone["scaleResolutionDownBy"], lone["maxBitrate"], lone["active"]) == (
        1,
        top_bitrate,
        True,
    ), encodings
    return False


async def sent_heights(tab: Tab, count: int) -> list[tuple[str, int]] | None:
    """(rid, frame height) of the page's video streams, lowest first, once ``count`` of
    them are sending."""
    streams = await sending(tab, 0.5, loopback=False)
    growing = [(rid, height) for rid, (height, sent) in streams.items() if height and sent > 0]
    return sorted(growing, key=lambda stream: stream[1]) if len(growing) == count else None


async def deliver_layers(tab: Tab, active: list[str]) -> None:
    handlers = await tab.page.evaluate(DELIVER_JS, ["layers", {"v": 1, "active": active}])
    assert handlers == 1, f"{tab.name}: {handlers} handlers for `layers`"


async def test_class_page_publishes_and_switches_layers(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Simulcast spin")
    host = await open_tab(browser, "host")
    ben = await open_tab(browser, "participant Ben")
    tabs = [host, ben]
    try:
        host_id = await join(host, str(room["host_link"]), "Coach Ana")
        ben_id = await join(ben, str(room["join_link"]), "Ben")
        hosting, joining = await publish_state(host), await publish_state(ben)
        assert (hosting["plan"], joining["plan"]) == ("instructor", "participant")
        # The instructor's camera is captured at 720p for its top layer.
        settings = await host.page.evaluate(
            "window.pulseroom.publishPc.getSenders().find((s) => s.track?.kind === 'video')"
            ".track.getSettings()"
        )
        assert (settings["width"], settings["height"]) == (1280, 720), settings
        check_offer(hosting, ["q", "h", "f"])
        check_offer(joining, ["q", "h"])
        simulcast = check_answered_encodings(hosting, ["q", "h", "f"], 1_500_000)
        assert check_answered_encodings(joining, ["q", "h"], 600_000) == simulcast

        # Video both ways; the instructor sends each layer at its own size (CPU load may
        # make Chromium scale them down, never up), or the lone one at more than the
        # lowest layer's 180p.
        await assert_video_flowing(ben, {host_id: "Coach Ana"})
        await assert_video_flowing(host, {ben_id: "Ben"})
        heights = await eventually(
            lambda: sent_heights(host, 3 if simulcast else 1),
            20,
            "the instructor's layers all sending",
        )
        print("instructor's layers sent (rid, frame height):", heights)
        tops = [height for _, height in heights]
        if simulcast:
            assert [rid for rid, _ in heights] == ["q", "h", "f"], heights
            assert tops == sorted(tops) and tops[0] <= 180 and tops[2] >= 360, heights
        else:
            assert tops[0] >= 360, heights

        if simulcast:
            await switch_through_the_server(host, ben)
        # The page's own handler, as the server's event reaches it: q alone, then all.
        # The lowest layer stays on whatever the set says.
        await deliver_layers(host, ["q"])
        state = await eventually(
            lambda: _settled(host, {"q": True, "h": False, "f": False}, simulcast),
            5,
            "only q active",
        )
        assert state["last"] == {"v": 1, "active": ["q"]}, state
        await deliver_layers(host, ["q", "h", "f"])
        await eventually(
            lambda: _settled(host, {"q": True, "h": True, "f": True}, simulcast),
            5,
            "all layers active again",
        )
        await deliver_layers(host, [])
        await eventually(
            lambda: _settled(host, {"q": True, "h": False, "f": False}, simulcast),
            5,
            "q stays on when nobody wants any",
        )
        # Back to all: what the SFU last asked for (it says only when that changes).
        await deliver_layers(host, ["q", "h", "f"])
        await assert_video_flowing(ben, {host_id: "Coach Ana"})
        for tab in tabs:
            assert not tab.errors, tab.diagnostics()
    except BaseException:
        for tab in tabs:
            print(tab.diagnostics())
        print(browser_server.log()[-4000:])
        raise
    finally:
        for tab in tabs:
            await tab.close()


async def _settled(
    tab: Tab, wanted: dict[str, bool], simulcast: bool, *alternatives: dict[str, bool]
) -> dict[str, Any] | None:
    """The layers hook once the encodings are as ``wanted`` or one of the
    ``alternatives`` (without simulcast, the lone encoding: always on)."""
    state: dict[str, Any] = await tab.page.evaluate(LAYERS_JS)
    if simulcast:
        return state if active_of(state) in (wanted, *alternatives) else None
    return state if [e["active"] for e in state["encodings"]] == [True] else None


async def switch_through_the_server(host: Tab, ben: Tab) -> None:
    """With an SFU that takes simulcast: Ben's data saver turns the instructor's upper
    layers off, and Auto turns them back on (the `layers` event, for real)."""
    await choose_quality(ben, "180")
    await eventually(
        lambda: _settled(host, {"q": True, "h": False, "f": False}, True),
        20,
        "the SFU pauses h and f for a viewer capped at 180p",
    )
    await choose_quality(ben, "")
    state = await eventually(
        lambda: _settled(
            host, {"q": True, "h": True, "f": True}, True, {"q": True, "h": True, "f": False}
        ),
        20,
        "the SFU resumes the upper layers for Auto",
    )
    print("layers after Auto:", state["last"])


async def choose_quality(tab: Tab, value: str) -> None:
    """Pick a Video quality in the Devices dialog, as a person would."""
    page = tab.page
    await page.get_by_test_id("devices-button").click()
    dialog = page.get_by_test_id("devices-dialog")
    await dialog.wait_for(state="visible")
    await dialog.get_by_label("Video quality").select_option(value)
    await page.get_by_test_id("devices-close").click()


# Outgoing `visibility` payloads and incoming `error` events, recorded on the page.
RECORD_JS = """() => {
    window.seen = { visibility: [], errors: [] };
    const socket = window.pulseroom.socket;
    socket.onAnyOutgoing((event, payload) => {
        if (event === 'visibility') window.seen.visibility.push(payload);
    });
    socket.on('error', (error) => window.seen.errors.push(error));
}"""
# The drawn height of a participant's tile video, in device pixels.
DRAWN_JS = """(id) => {
    const video = document.querySelector(`[data-testid=tile][data-participant-id="${id}"] video`);
    return Math.round(video.clientHeight * devicePixelRatio);
}"""


async def sent_visibility(tab: Tab) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = await tab.page.evaluate("window.seen.visibility")
    return sent


async def next_visibility(tab: Tab, after: int, what: str) -> dict[str, Any]:
    """The first `visibility` the page sends after its ``after``-th."""
    sent: list[dict[str, Any]] = await eventually(
        lambda: _more(tab, after), 10, f"{tab.name}: a visibility message ({what})"
    )
    return sent[after]


async def _more(tab: Tab, after: int) -> list[dict[str, Any]] | None:
    sent = await sent_visibility(tab)
    return sent if len(sent) > after else None


async def test_visibility_reports_drawn_sizes_and_the_quality_cap(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Data saver")
    host = await open_tab(browser, "host")
    ben = await open_tab(browser, "participant Ben")
    tabs = [host, ben]
    page = ben.page
    try:
        host_id = await join(host, str(room["host_link"]), "Coach Ana")
        await join(ben, str(room["join_link"]), "Ben")
        await page.locator(TILE.format(host_id)).wait_for()
        await page.evaluate(RECORD_JS)
        await asyncio.sleep(0.5)  # the join's own message is out

        # The window gets shorter: the instructor's tile (52vh high) shrinks by a quarter.
        count = len(await sent_visibility(ben))
        await page.set_viewport_size({"width": 1280, "height": 600})
        message = await next_visibility(ben, count, "after the tile shrank")
        drawn = await page.evaluate(DRAWN_JS, host_id)
        assert 250 < drawn < 400, drawn
        assert message["visible"] == [host_id], message
        assert message["sizes"] == {host_id: drawn}, (message, drawn)
        assert message["max_height"] is None, message

        # A few pixels are not worth a message (under 10 %).
        count = len(await sent_visibility(ben))
        await page.set_viewport_size({"width": 1280, "height": 606})
        await asyncio.sleep(1.0)
        assert len(await sent_visibility(ben)) == count, await sent_visibility(ben)

        # The data saver goes out at once, without waiting for the debounce.
        await choose_quality(ben, "180")
        message = await next_visibility(ben, count, "after choosing 180p")
        assert message["max_height"] == 180, message
        assert message["visible"] == [host_id] and host_id in message["sizes"], message
        assert await page.evaluate("localStorage.getItem('pulseroom.maxHeight')") == "180"

        # Scrolled away (a background tab alike): nobody shown, no sizes.
        count = len(await sent_visibility(ben))
        await page.evaluate(
            "Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
        message = await next_visibility(ben, count, "hidden tab")
        assert message == {**message, "visible": [], "sizes": {}, "max_height": 180}, message

        # The choice is remembered: the next visit starts with it.
        again = await ben.context.new_page()
        await again.goto(str(room["join_link"]))
        select = again.get_by_test_id("quality-select")
        assert await select.input_value() == "180"
        assert (
            await again.evaluate("document.querySelector('label[for=quality-select]').textContent")
            == "Video quality"
        )
        await again.close()

        errors = await page.evaluate("window.seen.errors")
        refused = [e for e in errors if e.get("event") == "visibility"]
        if SERVER_TAKES_SIZES:
            assert not refused, refused
        else:
            print("this server refuses the new visibility fields still:", refused[:1])
        for tab in tabs:
            assert not tab.errors, tab.diagnostics()
    except BaseException:
        for tab in tabs:
            print(tab.diagnostics())
        raise
    finally:
        for tab in tabs:
            await tab.close()


@pytest.mark.skipif(not FIREFOX.exists(), reason=f"{FIREFOX} is missing (Debian's firefox-esr)")
async def test_firefox_publishes_layers(browser: Any, browser_server: RunningServer) -> None:
    """Firefox takes RID `sendEncodings` too (it ignores the temporal mode): its offer
    carries the participant's two layers and the class sees its camera."""
    room = browser_server.create_room("Firefox layers")
    host = await open_tab(browser, "host")
    try:
        host_id = await join(host, str(room["host_link"]), "Coach Ana")
        async with firefox() as page:
            await page.goto(str(room["join_link"]))
            await wait_for(
                page,
                "() => document.body.dataset.state === 'prejoin'",
                timeout=10,
                what="join form",
            )
            await page.fill("[data-testid=name-input]", "Fern")
            await page.click("[data-testid=join-button]")
            await wait_for(
                page,
                "() => window.pulseroom.publishPc?.remoteDescription ? true : null",
                timeout=20,
                what="Firefox published",
            )
            me = str(await page.call("() => window.pulseroom.you.id"))
            state: dict[str, Any] = await page.call("() => window.pulseroom.layers")
            state["answer"] = await page.call(
                "() => window.pulseroom.publishPc.remoteDescription.sdp"
            )
            print(f"{page.name} {page.version} encodings:", state["encodings"])
            check_offer(state, ["q", "h"])
            simulcast = check_answered_encodings(state, ["q", "h"], 600_000)
            await assert_video_flowing(host, {me: "Fern"})
            await wait_for(
                page,
                f"async (id) => (await ({FRAMES_JS})())[id] > 0 || null",
                host_id,
                timeout=25,
                what="Firefox decodes the instructor",
            )
            if simulcast:
                await page.call(DELIVER_JS, ["layers", {"v": 1, "active": ["q"]}])
                await wait_for(
                    page,
                    """() => window.pulseroom.layers.encodings
                        .map((e) => e.active).join() === 'true,false' || null""",
                    timeout=5,
                    what="Firefox pauses h",
                )
            logs = [line for line in await page.logs() if line.startswith("javascript/")]
            assert not logs, logs
        assert not host.errors, host.diagnostics()
    except BaseException:
        print(host.diagnostics())
        print(browser_server.log()[-4000:])
        raise
    finally:
        await host.close()
