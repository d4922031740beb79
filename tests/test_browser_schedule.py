"""A scheduled class's lobby in a real browser (issue 16, item 4).

A participant opens the link five minutes early: the join succeeds into the lobby,
which counts down to the start while their own camera shows and nothing is sent; the
instructor's page has the "Start class" button, and one click brings the participant's
page into the class by itself (its publish connection starts). A real ``pulseroom
serve`` subprocess and headless Debian Chromium with its fake camera. The home page's
form schedules a weekly class, listed first.
"""

from __future__ import annotations

import re
import time
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
from tests.instructor import EMAIL as INSTRUCTOR_EMAIL
from tests.instructor import PASSWORD as INSTRUCTOR_PASSWORD

pytestmark = BROWSER_MODULE

LOBBY_JS = """() => ({
    lobby: !document.querySelector('[data-testid=lobby]').hidden,
    countdown: document.querySelector('[data-testid=lobby-countdown]').textContent,
    description: document.querySelector('[data-testid=lobby-description]').textContent,
    start: !document.querySelector('[data-testid=start-class-button]').hidden,
    started: window.pulseroom.started,
    publishing: window.pulseroom.publishPc !== null,
})"""


async def test_a_participant_waits_in_the_lobby_until_the_instructor_starts(
    browser: Any, browser_server: RunningServer
) -> None:
    starts_at = time.time() + 300
    answer = browser_server.instructor().post(
        "/api/rooms",
        json={
            "title": "Sunrise yoga", "description": "Bring a mat.",
            "starts_at": starts_at, "duration_s": 1800,
        },
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    room = answer.json()
    ann = await open_tab(browser, "participant Ann")
    coach = await open_tab(browser, "instructor")
    try:
        await join(ann, room["join_link"], "Ann")
        await ann.page.wait_for_function(
            "document.querySelector('[data-testid=lobby-countdown]').textContent !== ''"
        )
        lobby = await ann.page.evaluate(LOBBY_JS)
        assert lobby["lobby"] and not lobby["start"] and lobby["description"] == "Bring a mat."
        # The countdown says what is left at the moment it was read (a loaded machine
        # may take many seconds to get here, so compare with the clock, not a constant).
        left = starts_at - time.time()
        shown = re.fullmatch(r"Starts in (\d+):(\d\d)", lobby["countdown"])
        assert shown, lobby
        assert abs(int(shown[1]) * 60 + int(shown[2]) - left) <= 3, (lobby, left)
        assert lobby["started"] is False and lobby["publishing"] is False  # nothing is sent
        # Her own camera shows in the lobby: she can set it up while she waits.
        await ann.page.wait_for_function(
            "document.querySelector('[data-testid=tile].self video')?.videoWidth > 0"
        )
        await screenshot(ann, "schedule-lobby")

        await join(coach, room["host_link"], "Coach")
        start = coach.page.get_by_test_id("start-class-button")
        await start.wait_for(state="visible")
        await start.click()
        # Both pages leave the lobby by themselves and start sending.
        for tab in (ann, coach):
            await tab.page.wait_for_function(
                "window.pulseroom.started && window.pulseroom.publishPc !== null"
                " && document.querySelector('[data-testid=lobby]').hidden"
            )
        assert (await ann.page.evaluate(LOBBY_JS))["lobby"] is False
        assert not ann.errors and not coach.errors, ann.diagnostics() + coach.diagnostics()
    finally:
        await ann.close()
        await coach.close()


async def test_the_home_page_schedules_a_weekly_class(
    browser: Any, browser_server: RunningServer
) -> None:
    """The create form's optional fields: a weekly class with a start, a duration and a
    description, listed first among "Your classes" (upcoming before the rest)."""
    browser_server.instructor()  # the test instructor's account exists
    browser_server.create_room("An instant class, made earlier")
    tab = await open_tab(browser, "home")
    page = tab.page
    try:
        await page.goto(browser_server.url + "/login")
        await page.get_by_test_id("email-input").fill(INSTRUCTOR_EMAIL)
        await page.get_by_test_id("password-input").fill(INSTRUCTOR_PASSWORD)
        await page.get_by_test_id("account-button").click()
        await page.get_by_test_id("account-done").wait_for(state="visible")
        await page.goto(browser_server.url + "/")
        await page.get_by_test_id("create-form").wait_for(state="visible")
        await page.get_by_test_id("title-input").fill("Thursday circuits")
        # In the past: the server's refusal is shown, nothing is made.
        await page.get_by_test_id("starts-input").fill("2001-01-04T18:30")
        await page.get_by_test_id("create-button").click()
        error = page.get_by_test_id("create-error")
        await error.wait_for(state="visible")
        assert "past" in (await error.text_content() or "")

        starts = await page.evaluate(
            """() => {
                const d = new Date(Date.now() + 2 * 86400 * 1000);
                d.setSeconds(0, 0);
                const pad = (n) => String(n).padStart(2, '0');
                return {
                    local: `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
                        + `T${pad(d.getHours())}:${pad(d.getMinutes())}`,
                    unix: d.getTime() / 1000,
                };
            }"""
        )
        await page.get_by_test_id("starts-input").fill(starts["local"])
        await page.get_by_test_id("duration-input").fill("45")
        await page.get_by_test_id("weekly-input").check()
        await page.get_by_test_id("description-input").fill("Bring a towel.")
        await page.get_by_test_id("create-button").click()
        await page.get_by_test_id("result").wait_for(state="visible")
        item = page.locator("[data-testid=class-item]", has_text="Thursday circuits")
        await item.wait_for()
        assert await item.get_attribute("data-upcoming") == "true"
        assert "every week" in (await item.text_content() or "")
        classes = browser_server.instructor().client.get("/api/classes").json()["classes"]
        titles = [c["title"] for c in classes]
        assert titles.count("Thursday circuits") == 1  # the refusal made none
        # Upcoming first: before the instant class made earlier, as the page shows them.
        assert titles.index("Thursday circuits") < titles.index("An instant class, made earlier")
        shown = await page.locator("[data-testid=class-item] strong").all_text_contents()
        assert shown == titles
        made = classes[titles.index("Thursday circuits")]
        assert made["weekly"] is True and made["description"] == "Bring a towel."
        assert (made["starts_at"], made["duration_s"]) == (starts["unix"], 2700)
        await screenshot(tab, "schedule-home")
    finally:
        await tab.close()
