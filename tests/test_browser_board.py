"""The class board in a real browser: the studio TV's page and the instructor's stage.

A real ``pulseroom serve`` and headless Chromium at 1920x1080 (tests/browser_fixtures.py).
Twelve participants: ten Socket.IO clients, camera off, each with a strap simulated by
the heart-rate bridge (pulseroom/hr_link.py, with their device link), and two bots
sending synthetic video; then a class of thirty with straps, on two pages ordered by
effort points. Screenshots go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from client.protocol import parse_link
from pulseroom.bot import Bot
from pulseroom.hr_link import HeartRateLink
from telemetry.hrm import HeartRateMeasurement
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

pytestmark = [*BROWSER_MODULE, pytest.mark.timeout(180)]

SCREEN = (1920, 1080)
# Default profile (age 35, HRmax 183.5): zones 1 to 5, twice over.
BPMS = [100, 115, 125, 140, 160, 170, 105, 118, 135, 150]

# Each shown participant tile of the board: its box, zone, bpm text and font size.
TILES_JS = """() => [...document.querySelectorAll('.grid.board .strip [data-testid=tile]')]
  .filter((t) => !t.hidden).map((t) => {
    const box = t.getBoundingClientRect();
    const bpm = t.querySelector('[data-testid=hr-bpm]');
    return {
      id: t.dataset.participantId, w: box.width, h: box.height, zone: t.dataset.zone || '',
      border: getComputedStyle(t).borderTopColor, background: getComputedStyle(t).backgroundColor,
      bpm: bpm ? bpm.textContent : null,
      bpmPx: bpm ? parseFloat(getComputedStyle(bpm).fontSize) : 0,
      video: t.dataset.video,
    };
  })"""


# The board's tiles in the order shown, once that order is a leaderboard: effort points
# (from the tiles' text; -1 without) never rising down the board, the first with place 1.
LEADERBOARD_JS = """() => {
  const tiles = [...document.querySelectorAll('.grid.board .strip [data-testid=tile]')]
    .sort((a, b) => Number(a.style.order) - Number(b.style.order))
    .map((t) => ({
      rank: t.dataset.rank || '',
      // No points (the two video bots wear no strap): -1, last.
      points: parseFloat(t.querySelector('[data-testid=hr-points]')?.textContent || '-1'),
    }));
  if (tiles.length !== 12 || tiles.filter((t) => t.points >= 0).length !== 10) return false;
  if (!(tiles[0].points > 0) || tiles[0].rank !== '1') return false;
  const sorted = tiles.every((t, i) => i === 0 || t.points <= tiles[i - 1].points);
  return sorted && new Set(tiles.map((t) => t.points)).size > 2 ? tiles : false;
}"""


async def _participants(
    server: RunningServer, room: dict[str, Any], clients: list[Client]
) -> tuple[list[str], list[asyncio.Task[None]], list[HeartRateLink]]:
    """Participants with straps: their ids, the bridges' tasks and links."""
    ids, tasks, links = [], [], []
    room_id = str(room["room"]["id"])
    for index, client in enumerate(clients):
        ack = await client.join(str(room["join_link"]), f"Rider {index + 1:02d}")
        assert ack["ok"], ack
        await client.call("media_state", {"v": 1, "audio": False, "video": False})
        ids.append(ack["you"]["id"])
        link = HeartRateLink(f"{server.url}/r/{room_id}#t={ack['device_token']}", name="strap")
        links.append(link)
        tasks.append(asyncio.create_task(link.run()))
    for link in links:
        await link.wait_open(30)
    return ids, tasks, links


async def test_the_board_shows_twelve_tinted_readable_tiles(
    browser: Any, browser_server: RunningServer
) -> None:
    room: dict[str, Any] = browser_server.create_room("Board")
    base, room_id, _ = parse_link(str(room["host_link"]))
    clients = [await Client(browser_server.url).connect() for _ in BPMS]
    bots: list[Bot] = []
    tasks: list[asyncio.Task[None]] = []
    host = await open_tab(browser, "host", viewport=SCREEN)
    tv = await open_tab(browser, "board", viewport=SCREEN)
    try:
        await join(host, str(room["host_link"]), "Coach")
        ids, tasks, links = await _participants(browser_server, room, clients)
        for name in ("Video Vic", "Video Val"):
            bot = Bot(
                base_url=base, token=str(room["join_link"]).split("#t=")[1], name=name,
                video="synthetic", room=room_id,
            )  # fmt: skip
            await bot.start()
            bots.append(bot)

        async def beat() -> None:  # 1 Hz, as a strap does: no tile goes stale meanwhile
            while True:
                for link, bpm in zip(links, BPMS, strict=True):
                    link.send(HeartRateMeasurement(bpm=bpm, contact=True, rr=()))
                await asyncio.sleep(1.0)

        tasks.append(asyncio.create_task(beat()))

        await tv.page.goto(str(room["board_link"]))
        await tv.page.wait_for_function("document.body.dataset.state === 'joined'")
        assert "#t=" not in tv.page.url
        await tv.page.wait_for_function(
            "window.pulseroom.board.on && window.pulseroom.board.count === 12"
        )
        await tv.page.wait_for_function(
            f"document.querySelectorAll('.grid.board [data-testid=hr-bpm]').length === {len(BPMS)}"
        )
        await asyncio.sleep(0.5)  # the layout's animation frame and the fonts
        tiles = await tv.page.evaluate(TILES_JS)
        layout = await tv.page.evaluate("window.pulseroom.board")
        assert (layout["cols"], layout["rows"], layout["pages"]) == (4, 3, 1), layout
        assert len(tiles) == 12
        by_id = {t["id"]: t for t in tiles}
        for pid, bpm in zip(ids, BPMS, strict=True):
            tile = by_id[pid]
            assert tile["bpm"] == str(bpm)
            assert tile["zone"] != ""  # tinted
            # Readable from three metres: a 1080p TV of ~1.2 m width shows ~0.6 mm per
            # pixel; 60 px digits are ~37 mm tall, well above the ~15 mm needed at 3 m.
            assert tile["bpmPx"] >= 60, tile
            assert tile["video"] == "false"
        # Different zones, different colours.
        colours = {by_id[pid]["border"] for pid in ids}
        assert len(colours) >= 4, colours
        # The tiles fill the stage: 12 tiles cover most of the 1920x1080 screen.
        covered = sum(t["w"] * t["h"] for t in tiles)
        assert covered > 0.75 * SCREEN[0] * SCREEN[1], covered
        # Nothing of the instructor's page: no controls, side panel or own camera.
        for testid in ("mic-button", "chat-form", "leave-button", "host-panel"):
            assert not await tv.page.get_by_test_id(testid).is_visible(), testid
        # The instructor's tile sits small in a corner.
        corner = await tv.page.locator(".grid.board .spotlight [data-testid=tile]").bounding_box()
        assert corner is not None and corner["width"] <= 330 and corner["x"] > SCREEN[0] / 2
        # The board is silent, and tiles report the size they are drawn at.
        assert await tv.page.evaluate(
            "[...document.querySelectorAll('video')].every((v) => v.muted)"
        )
        await screenshot(tv, "board-tv-12")

        # A live leaderboard: the board orders the tiles by effort points, highest first,
        # each with its place, and re-sorts as points grow.
        ranked = await tv.page.wait_for_function(LEADERBOARD_JS, timeout=20_000)
        board_order = await ranked.json_value()
        assert board_order[0]["rank"] == "1" and board_order[0]["points"] > 0, board_order
        points = [t["points"] for t in board_order]
        assert points == sorted(points, reverse=True), board_order
        await screenshot(tv, "board-tv-leaderboard")

        # The instructor's own page: the same grid fills the stage beside the side panel.
        await host.page.wait_for_function(
            "window.pulseroom.board.on && window.pulseroom.board.count === 12"
        )
        await host.page.wait_for_function(
            f"document.querySelectorAll('.grid.board [data-testid=hr-bpm]').length === {len(BPMS)}"
        )
        host_layout = await host.page.evaluate("window.pulseroom.board")
        assert host_layout["cols"] * host_layout["rows"] >= 12
        stage = await host.page.locator("#grid").bounding_box()
        host_tiles = await host.page.evaluate(TILES_JS)
        assert stage is not None and len(host_tiles) == 12
        assert sum(t["w"] * t["h"] for t in host_tiles) > 0.7 * stage["width"] * stage["height"]
        self_tile = host.page.locator(".grid.board .spotlight [data-testid=tile].self")
        assert (await self_tile.bounding_box() or {"width": 999})["width"] <= 330
        await host.page.get_by_test_id("sort-select").select_option("zone")
        await host.page.wait_for_function(
            """() => {
              const t = [...document.querySelectorAll('.grid.board .strip [data-testid=tile]')]
                .sort((a, b) => Number(a.style.order) - Number(b.style.order));
              return t.length === 12 && t[0].dataset.zone === '5';
            }"""
        )
        await screenshot(host, "board-instructor-12")
        for tab in (host, tv):
            assert not tab.errors, tab.diagnostics()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bot in bots:
            await bot.stop()
        for client in clients:
            await client.close()
        await host.close()
        await tv.close()


# Every `visibility` the page sends, recorded (the page's own socket, wrapped).
SPY_JS = """() => {
  const socket = window.pulseroom.socket;
  window.sentVisibility = [];
  const emit = socket.emit.bind(socket);
  socket.emit = (name, payload, ...rest) => {
    if (name === 'visibility') window.sentVisibility.push(payload);
    return emit(name, payload, ...rest);
  };
}"""


# Thirty riders: five in each zone from 1 to 5 and five more in zone 3 (max HR 190 by
# default, zones at 50/60/70/80/90 %).
BIG_CLASS_BPMS = [100, 118, 135, 160, 175, 138] * 5


async def test_a_class_of_30_has_pages_led_by_points_and_asks_only_for_shown_videos(
    browser: Any, browser_server: RunningServer
) -> None:
    room: dict[str, Any] = browser_server.create_room("Big class")
    clients = [await Client(browser_server.url).connect() for _ in BIG_CLASS_BPMS]
    tv = await open_tab(browser, "board", viewport=SCREEN)
    tasks: list[asyncio.Task[None]] = []
    try:
        ids, tasks, links = await _participants(browser_server, room, clients)

        async def beat() -> None:  # 1 Hz, as a strap does
            while True:
                for link, bpm in zip(links, BIG_CLASS_BPMS, strict=True):
                    link.send(HeartRateMeasurement(bpm=bpm, contact=True, rr=()))
                await asyncio.sleep(1.0)

        tasks.append(asyncio.create_task(beat()))
        await tv.page.goto(str(room["board_link"]))
        await tv.page.wait_for_function("window.pulseroom.board.count === 30")
        await tv.page.evaluate(SPY_JS)
        layout = await tv.page.evaluate("window.pulseroom.board")
        assert (layout["cols"], layout["rows"], layout["pages"], layout["page"]) == (5, 5, 2, 0)
        assert len(await tv.page.evaluate(TILES_JS)) == 25
        pager = tv.page.get_by_test_id("board-pager")
        assert await tv.page.get_by_test_id("board-page").inner_text() == "1 / 2"

        # The leaderboard decides the pages: once points tell the zones apart, the five
        # riders in zone 1 (the fewest points) are the second page, in place 26 to 30.
        zone1 = sorted(pid for pid, bpm in zip(ids, BIG_CLASS_BPMS, strict=True) if bpm == 100)
        await tv.page.wait_for_function(
            """(want) => {
                const tiles = document.querySelectorAll('.grid.board .strip [data-testid=tile]');
                const ranks = [...tiles]
                  .filter((t) => want.includes(t.dataset.participantId))
                  .map((t) => Number(t.dataset.rank));
                return ranks.length === 5 && ranks.every((r) => r > 25);
            }""",
            arg=zone1,
            timeout=30_000,
        )
        first_page = await tv.page.evaluate(TILES_JS)
        assert not {t["id"] for t in first_page} & set(zone1), first_page
        await screenshot(tv, "board-tv-30-page1")
        assert await pager.is_visible()

        await tv.page.get_by_test_id("board-next").click()
        await tv.page.wait_for_function("window.pulseroom.board.page === 1")
        shown = await tv.page.evaluate(TILES_JS)
        assert sorted(t["id"] for t in shown) == zone1
        assert all(t["bpm"] == "100" and t["bpmPx"] >= 60 for t in shown), shown
        # The page asks for the five videos it shows, at the height they are drawn at
        # (the others went out of view: the server sends them no video).
        await tv.page.wait_for_function(
            """(want) => (window.sentVisibility || []).some((v) =>
                 JSON.stringify([...v.visible].sort()) === JSON.stringify(want)
                 && want.every((id) => v.sizes[id] > 300))""",
            arg=zone1,
            timeout=10_000,
        )
        await screenshot(tv, "board-tv-30-page2")
        # Someone leaves: 29, still two pages, and the board stays on page 2.
        await clients[0].call("leave", {"v": 1})
        await tv.page.wait_for_function("window.pulseroom.board.count === 29")
        layout = await tv.page.evaluate("window.pulseroom.board")
        assert (layout["pages"], layout["page"]) == (2, 1)
        assert not tv.errors, tv.diagnostics()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.close()
        await tv.close()
