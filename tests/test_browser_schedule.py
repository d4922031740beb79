"""A scheduled class's lobby in a real browser (issue 16, item 4).

A participant opens the link five minutes early: the join succeeds into the lobby,
which counts down to the start while their own camera shows and nothing is sent; the
instructor's page has the "Start class" button, and one click brings the participant's
page into the class by itself (its publish connection starts). A real ``pulseroom
serve`` subprocess and headless Debian Chromium with its fake camera.
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
    answer = browser_server.instructor().post(
        "/api/rooms",
        json={
            "title": "Sunrise yoga", "description": "Bring a mat.",
            "starts_at": time.time() + 300, "duration_s": 1800,
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
        assert re.fullmatch(r"Starts in 4:[45]\d", lobby["countdown"]), lobby
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
