"""Co-instructors on the instructor's home page, in a real browser (issue 16, item 5).

The creator opens a class's "Co-instructors", is told why an unknown address cannot be
added, adds an invited instructor; that instructor logs in in a browser of their own and
finds the class marked "you co-instruct", opens it as its instructor, and has no button
to replace its links. A real ``pulseroom serve`` subprocess and headless Chromium.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.browser_fixtures import (
    BROWSER_MODULE,
    browser_fixture,  # noqa: F401 (fixture "browser")
    browser_server_fixture,  # noqa: F401 (fixture "browser_server")
    join,
    open_tab,
    screenshot,
)
from tests.conftest import RunningServer
from tests.instructor import EMAIL as INSTRUCTOR_EMAIL
from tests.instructor import PASSWORD as INSTRUCTOR_PASSWORD

pytestmark = BROWSER_MODULE

BEA = "bea.co@example.com"
BEA_PASSWORD = "bea's own password 42"


async def _log_in(page: Any, url: str, email: str, password: str) -> None:
    await page.goto(url + "/login")
    await page.get_by_test_id("email-input").fill(email)
    await page.get_by_test_id("password-input").fill(password)
    await page.get_by_test_id("account-button").click()
    await page.get_by_test_id("account-done").wait_for(state="visible")
    await page.goto(url + "/")


async def test_the_creator_adds_a_co_instructor_who_then_hosts(
    browser: Any, browser_server: RunningServer
) -> None:
    admin = browser_server.instructor()
    invited = admin.post("/api/admin/users", json={"email": BEA, "role": "instructor"})
    assert invited.status_code == 201, invited.text
    token = invited.json()["link"].split("#token=", 1)[1]
    async with httpx.AsyncClient(base_url=browser_server.url) as client:
        answer = await client.post(
            "/api/auth/password", json={"token": token, "password": BEA_PASSWORD}
        )
    assert answer.status_code == 200, answer.text
    room = browser_server.create_room("Co-taught spin")
    room_id = room["room"]["id"]  # type: ignore[index]

    coach = await open_tab(browser, "creator")
    bea = await open_tab(browser, "co-instructor")
    try:
        await _log_in(coach.page, browser_server.url, INSTRUCTOR_EMAIL, INSTRUCTOR_PASSWORD)
        item = coach.page.locator(f"[data-class-id='{room_id}']")
        panel = item.get_by_test_id("co-instructors")
        await panel.locator("summary").click()
        await panel.get_by_text("Only you host this class.").wait_for()
        email = panel.get_by_test_id("co-email")
        await email.fill("nobody@example.com")
        await panel.get_by_role("button", name="Add co-instructor").click()
        await panel.get_by_text("no account has this address").wait_for()
        await email.fill(BEA)
        await panel.get_by_role("button", name="Add co-instructor").click()
        await panel.get_by_role("button", name=f"Remove {BEA} as co-instructor").wait_for()
        await screenshot(coach, "co-instructors-panel")

        await _log_in(bea.page, browser_server.url, BEA, BEA_PASSWORD)
        mine = bea.page.locator(f"[data-class-id='{room_id}']")
        await mine.get_by_text("you co-instruct").wait_for()
        assert await mine.get_by_test_id("class-replace-link").count() == 0
        assert await mine.get_by_test_id("co-instructors").count() == 0
        host_link = await mine.get_by_test_id("class-open").get_attribute("href")
        assert host_link is not None
        assert host_link.startswith(f"{browser_server.url}/r/{room_id}#t=")
        await join(bea, host_link, "Bea")
        role = await bea.page.evaluate("window.pulseroom.you.role")
        assert role == "host", role
        assert not coach.errors and not bea.errors, coach.diagnostics() + bea.diagnostics()
    finally:
        await coach.close()
        await bea.close()
