"""The instructor's per-tile buttons behind one menu per tile (issue 18, item 9), by
keyboard in real headless Chromium through a real ``pulseroom serve``.

Six participants (Socket.IO clients: tiles need no media) join; from the skip link the
keyboard reaches the toolbar in one stop per tile plus a few; a tile's "⋯ Actions for
NAME" button opens its menu with Enter or the arrows, the arrows move in it, Escape
closes it with focus back on the button; Shout-out and Remove work by keyboard alone.
"""

from __future__ import annotations

from typing import Any

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

pytestmark = BROWSER_MODULE

PARTICIPANTS = 6

# What has focus: the test id (or id) of the element, and the participant of its tile.
FOCUS_JS = """() => {
  const el = document.activeElement;
  const tile = el && el.closest('[data-testid=tile]');
  return { id: (el && (el.dataset.testid || el.id || el.tagName)) || null,
           participant: tile ? tile.dataset.participantId : null,
           expanded: el ? el.getAttribute('aria-expanded') : null };
}"""


async def test_a_class_of_six_costs_one_tab_stop_a_tile(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Keyboard class of six")
    clients: list[Client] = []
    host = await open_tab(browser, "keyboard instructor")
    try:
        for i in range(PARTICIPANTS):
            client = await Client(browser_server.url).connect()
            clients.append(client)
            assert (await client.join(str(room["join_link"]), f"Rider {i + 1}"))["ok"]
        await join(host, str(room["host_link"]), "Coach")
        page = host.page
        buttons = page.get_by_test_id("tile-menu-button")
        await page.wait_for_function(
            f"document.querySelectorAll('[data-testid=tile-menu-button]').length === {PARTICIPANTS}"
        )
        first = buttons.first
        assert await first.get_attribute("aria-haspopup") == "menu"
        assert await first.get_attribute("aria-expanded") == "false"
        labels = sorted([await b.get_attribute("aria-label") or "" for b in await buttons.all()])
        assert labels == [f"Actions for Rider {i + 1}" for i in range(PARTICIPANTS)], labels
        # No other button on a tile: the menu's items are out of the Tab order.
        assert await page.locator("[data-testid=tile] button:not([tabindex='-1'])").count() == (
            PARTICIPANTS
        )

        # From the skip link, Tab by Tab to the toolbar's first button.
        await page.focus("[data-testid=skip-link]")
        stops: list[dict[str, Any]] = []
        for _ in range(40):
            await page.keyboard.press("Tab")
            stops.append(await page.evaluate(FOCUS_JS))
            if stops[-1]["id"] == "mic-button":
                break
        print("Tab stops to the toolbar:", [s["id"] for s in stops])
        assert stops[-1]["id"] == "mic-button", stops
        tile_stops = [s for s in stops if s["participant"]]
        assert [s["id"] for s in tile_stops] == ["tile-menu-button"] * PARTICIPANTS, stops
        assert len(stops) <= PARTICIPANTS + 4, stops

        # A tile's menu by keyboard: Enter opens it on its first item, the arrows move.
        target = tile_stops[0]["participant"]
        tile = page.locator(TILE.format(target))
        name = await tile.locator(".name").text_content()
        button = tile.get_by_test_id("tile-menu-button")
        await button.focus()
        await page.keyboard.press("Enter")
        menu = tile.get_by_test_id("tile-menu")
        await menu.wait_for(state="visible")
        assert await menu.get_attribute("role") == "menu"
        assert await button.get_attribute("aria-expanded") == "true"
        assert (await page.evaluate(FOCUS_JS))["id"] == "tile-spotlight"
        await page.keyboard.press("ArrowDown")
        assert (await page.evaluate(FOCUS_JS))["id"] == "tile-shout-out"
        await page.keyboard.press("End")
        assert (await page.evaluate(FOCUS_JS))["id"] == "tile-remove"
        await page.keyboard.press("ArrowDown")  # wraps round
        assert (await page.evaluate(FOCUS_JS))["id"] == "tile-spotlight"
        await page.keyboard.press("ArrowDown")
        # The whole menu is drawn, inside the window.
        box = await menu.bounding_box()
        assert box and box["height"] >= 4 * 30 and box["y"] + box["height"] <= 800, box
        for item in ("tile-spotlight", "tile-shout-out", "tile-mute", "tile-remove"):
            assert await tile.get_by_test_id(item).is_visible(), item
        await screenshot(host, "tile-menu-open")
        # Escape closes it; focus is back on its button.
        await page.keyboard.press("Escape")
        await menu.wait_for(state="hidden")
        focus = await page.evaluate(FOCUS_JS)
        assert focus == {"id": "tile-menu-button", "participant": target, "expanded": "false"}

        # Shout-out by keyboard: ↓ opens on the first item, ↓ Enter sends it.
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("ArrowDown")
        assert (await page.evaluate(FOCUS_JS))["id"] == "tile-shout-out"
        await page.keyboard.press("Enter")
        await page.get_by_test_id("toast").filter(has_text=f"Shout-out sent to {name}").wait_for()
        assert await menu.is_hidden()
        assert (await page.evaluate(FOCUS_JS))["id"] == "tile-menu-button"
        shouts = [
            s["shout_out"]["participant_id"] for c in clients for s in c.received["shout_out"]
        ]
        assert target in shouts, shouts

        # Remove by keyboard: ↑ opens on the last item; the dialog confirms.
        await page.keyboard.press("ArrowUp")
        assert (await page.evaluate(FOCUS_JS))["id"] == "tile-remove"
        await page.keyboard.press("Enter")
        dialog = page.get_by_test_id("remove-dialog")
        await dialog.wait_for(state="visible")
        await page.get_by_test_id("remove-confirm").focus()
        await page.keyboard.press("Enter")
        await tile.wait_for(state="detached")
        assert await buttons.count() == PARTICIPANTS - 1

        # At a phone's width the menu stays on the screen.
        await page.set_viewport_size({"width": 390, "height": 844})
        await buttons.last.scroll_into_view_if_needed()
        await buttons.last.focus()
        await page.keyboard.press("Enter")
        phone_menu = page.locator("[data-testid=tile-menu]:popover-open")
        await phone_menu.wait_for(state="visible")
        box = await phone_menu.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert box["y"] >= 0 and box["y"] + box["height"] <= 844, box
        await screenshot(host, "tile-menu-phone")
        await page.keyboard.press("Escape")
        await phone_menu.wait_for(state="detached")
        assert not host.errors, host.diagnostics()
    finally:
        await host.close()
        for client in clients:
            await client.close()
