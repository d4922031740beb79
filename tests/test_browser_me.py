"""A participant account in a real browser: sign up, set zones on /me, join a class by
its link with a (fake) strap while logged in, the instructor ends the class, and /me
shows the class with its figures and a summary link that opens the class summary.

A real ``pulseroom serve`` subprocess and headless Debian Chromium; only the Bluetooth
radio is fake (tests/fake_web_bluetooth.js). The instructor is a Socket.IO client.
"""

from __future__ import annotations

from typing import Any

from tests.browser_fixtures import (
    BROWSER_MODULE,
    browser_fixture,  # noqa: F401 (fixture "browser")
    browser_server_fixture,  # noqa: F401 (fixture "browser_server")
    join,
    open_tab,
    screenshot,
)
from tests.conftest import RunningServer
from tests.sio_client import Client
from tests.test_browser_hr import FAKE_STRAP, join_paired, summary
from tests.waiting import until

pytestmark = BROWSER_MODULE

EMAIL = "ann.runner@example.org"
PASSWORD = "ann's long password"


async def test_a_logged_in_participant_finds_the_class_on_their_page(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Thursday intervals")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    host_token = str(room["host_link"]).split("#t=", 1)[1]
    tab = await open_tab(browser, "participant Ann", viewport=(390, 844), init_script=FAKE_STRAP)
    host = await Client(browser_server.url).connect()
    page = tab.page
    try:
        # Sign up on /signup: logged in at once.
        await page.goto(f"{browser_server.url}/signup")
        await page.get_by_test_id("email-input").fill(EMAIL)
        await page.get_by_test_id("password-input").fill(PASSWORD)
        await page.get_by_test_id("account-button").click()
        await page.get_by_test_id("account-done").wait_for()
        # The zones, set on /me before any class.
        await page.goto(f"{browser_server.url}/me")
        await page.wait_for_function("document.body.dataset.state === 'ready'")
        assert await page.get_by_test_id("me-empty").is_visible()
        await page.get_by_test_id("profile-max-hr").fill("188")
        await page.get_by_test_id("profile-age").fill("33")
        await page.get_by_test_id("profile-save").click()
        await page.get_by_test_id("profile-status").filter(has_text="188").wait_for()

        assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
        ann_id = await join_paired(tab, str(room["join_link"]), "Ann")
        assert await page.evaluate("window.pulseroom.you.role") == "participant"

        async def stored() -> bool:
            people = (await summary(browser_server, room_id, host_token))["participants"]
            return sum(p["readings"] for p in people if p["id"] == ann_id) >= 8

        await until(stored, what="Ann's readings stored")
        assert (await host.call("end_class", {"v": 1}))["ok"]
        ended = await summary(browser_server, room_id, host_token)
        ann = next(p for p in ended["participants"] if p["id"] == ann_id)
        assert ann["hr_max"] == 188  # the account's zones were the class's

        await page.goto(f"{browser_server.url}/me")
        await page.wait_for_function("document.body.dataset.state === 'ready'")
        row = page.locator(f'[data-testid=me-class][data-room-id="{room_id}"]')
        assert "Thursday intervals" in (await row.locator("th").text_content() or "")
        peak = await row.get_by_test_id("me-peak").text_content()
        assert peak == str(ann["summary"]["peak_bpm"])
        assert await page.get_by_test_id("trend-chart").is_visible()
        await screenshot(tab, "me-history")
        await row.scroll_into_view_if_needed()
        await screenshot(tab, "me-history-classes")
        # At phone width the page keeps to the screen (the table scrolls inside its card).
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        # Its summary link opens the class summary with Ann's own figures.
        await row.get_by_test_id("me-summary-link").click()
        person = page.locator(f'[data-testid=person][data-participant-id="{ann_id}"]')
        await person.wait_for()
        assert await person.get_by_test_id("peak-bpm").text_content() == (
            f"{ann['summary']['peak_bpm']} bpm"
        )
        assert await page.locator("[data-testid=person]").count() == 1
        assert not tab.errors, tab.diagnostics()
    except BaseException:
        print(tab.diagnostics())
        print(browser_server.log()[-4000:])
        raise
    finally:
        await host.close()
        await tab.close()


async def test_a_class_joined_without_an_account_is_kept_from_its_summary(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Sunday stretch")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    tab = await open_tab(browser, "participant Bob", viewport=(390, 844))
    host = await Client(browser_server.url).connect()
    page = tab.page
    try:
        assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
        bob_id = await join(tab, str(room["join_link"]), "Bob")
        assert (await host.call("end_class", {"v": 1}))["ok"]
        action = page.get_by_test_id("notice-action")
        await action.wait_for(state="visible", timeout=10_000)
        await action.click()
        await page.wait_for_function("document.body.dataset.state === 'loaded'")
        await page.locator(f'[data-testid=person][data-participant-id="{bob_id}"]').wait_for()
        # Not logged in: the summary offers to keep the class in a new account.
        await page.get_by_test_id("claim-signup").click()
        await page.get_by_test_id("email-input").fill("bob@example.org")
        await page.get_by_test_id("password-input").fill(PASSWORD)
        await page.get_by_test_id("account-button").click()
        await page.get_by_test_id("account-done").wait_for()
        await page.locator("#account-next").click()
        await page.wait_for_function("document.body.dataset.state === 'ready'")
        row = page.locator(f'[data-testid=me-class][data-room-id="{room_id}"]')
        assert "Sunday stretch" in (await row.locator("th").text_content() or "")
        assert await row.get_by_test_id("me-peak").text_content() == "\u2013"  # no strap: a dash
        href = await row.get_by_test_id("me-summary-link").get_attribute("href") or ""
        assert href.startswith(f"/r/{room_id}/summary#t="), href
        assert not tab.errors, tab.diagnostics()
    except BaseException:
        print(tab.diagnostics())
        print(browser_server.log()[-4000:])
        raise
    finally:
        await host.close()
        await tab.close()
