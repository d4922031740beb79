"""A strap paired from a phone: the device link as a QR code, and its strap page.

Issue 18, item 9: a participant whose browser has no Web Bluetooth (every iPhone
browser) scans the QR code of their device link with an Android phone, whose Chrome
pairs the strap (web/strap.js). A real ``pulseroom serve`` subprocess and headless
Debian Chromium; only the Bluetooth radio is fake (tests/fake_web_bluetooth.js). The QR
code is read back from the page's pixels with ZXing (zxing-cpp), as a phone's camera
would. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp

from tests.browser_fixtures import (
    BROWSER_MODULE,
    TILE,
    Tab,
    browser_fixture,  # noqa: F401 (fixture "browser")
    browser_server_fixture,  # noqa: F401 (fixture "browser_server")
    join,
    open_tab,
    screenshot,
)
from tests.conftest import RunningServer
from tests.sio_client import Client
from tests.waiting import until

pytestmark = BROWSER_MODULE

FAKE_STRAP = (Path(__file__).parent / "fake_web_bluetooth.js").read_text()
NO_BLUETOOTH = "delete Navigator.prototype.bluetooth;"
PHONE = (390, 844)

# The pixels of an image (a PNG screenshot) as 8-bit grey, decoded by the page's browser.
GREY_JS = """async (png) => {
    const image = new Image();
    image.src = `data:image/png;base64,${png}`;
    await image.decode();
    const canvas = new OffscreenCanvas(image.width, image.height);
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    const { data } = context.getImageData(0, 0, image.width, image.height);
    const grey = new Uint8Array(image.width * image.height);
    for (let i = 0; i < grey.length; i += 1) grey[i] = data[4 * i + 1];
    let text = '';
    for (let i = 0; i < grey.length; i += 8192) {
        text += String.fromCharCode(...grey.subarray(i, i + 8192));
    }
    return { width: image.width, height: image.height, grey: btoa(text) };
}"""


def token_payload(token: str) -> dict[str, Any]:
    """A token's payload, unverified (the tests only read what the server signed)."""
    body = token.split(".")[0]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return data


async def read_qr(tab: Tab, testid: str) -> list[str]:
    """The texts of the QR codes in an element's screenshot, read by ZXing."""
    png = await tab.page.get_by_test_id(testid).screenshot()
    pixels = await tab.page.evaluate(GREY_JS, base64.b64encode(png).decode())
    grey = memoryview(base64.b64decode(pixels["grey"])).cast(
        "B", (pixels["height"], pixels["width"])
    )
    return [found.text for found in zxingcpp.read_barcodes(grey)]


async def stored_readings(server: RunningServer, room_id: str, token: str, pid: str) -> int:
    """How many readings the server stored for a participant (the summary's count)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.get(
            f"/api/rooms/{room_id}/summary", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    people = response.json()["participants"]
    return int(next(p for p in people if p["id"] == pid)["readings"])


async def strap_page(tab: Tab, link: str) -> None:
    """Open a device link; wait until the strap page has joined the class."""
    await tab.page.goto(link)
    await tab.page.wait_for_function("document.body.dataset.state === 'joined'")


async def test_a_phone_pairs_the_strap_of_a_participant_without_web_bluetooth(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Phone spin")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    host_link = str(room["host_link"])
    host = await open_tab(browser, "host")
    ivy = await open_tab(browser, "iPhone-like Ivy", viewport=PHONE, init_script=NO_BLUETOOTH)
    phone = await open_tab(browser, "Android phone", viewport=PHONE, init_script=FAKE_STRAP)
    second = await open_tab(browser, "second phone", viewport=PHONE, init_script=FAKE_STRAP)
    tabs = [host, ivy, phone, second]
    try:
        await join(host, host_link, "Coach Ana")
        ivy_id = await join(ivy, str(room["join_link"]), "Ivy")

        # Ivy's page shows her device link as a QR code, large, saying what it is for.
        qr = ivy.page.get_by_test_id("device-qr")
        await qr.wait_for(state="visible")
        caption = await ivy.page.get_by_test_id("device-qr-caption").text_content()
        assert caption == "Scan with an Android phone to pair your strap"
        assert "prominent" in (await qr.get_attribute("class") or "")
        status = await ivy.page.get_by_test_id("strap-status").text_content() or ""
        assert "scan the QR code below with an Android phone" in status
        link = await ivy.page.get_by_test_id("device-link").input_value()
        grant = token_payload(link.split("#t=", 1)[1])
        assert (grant["role"], grant["p"], grant["r"]) == ("device", ivy_id, room_id)
        # Read back from the pixels, as a phone's camera would: exactly the device link.
        assert await read_qr(ivy, "device-qr-code") == [link]
        box = await qr.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0]
        await screenshot(ivy, "phone-qr-participant")

        # The phone opens it: whose heart rate, in which class; pairs; sends.
        await strap_page(phone, link)
        heading = phone.page.get_by_test_id("strap-heading")
        assert await heading.text_content() == "Heart rate for Ivy in Phone spin"
        assert "#t=" not in phone.page.url  # the token left the address bar
        pair = phone.page.get_by_test_id("strap-pair-button")
        assert await pair.get_attribute("aria-pressed") == "false"
        await pair.click()
        state = phone.page.locator('[data-testid=strap-state][data-state="connected"]')
        await state.wait_for(state="attached", timeout=5_000)
        assert await pair.text_content() == "Unpair strap"
        # The server acknowledged readings (they are stored): the page counts them.
        await phone.page.wait_for_function("window.pulseroom.hr.sender.acked > 0")
        delivery = phone.page.get_by_test_id("strap-delivery")
        await delivery.filter(has_text="readings delivered to the class").wait_for()
        # The shown value first, then what was sent: the strap keeps sending, and a reading
        # shown was sent before it (read the other way round, a loaded run saw 162 shown
        # that had been sent after the list was taken).
        bpm = int(await phone.page.get_by_test_id("strap-bpm").text_content() or 0)
        sent = await phone.page.evaluate("window.__fakeStrap.sent.slice()")
        assert bpm in sent

        # The instructor sees it on Ivy's tile: no one else joined the class.
        badge = host.page.locator(f"{TILE.format(ivy_id)} [data-testid=hr-bpm]")
        await badge.wait_for(timeout=10_000)
        shown = int(await badge.text_content() or 0)
        assert shown in await phone.page.evaluate("window.__fakeStrap.sent.slice()")
        names = await host.page.evaluate("window.pulseroom.participants.map((p) => p.name)")
        assert sorted(names) == ["Coach Ana", "Ivy"]
        # Ivy's own page says where her heart rate comes from.
        await ivy.page.locator("#strap-status").filter(has_text="from your bridge").wait_for()
        await screenshot(phone, "phone-strap-page")

        # One sender per device link: a second phone is told, and may try again later.
        await second.page.goto(link)
        refusal = second.page.locator('[data-testid=strap-delivery][data-code="device_in_use"]')
        await refusal.wait_for(timeout=30_000)  # the page loads, connects and is refused
        assert "Another device is already sending" in (await refusal.text_content() or "")
        assert await second.page.get_by_test_id("strap-retry").is_visible()
        await second.close()
        tabs.remove(second)

        # The phone's network drops: it rejoins by itself and loses no reading.
        await phone.page.evaluate("window.pulseroom.socket.io.engine.close()")
        await phone.page.wait_for_function("window.pulseroom.rejoins.length === 1")
        await phone.page.wait_for_function("document.body.dataset.state === 'joined'")
        await phone.page.evaluate("window.__fakeStrap.stop()")
        await phone.page.wait_for_function(
            "(() => { const s = window.pulseroom.hr.sender; return s.pending === 0 && s.open; })()"
        )
        sent = await phone.page.evaluate("window.__fakeStrap.sent.slice()")
        host_token = host_link.split("#t=", 1)[1]

        async def all_stored() -> bool:
            return await stored_readings(browser_server, room_id, host_token, ivy_id) == len(sent)

        await until(all_stored, what=f"all {len(sent)} readings stored as Ivy's")

        # The class ends: the phone says so and lets the strap go.
        await host.page.get_by_test_id("end-button").click()
        await host.page.get_by_test_id("end-confirm").click()
        notice = phone.page.locator('[data-testid=notice][data-code="room_ended"]')
        await notice.wait_for()
        assert await phone.page.evaluate("window.pulseroom.hr.strap.state") == "idle"
        for tab in tabs:
            assert not tab.errors, tab.diagnostics()
    except BaseException:
        for tab in tabs:
            print(tab.diagnostics())
        raise
    finally:
        for tab in tabs:
            await tab.close()


async def test_a_device_link_says_when_it_cannot_be_used(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Replaced device link")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    jo = await Client(browser_server.url).connect()
    phone = await open_tab(browser, "phone", viewport=PHONE, init_script=FAKE_STRAP)
    iphone = await open_tab(browser, "iPhone", viewport=PHONE, init_script=NO_BLUETOOTH)
    try:
        joined = await jo.join(str(room["join_link"]), "Jo")
        assert joined["ok"], joined
        link = f"{browser_server.url}/r/{room_id}#t={joined['device_token']}"

        # Without Web Bluetooth the page says where to open it, and takes no place in class.
        await iphone.page.goto(link)
        message = iphone.page.get_by_test_id("strap-no-bluetooth")
        await message.wait_for(state="visible")
        assert "Chrome on an Android phone" in (await message.text_content() or "")
        assert await iphone.page.get_by_test_id("strap-pair-button").is_hidden()
        await screenshot(iphone, "phone-strap-no-bluetooth")

        # The instructor replaces the class's links: this device link is refused, in words.
        answer = browser_server.instructor().post(f"/api/rooms/{room_id}/links")
        assert answer.status_code == 200, answer.text
        await phone.page.goto(link)
        notice = phone.page.locator('[data-testid=notice][data-code="link_replaced"]')
        await notice.wait_for()
        title = await phone.page.get_by_test_id("notice-title").text_content()
        assert title == "This device link was replaced"
        for tab in (phone, iphone):
            assert not tab.errors, tab.diagnostics()
    finally:
        await jo.close()
        await phone.close()
        await iphone.close()


@pytest.mark.parametrize("text", ["https://class.example/r/abc#t=x.y", "a" * 300])
async def test_the_qr_module_makes_a_code_zxing_reads(
    browser: Any, browser_server: RunningServer, text: str
) -> None:
    """web/qr.js on its own: long and short texts come back exactly."""
    room = browser_server.create_room("QR module")
    tab = await open_tab(browser, "qr")
    try:
        await tab.page.goto(str(room["join_link"]))
        await tab.page.evaluate(
            """async (text) => {
                const { qrSvg } = await import('/static/qr.js');
                const box = document.createElement('div');
                box.dataset.testid = 'qr-under-test';
                box.style.width = '300px';
                box.append(qrSvg(text, 'test code'));
                document.body.prepend(box);
            }""",
            text,
        )
        assert await read_qr(tab, "qr-under-test") == [text]
    finally:
        await tab.close()
