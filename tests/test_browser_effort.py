"""Effort points in a real browser: the instructor's tiles and board, a participant's.

A real ``pulseroom serve`` and headless Chromium (tests/browser_fixtures.py). Ann's
strap is simulated by the heart-rate bridge (pulseroom/hr_link.py, with her device
link), as tests/test_heart_rate.py does; the instructor and Ben are browser pages.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pulseroom.hr_link import HeartRateLink
from telemetry.hrm import HeartRateMeasurement
from tests.browser_fixtures import (
    BROWSER_MODULE,
    TILE,
    browser_fixture,  # noqa: F401 (fixture "browser")
    browser_server_fixture,  # noqa: F401 (fixture "browser_server")
    join,
    open_tab,
    screenshot,
)
from tests.conftest import RunningServer
from tests.sio_client import Client

pytestmark = [*BROWSER_MODULE, pytest.mark.timeout(120)]

POINTS_JS = """(id) => {
    const p = document.querySelector(
        `[data-testid=tile][data-participant-id="${id}"] [data-testid=hr-points]`);
    return p && !p.hidden ? Number(p.dataset.points) : null;
}"""


async def test_the_instructor_sees_points_on_tiles_and_sets_the_target(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Effort")
    room_id = str(room["room"]["id"])  # type: ignore[index]
    host, ben = await open_tab(browser, "host"), await open_tab(browser, "participant Ben")
    ann = await Client(browser_server.url).connect()
    link = None
    task = None
    try:
        await join(host, str(room["host_link"]), "Coach")
        ann_ack = await ann.join(str(room["join_link"]), "Ann")
        ann_id = ann_ack["you"]["id"]
        await join(ben, str(room["join_link"]), "Ben")
        device = f"{browser_server.url}/r/{room_id}#t={ann_ack['device_token']}"
        link = HeartRateLink(device, name="Ann's strap")
        task = asyncio.create_task(link.run())
        await link.wait_open(20)
        for _ in range(4):  # 170 bpm: zone 5 by the default profile
            link.send(HeartRateMeasurement(bpm=170, contact=True, rr=()))
            await asyncio.sleep(0.5)

        await host.page.wait_for_function(f"({POINTS_JS})('{ann_id}') > 0", timeout=10_000)
        points = await host.page.evaluate(POINTS_JS, ann_id)
        assert 0 < points <= 0.3  # ~2.5 s at 4 points a minute
        tile_text = await host.page.locator(TILE.format(ann_id)).inner_text()
        assert f"{points:.1f} pts" in tile_text
        await host.page.get_by_test_id("sort-select").select_option("points")
        board = host.page.get_by_test_id("leaderboard-item")
        await board.first.wait_for()
        assert await board.first.get_attribute("data-participant-id") == ann_id

        # Ben's page: the server's board, with Ann on it; his own choice takes him off.
        item = ben.page.locator(f'[data-testid=leaderboard-item][data-participant-id="{ann_id}"]')
        await item.wait_for(timeout=10_000)
        assert await ben.page.locator(TILE.format(ann_id) + " [data-testid=hr]").count() == 0
        await ben.page.get_by_test_id("board-toggle").uncheck()
        await ben.page.get_by_test_id("leaderboard").wait_for(state="hidden")
        assert (
            "not on the leaderboard"
            in await ben.page.get_by_test_id("leaderboard-note").inner_text()
        )

        # The instructor sets a target: everyone's page says it, Ann's client hears it.
        await host.page.get_by_test_id("effort-settings-toggle").click()
        await host.page.get_by_test_id("effort-target-kind").select_option("zone_minutes")
        await host.page.get_by_test_id("effort-target-value").fill("12")
        await host.page.get_by_test_id("effort-save").click()
        target = await ann.wait_for("effort_settings")
        assert target["settings"]["target"] == {"kind": "zone_minutes", "value": 12, "from_zone": 4}
        for tab in (host, ben):
            line = tab.page.get_by_test_id("effort-target")
            await line.filter(has_text="12 min in zones 4\u20135").wait_for()
        await screenshot(host, "effort-host")
        await screenshot(ben, "effort-participant")
        for tab in (host, ben):
            assert not tab.errors, tab.diagnostics()
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await ann.close()
        await host.close()
        await ben.close()
