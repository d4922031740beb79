"""Signal quality, HRV and the learning maximum in a real browser.

A real ``pulseroom serve`` and headless Chromium (tests/browser_fixtures.py). Ann is a
browser page; her strap is simulated by the heart-rate bridge with her device link
(pulseroom/hr_link.py), as tests/test_browser_effort.py does. Half a minute above her
maximum is sent in a moment with device times ahead of the server's clock (allowed up
to 300 s), so the test takes seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import time
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

pytestmark = [*BROWSER_MODULE, pytest.mark.timeout(120)]

# 410 and 430 ms in the wire's 1/1024 s units: every successive difference ~20 ms.
RR = tuple(420 if i % 2 else 440 for i in range(8))


async def test_tiles_show_no_contact_and_own_page_shows_hrv_and_the_raised_max(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Signal")
    host, ann = await open_tab(browser, "host"), await open_tab(browser, "participant Ann")
    link = None
    task = None
    try:
        await join(host, str(room["host_link"]), "Coach")
        ann_id = await join(ann, str(room["join_link"]), "Ann")
        device = await ann.page.get_by_test_id("device-link").input_value()
        link = HeartRateLink(device, name="Ann's strap")
        task = asyncio.create_task(link.run())
        await link.wait_open(20)
        badge = host.page.locator(TILE.format(ann_id) + " [data-testid=hr]")

        for _ in range(3):  # 24 beat intervals: an RMSSD on her own page
            link.send(HeartRateMeasurement(bpm=142, contact=True, rr=RR))
            await asyncio.sleep(0.2)
        await badge.get_by_test_id("hr-bpm").filter(has_text="142").wait_for(timeout=10_000)
        rmssd = ann.page.get_by_test_id("own-hr-rmssd")
        await rmssd.filter(has_text="HRV 20 ms").wait_for(timeout=10_000)

        # 31 s at 190, above the default maximum (184): raised, and she is told.
        start = int(time.time() * 1000) + 5_000
        for i in range(31):
            link.send(HeartRateMeasurement(bpm=190, contact=True), t_ms=start + i * 1000)
        toast = ann.page.get_by_test_id("toast").filter(has_text="raised to 190 bpm")
        await toast.wait_for(timeout=10_000)
        assert await ann.page.get_by_test_id("profile-max-hr").input_value() == "190"
        await badge.get_by_test_id("hr-pct").filter(has_text="100%").wait_for(timeout=10_000)

        # The strap slips: a cue instead of a confident number, on both pages.
        link.send(HeartRateMeasurement(bpm=61, contact=False), t_ms=start + 35_000)
        await badge.get_by_test_id("hr-bpm").filter(has_text="no contact").wait_for(timeout=10_000)
        assert await badge.get_attribute("data-signal") == "no_contact"
        assert "61" not in await badge.inner_text()
        await ann.page.get_by_test_id("own-hr-bpm").filter(has_text="no contact").wait_for()
        await screenshot(host, "signal-host")
        await screenshot(ann, "signal-participant")

        # After class, her summary says which maximum was used, and her HRV.
        await host.page.get_by_test_id("end-button").click()
        await host.page.get_by_test_id("end-confirm").click()
        await ann.page.get_by_test_id("notice-action").click()
        await ann.page.wait_for_function("document.body.dataset.state === 'loaded'")
        card = ann.page.get_by_test_id("person")
        assert await card.get_by_test_id("hr-max").text_content() == "190 bpm"
        assert "Max HR used (learned in class)" in await card.inner_text()
        assert await card.get_by_test_id("rmssd").text_content() == "20 ms"
        await screenshot(ann, "signal-summary")
        for tab in (host, ann):
            assert not tab.errors, tab.diagnostics()
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await host.close()
        await ann.close()
