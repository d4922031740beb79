"""Heart rate end to end in a real browser: strap → page → data channel → server → pages.

A real ``pulseroom serve`` subprocess and headless Debian Chromium, as in
test_browser.py. Only the Bluetooth radio is fake: tests/fake_web_bluetooth.js puts a
strap behind ``navigator.bluetooth`` that notifies real Heart Rate Measurement (0x2A37)
bytes, which the page decodes, sends on its ``telemetry`` data channel and re-sends
until the server acknowledges them. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from pulseroom.hr_link import HeartRateLink
from telemetry.hrm import HeartRateMeasurement, MalformedMeasurement, decode
from telemetry.zones import Profile, percent_of_max, zone
from tests.browser_fixtures import (
    ARTIFACTS,
    BROWSER_MODULE,
    Tab,
    browser_fixture,  # noqa: F401 (fixture "browser")
    browser_server_fixture,  # noqa: F401 (fixture "browser_server")
    join,
    open_tab,
    screenshot,
)
from tests.conftest import RunningServer

# Alone (conftest): heart rate must reach the instructor within a second, measured in wall
# time, and the module's tests are one class in sequence, so they move together.
pytestmark = [*BROWSER_MODULE, pytest.mark.alone]

FAKE_STRAP = (Path(__file__).parent / "fake_web_bluetooth.js").read_text()
NO_BLUETOOTH = "delete Navigator.prototype.bluetooth;"

# A tile's heart-rate badge as numbers (null when the tile or its badge is missing).
BADGE_JS = """(id) => {
    const b = document.querySelector(
        `[data-testid=tile][data-participant-id="${id}"] [data-testid=hr]`);
    if (!b) return null;
    return {
        bpm: Number(b.querySelector('[data-testid=hr-bpm]').textContent),
        zone: Number(b.dataset.zone),
        pct: parseInt(b.querySelector('[data-testid=hr-pct]').textContent, 10),
        stale: b.dataset.stale === 'true',
    };
}"""


def token_payload(token: str) -> dict[str, Any]:
    """A token's payload, unverified (the tests only read what the server signed)."""
    body = token.split(".")[0]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return data


async def badge(tab: Tab, participant_id: str) -> dict[str, Any] | None:
    result: dict[str, Any] | None = await tab.page.evaluate(BADGE_JS, participant_id)
    return result


async def hook(tab: Tab) -> dict[str, Any]:
    """window.pulseroom.hr: what the page received and its sender's state."""
    data: dict[str, Any] = await tab.page.evaluate("window.pulseroom.hr")
    return data


async def strap_sent(tab: Tab) -> list[int]:
    sent: list[int] = await tab.page.evaluate("window.__fakeStrap.sent.slice()")
    return sent


async def pair(tab: Tab) -> None:
    """Pair the fake strap from the class page's toolbar; wait until it is connected."""
    await tab.page.get_by_test_id("pair-strap-button").click()
    status = tab.page.locator('[data-testid=strap-status][data-state="connected"]')
    await status.wait_for(state="attached", timeout=5_000)


async def summary(server: RunningServer, room_id: str, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.get(
            f"/api/rooms/{room_id}/summary", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def downloaded(download: Any) -> str:
    """The text of a file the page saved (a Blob link's download)."""
    path = Path(await download.path())
    return await asyncio.to_thread(path.read_text)


def person(data: dict[str, Any], participant_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in data["participants"] if p["id"] == participant_id)
    return found


@dataclass
class HrClass:
    """A running class: the instructor and two participants who wear (fake) straps."""

    room_id: str
    host_token: str
    join_link: str
    host: Tab
    ben: Tab
    cleo: Tab
    host_id: str
    ben_id: str
    cleo_id: str

    @property
    def tabs(self) -> list[Tab]:
        return [self.host, self.ben, self.cleo]


async def join_paired(tab: Tab, link: str, name: str) -> str:
    """Pair the strap on the pre-join form (it shows the bpm there), then join."""
    page = tab.page
    await page.goto(link)
    await page.get_by_test_id("prejoin-pair-strap-button").click()
    status = page.get_by_test_id("prejoin-strap-status").filter(has_text="bpm")
    await status.wait_for(timeout=5_000)
    await page.get_by_test_id("profile-toggle").click()
    await screenshot(tab, "hr-prejoin")
    await page.get_by_test_id("name-input").fill(name)
    await page.get_by_test_id("join-button").click()
    await page.wait_for_function("document.body.dataset.state === 'joined'", timeout=20_000)
    participant_id: str = await page.evaluate("window.pulseroom.you.id")
    return participant_id


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="hr_class")
async def hr_class_fixture(browser: Any, browser_server: RunningServer) -> AsyncIterator[HrClass]:
    room = browser_server.create_room("Heart-rate spin")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    host_link, join_link = str(room["host_link"]), str(room["join_link"])
    host = await open_tab(browser, "host")
    ben = await open_tab(browser, "participant Ben", init_script=FAKE_STRAP)
    cleo = await open_tab(browser, "participant Cleo", init_script=FAKE_STRAP)
    try:
        host_id = await join(host, host_link, "Coach Ana")
        ben_id, cleo_id = await asyncio.gather(
            join(ben, join_link, "Ben"), join_paired(cleo, join_link, "Cleo")
        )
        yield HrClass(
            room_id=room_id,
            host_token=host_link.split("#t=", 1)[1],
            join_link=join_link,
            host=host,
            ben=ben,
            cleo=cleo,
            host_id=host_id,
            ben_id=ben_id,
            cleo_id=cleo_id,
        )
        for tab in (host, ben, cleo):
            assert not tab.errors, tab.diagnostics()
    except BaseException:
        for tab in (host, ben, cleo):
            print(tab.diagnostics())
        print(browser_server.log()[-4000:])
        raise
    finally:
        for tab in (host, ben, cleo):
            await tab.close()


async def test_heart_rate_reaches_the_host_within_a_second_and_nobody_else(
    hr_class: HrClass,
) -> None:
    c = hr_class
    # The publish offer carried the telemetry data channel (m=application).
    sdp = await c.ben.page.evaluate("window.pulseroom.publishPc.localDescription.sdp")
    assert "m=application" in sdp
    options = await c.ben.page.evaluate("window.__fakeStrap.options || null")
    assert options is None  # nothing asked for a device yet

    # Closing the browser's chooser without a choice is said as such.
    await c.ben.page.evaluate("window.__fakeStrap.cancelNext = true")
    await c.ben.page.get_by_test_id("pair-strap-button").click()
    await c.ben.page.get_by_test_id("strap-status").filter(has_text="Pairing cancelled").wait_for()
    pair_button = c.ben.page.get_by_test_id("pair-strap-button")
    assert await pair_button.get_attribute("aria-pressed") == "false"
    await pair(c.ben)  # Cleo paired hers before joining
    options = await c.ben.page.evaluate("window.__fakeStrap.options")
    assert options == {
        "filters": [{"services": ["heart_rate"]}],
        "optionalServices": ["battery_service"],
    }
    status = await c.ben.page.get_by_test_id("strap-status").text_content()
    assert status == "Fake HRM 4711 connected · battery 87%"

    # The instructor's tile of each shows their heart rate.
    for pid in (c.ben_id, c.cleo_id):
        await c.host.page.wait_for_function(
            f"(id) => ({BADGE_JS})(id) !== null", arg=pid, timeout=10_000
        )
    await asyncio.sleep(2.0)  # ~10 readings each

    shown = await badge(c.host, c.ben_id)
    sent = await strap_sent(c.ben)
    assert shown is not None and shown["bpm"] in sent, (shown, sent)
    default = Profile()  # no profile yet: HRmax estimated for age 35
    assert shown["pct"] == percent_of_max(shown["bpm"], default)
    assert shown["zone"] == zone(shown["bpm"], default)
    assert not shown["stale"]

    # Within a second of the server receiving each reading, the host page rendered it.
    host_seen = await hook(c.host)
    mine = [e for e in host_seen["log"] if e["participant_id"] == c.ben_id]
    assert len(mine) >= 5, host_seen
    delays = [e["rendered_at"] - e["received_at"] * 1000 for e in mine]
    print(
        f"hr fan-out, server receipt → host page rendered: n={len(delays)} "
        f"median {statistics.median(delays):.0f} ms, max {max(delays):.0f} ms"
    )
    assert max(delays) < 1000, delays
    assert all(e["bpm"] in sent for e in mine)

    # Health data goes to the host and its owner only: each participant got only their own.
    ben_seen, cleo_seen = await hook(c.ben), await hook(c.cleo)
    assert set(ben_seen["readings"]) == {c.ben_id}, ben_seen["readings"]
    assert set(cleo_seen["readings"]) == {c.cleo_id}, cleo_seen["readings"]
    assert set(host_seen["readings"]) == {c.ben_id, c.cleo_id}
    assert await badge(c.cleo, c.ben_id) is None

    # Ben sees his own heart rate, large.
    own = c.ben.page.get_by_test_id("own-hr")
    assert await own.is_visible()
    own_bpm = int(await c.ben.page.get_by_test_id("own-hr-bpm").text_content() or 0)
    assert own_bpm in await strap_sent(c.ben)
    await screenshot(c.host, "hr-host")
    await screenshot(c.ben, "hr-participant")

    # The strap drops out of range; the page reconnects to it by itself.
    connects = await c.ben.page.evaluate("window.__fakeStrap.connects")
    await c.ben.page.evaluate("window.__fakeStrap.drop()")
    await c.ben.page.wait_for_function(
        "(n) => window.__fakeStrap.connects > n && window.pulseroom.hr.strap.state === 'connected'",
        arg=connects,
        timeout=5_000,
    )


async def test_readings_survive_a_dropped_connection_and_are_stored_once(
    hr_class: HrClass, browser_server: RunningServer
) -> None:
    c = hr_class
    page = c.ben.page
    # Drop Ben's connection mid-stream: he rejoins as the same participant with the
    # bound token, and what was read meanwhile is re-sent on the new data channel.
    await page.evaluate("window.__oldPc = window.pulseroom.publishPc")
    await page.evaluate("window.pulseroom.socket.io.engine.close()")
    await page.wait_for_function(
        """() => window.pulseroom.phase === 'joined'
            && window.pulseroom.publishPc && window.pulseroom.publishPc !== window.__oldPc
            && window.pulseroom.hr.sender.open""",
        timeout=20_000,
    )
    assert await page.evaluate("window.pulseroom.you.id") == c.ben_id
    await asyncio.sleep(1.0)
    await page.evaluate("window.__fakeStrap.stop()")

    # Everything read is acknowledged (durable), then the summary has each reading once.
    try:
        await page.wait_for_function(
            "window.pulseroom.hr.sender.pending === 0", timeout=15_000, polling=100
        )
    except Exception:
        raise AssertionError(f"unacknowledged readings remain: {await hook(c.ben)}") from None
    sender = (await hook(c.ben))["sender"]
    sent = await strap_sent(c.ben)
    assert sender["resent"] > 0, sender
    assert sender["seq"] == len(sent)
    data = await summary(browser_server, c.room_id, c.host_token)
    ben = person(data, c.ben_id)
    assert ben["readings"] == len(sent), (ben["readings"], len(sent), sender)
    assert ben["summary"]["peak_bpm"] == max(sent)
    print(f"Ben: {len(sent)} readings sent, {sender['resent']} re-sent, stored once each")

    # A reload comes back as the same participant, and the counter carries on.
    await page.reload()
    await page.get_by_test_id("join-button").wait_for(state="visible", timeout=10_000)
    assert await page.get_by_test_id("name-input").input_value() == "Ben"
    await page.get_by_test_id("join-button").click()
    await page.wait_for_function("document.body.dataset.state === 'joined'", timeout=20_000)
    assert await page.evaluate("window.pulseroom.you.id") == c.ben_id
    assert (await hook(c.ben))["sender"]["seq"] == len(sent)
    token = await page.evaluate("window.pulseroom.token")
    assert token_payload(token)["p"] == c.ben_id


async def test_profile_form_sets_the_zones(hr_class: HrClass) -> None:
    c = hr_class
    page = c.cleo.page
    await page.get_by_test_id("zones-button").click()
    form = page.get_by_test_id("profile-form")
    await form.wait_for(state="visible")
    # Out of range: refused in the page, with the range.
    await page.get_by_test_id("profile-max-hr").fill("250")
    await page.get_by_test_id("profile-save").click()
    error = page.locator("#pf-max-error")
    await error.wait_for(state="visible", timeout=3_000)
    assert await error.text_content() == "Max heart rate must be between 100 and 230."
    await screenshot(c.cleo, "hr-zones-dialog")
    await page.get_by_test_id("profile-max-hr").fill("190")
    await page.get_by_test_id("profile-save").click()
    saved = page.get_by_test_id("profile-status").filter(has_text="190 bpm")
    await saved.wait_for(timeout=5_000)
    assert not await error.is_visible()
    await page.get_by_test_id("zones-close").click()

    # The host's tile of Cleo now shows %HRmax and zone of 190 (from the next reading).
    profile = Profile(max_hr=190)
    deadline = time.monotonic() + 5
    good = 0
    shown: dict[str, Any] | None = None
    while good < 3:
        shown = await badge(c.host, c.cleo_id)
        ok = (
            shown is not None
            and shown["pct"] == round(100 * shown["bpm"] / 190)
            and shown["zone"] == zone(shown["bpm"], profile)
        )
        good = good + 1 if ok else 0
        assert time.monotonic() < deadline, f"host tile of Cleo: {shown}"
        await asyncio.sleep(0.25)
    assert shown is not None and shown["bpm"] in await strap_sent(c.cleo)
    await screenshot(c.cleo, "hr-participant-own")
    await page.set_viewport_size({"width": 390, "height": 844})
    await screenshot(c.cleo, "hr-participant-phone")
    await page.set_viewport_size({"width": 1280, "height": 800})


async def test_summary_page_after_class(hr_class: HrClass, browser_server: RunningServer) -> None:
    c = hr_class
    # Ben's strap went quiet in the test before: his tile says so after ~10 s.
    await c.host.page.wait_for_function(
        f"(id) => ({BADGE_JS})(id)?.stale === true", arg=c.ben_id, timeout=15_000
    )
    await screenshot(c.host, "hr-host-stale")

    await c.host.page.get_by_test_id("end-button").click()
    await c.host.page.get_by_test_id("end-confirm").click()
    for tab in c.tabs:
        action = tab.page.get_by_test_id("notice-action")
        await action.wait_for(state="visible", timeout=10_000)
        assert await action.text_content() == "See your summary", tab.name

    # The instructor's summary: everyone, a chart over zone bands for each with readings.
    page = c.host.page
    # The summary link carries a summary-only token (it may be shared or bookmarked),
    # not the instructor's rejoin token.
    href = await page.get_by_test_id("notice-action").get_attribute("href") or ""
    assert f"/r/{c.room_id}/summary#t=" in href, href
    summary_grant = token_payload(href.split("#t=", 1)[1])
    assert summary_grant.get("s") == 1 and summary_grant["role"] == "host", summary_grant
    await page.get_by_test_id("notice-action").click()
    await page.wait_for_function("document.body.dataset.state === 'loaded'", timeout=10_000)
    # Read, the token leaves the address bar; the tab keeps it for a reload.
    assert page.url.endswith(f"/r/{c.room_id}/summary"), page.url
    await page.reload()
    await page.wait_for_function("document.body.dataset.state === 'loaded'", timeout=10_000)
    # The class first: a table of the two with heart rate, the zones over time; then a
    # card each for them, and the instructor (no strap) named once, not given a card.
    assert await page.get_by_test_id("class-row").count() == 2
    assert await page.get_by_test_id("zone-distribution").locator("polygon").count() >= 1
    assert "Coach" in (await page.get_by_test_id("without-hr").text_content() or "")
    assert await page.get_by_test_id("person").count() == 2
    charts = page.get_by_test_id("hr-chart")
    assert await charts.count() == 2
    for i in range(2):
        chart = charts.nth(i)
        d = await chart.locator("path.hr-line").get_attribute("d") or ""
        assert d.startswith("M") and d.count("L") > 5, d
        assert await chart.locator("rect[data-zone]").count() >= 4
    assert await page.get_by_test_id("export-mine").is_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "hr-summary-host.png"), full_page=True)

    async with page.expect_download() as download_info:
        await page.get_by_test_id("download-csv").click()
    download = await download_info.value
    assert download.suggested_filename.startswith("pulseroom-20"), download.suggested_filename
    assert download.suggested_filename.endswith("-summary.csv"), download.suggested_filename
    rows = (await downloaded(download)).strip().splitlines()
    assert rows[0].startswith("participant_id,name,duration_min,average_bpm,peak_bpm")
    assert len(rows) == 4

    # Cleo's summary: only her, with her max HR; she exports, then deletes her data.
    page = c.cleo.page
    await page.get_by_test_id("notice-action").click()
    await page.wait_for_function("document.body.dataset.state === 'loaded'", timeout=10_000)
    assert await page.get_by_test_id("person").count() == 1
    assert await page.get_by_test_id("hr-max").text_content() == "190 bpm"
    assert await page.get_by_test_id("download-csv").is_hidden()
    await page.screenshot(path=str(ARTIFACTS / "hr-summary-participant.png"), full_page=True)
    async with page.expect_download() as download_info:
        await page.get_by_test_id("export-mine").click()
    exported = json.loads(await downloaded(await download_info.value))
    assert exported["participant"]["profile"]["max_hr"] == 190
    assert len(exported["heart_rate"]) > 0

    await page.get_by_test_id("delete-mine").click()
    await page.get_by_test_id("delete-confirm").click()
    status = page.get_by_test_id("summary-status").filter(has_text="Deleted:")
    await status.wait_for(timeout=5_000)
    assert f"{len(exported['heart_rate'])} heart-rate readings" in (
        await status.text_content() or ""
    )
    # Her profile row goes too, so she is no longer in the class's summary at all.
    await page.get_by_test_id("nothing-stored").wait_for(timeout=5_000)
    assert await page.get_by_test_id("delete-mine").is_hidden()
    data = await summary(browser_server, c.room_id, c.host_token)
    assert {p["id"] for p in data["participants"]} == {c.host_id, c.ben_id}
    assert person(data, c.ben_id)["readings"] > 0


async def test_without_web_bluetooth_the_page_offers_the_bridge(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("No Bluetooth here")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    tab = await open_tab(browser, "firefox-like", init_script=NO_BLUETOOTH)
    page = tab.page
    link: HeartRateLink | None = None
    task: asyncio.Task[None] | None = None
    try:
        await page.goto(str(room["join_link"]))
        await page.get_by_test_id("prejoin-bridge-note").wait_for(state="visible")
        assert await page.get_by_test_id("prejoin-pair-strap-button").is_hidden()
        # The zones are set before joining and sent on join.
        await page.get_by_test_id("profile-toggle").click()
        await page.get_by_test_id("profile-max-hr").fill("180")
        await page.get_by_test_id("profile-save").click()
        await page.get_by_test_id("profile-status").filter(has_text="used when you join").wait_for()
        await screenshot(tab, "hr-prejoin-bridge")
        me = await join(tab, str(room["join_link"]), "Dana")

        assert await page.get_by_test_id("pair-strap-button").is_hidden()
        device_link = page.get_by_test_id("device-link")
        await device_link.wait_for(state="visible")
        value = await device_link.input_value()
        assert value.startswith(f"{browser_server.url}/r/{room_id}#t=")
        grant = token_payload(value.split("#t=", 1)[1])
        assert (grant["role"], grant["p"], grant["r"]) == ("device", me, room_id)
        note = await page.get_by_test_id("bridge-note").text_content() or ""
        assert "pulseroom hr-bridge" in note
        await screenshot(tab, "hr-bridge-note")

        bound = await page.evaluate("window.pulseroom.token")
        deadline = time.monotonic() + 5
        while person(await summary(browser_server, room_id, bound), me)["hr_max"] != 180:
            assert time.monotonic() < deadline, "the profile from before joining was not sent"
            await asyncio.sleep(0.2)

        # The bridge with that link: its readings are Dana's, shown on her page.
        link = HeartRateLink(value, name="bridge")
        task = asyncio.create_task(link.run())
        await link.wait_open()
        link.send(HeartRateMeasurement(bpm=133, contact=True))
        await page.get_by_test_id("own-hr-bpm").filter(has_text="133").wait_for(timeout=5_000)
        assert await page.get_by_test_id("own-hr-pct").text_content() == "74% of max"
        # The panel says where the heart rate comes from, not "No strap paired".
        status = page.locator("#strap-status")
        assert "from your bridge: 133 bpm" in (await status.text_content() or "")
        assert not tab.errors, tab.diagnostics()
    finally:
        if task is not None:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await tab.close()


# (name, bytes) of notifications, from the Python encoder and by hand (malformed ones too).
DECODER_CASES: list[tuple[str, bytes]] = [
    ("uint8", HeartRateMeasurement(bpm=72).encode()),
    ("uint16 with contact", HeartRateMeasurement(bpm=301, contact=True, wide=True).encode()),
    ("no contact", HeartRateMeasurement(bpm=0, contact=False).encode()),
    ("energy and RR", HeartRateMeasurement(bpm=150, energy_kj=513, rr=(410, 1023)).encode()),
    ("RR flag without values", HeartRateMeasurement(bpm=60).encode(rr_flag=True)),
    ("empty", b""),
    ("flags only", b"\x01"),
    ("uint16 truncated", b"\x01\x50"),
    ("energy truncated", b"\x08\x50\x01"),
    ("odd RR bytes", b"\x10\x50\x01\x02\x03"),
    ("trailing byte", b"\x00\x50\x07"),
]


async def test_page_decodes_notifications_like_the_python_decoder(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Decoder")
    tab = await open_tab(browser, "decoder")
    try:
        await tab.page.goto(str(room["join_link"]))
        results: list[dict[str, Any]] = await tab.page.evaluate(
            """async (cases) => {
                const { decodeHeartRateMeasurement } = await import('/static/bluetooth.js');
                return cases.map((hex) => {
                    const pairs = hex.match(/../g) ?? [];
                    const bytes = new Uint8Array(pairs.map((h) => parseInt(h, 16)));
                    try {
                        return { ok: decodeHeartRateMeasurement(new DataView(bytes.buffer)) };
                    } catch (error) {
                        return { error: error.message };
                    }
                });
            }""",
            [data.hex() for _, data in DECODER_CASES],
        )
        for (name, data), result in zip(DECODER_CASES, results, strict=True):
            try:
                want = decode(data)
            except MalformedMeasurement as exc:
                assert result == {"error": str(exc)}, name
                continue
            got = result["ok"]
            assert (got["bpm"], got["contact"], got["energy_kj"], got["wide"]) == (
                want.bpm,
                want.contact,
                want.energy_kj,
                want.wide,
            ), name
            assert tuple(got["rr"]) == want.rr, name
            assert got["rr_ms"] == pytest.approx(list(want.rr_ms)), name
        assert not tab.errors, tab.diagnostics()
    finally:
        await tab.close()
