"""A tile whose video has no picture yet says so (issue 18, item 9: tiles whose video had
no frames showed solid black instead of the name and a "connecting" cue).

The page's own tile grid (web/tiles.js) in real headless Chromium, fed a real video track
from a canvas: while nothing is drawn the track is live but has no frame, and the tile
shows the initials and "Connecting video…"; the first frame takes both away; a camera
turned off brings the initials back without the cue.
"""

from __future__ import annotations

from typing import Any

from tests.browser_fixtures import (
    BROWSER_MODULE,
    browser_fixture,  # noqa: F401 (fixture "browser")
    browser_server_fixture,  # noqa: F401 (fixture "browser_server")
    open_tab,
)
from tests.conftest import RunningServer

pytestmark = BROWSER_MODULE

SETUP_JS = """async () => {
    const { Grid } = await import('/static/tiles.js');
    const container = document.createElement('div');
    container.innerHTML = '<div class="spotlight"></div><div class="strip"></div>';
    document.body.append(container);
    const grid = new Grid(container);
    const canvas = Object.assign(document.createElement('canvas'), { width: 320, height: 180 });
    const track = canvas.captureStream(0).getVideoTracks()[0];
    const p = { id: 'p1', name: 'Ann Example', role: 'participant', audio: false, video: true };
    grid.upsert(p);
    grid.addTrack('p1', track);
    window.tileTest = { grid, canvas, track, p };
}"""

STATE_JS = """() => {
    const tile = document.querySelector('[data-participant-id="p1"]');
    return {
        connecting: tile.dataset.connecting,
        placeholder: !tile.querySelector('.placeholder').hidden,
        cue: getComputedStyle(tile.querySelector('[data-testid=video-cue]')).display !== 'none',
        width: tile.querySelector('video').videoWidth,
    };
}"""

DRAW_JS = """() => {
    const { canvas, track } = window.tileTest;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#3ddc84';
    ctx.fillRect(0, 0, 320, 180);
    track.requestFrame();
}"""


async def test_a_tile_says_connecting_until_its_first_picture(
    browser: Any, browser_server: RunningServer
) -> None:
    tab = await open_tab(browser, "tiles")
    try:
        await tab.page.goto(browser_server.url + "/")
        await tab.page.evaluate(SETUP_JS)
        state = await tab.page.evaluate(STATE_JS)
        assert state == {"connecting": "true", "placeholder": True, "cue": True, "width": 0}
        await tab.page.evaluate(DRAW_JS)
        await tab.page.wait_for_function(
            "document.querySelector('[data-participant-id=\"p1\"]').dataset.connecting === 'false'"
        )
        state = await tab.page.evaluate(STATE_JS)
        assert state["placeholder"] is False and state["cue"] is False and state["width"] == 320
        # The camera turned off: the initials again, and no "connecting": nothing is coming.
        await tab.page.evaluate(
            "() => { const { grid, p } = window.tileTest; grid.upsert({ ...p, video: false }); }"
        )
        state = await tab.page.evaluate(STATE_JS)
        assert (state["placeholder"], state["cue"], state["connecting"]) == (True, False, "false")
        assert not tab.errors, tab.diagnostics()
    finally:
        await tab.close()
