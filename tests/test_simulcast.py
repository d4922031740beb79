"""Simulcast end to end: real Chromium publishes three layers to the SFU, real Chromium
subscribers each get the layer that fits them, and switch layers without a freeze."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from sfu.server import SfuServer
from tests.browser_fixtures import CHROMIUM, CHROMIUM_ARGS, FIXED_ENCODER_JS, NEEDS_CHROMIUM
from tests.simulcast_pages import new_peer, wait_for
from tests.y4m import cached_clip

pytestmark = [NEEDS_CHROMIUM, pytest.mark.asyncio(loop_scope="module"), pytest.mark.alone]


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="camera_browser")
async def camera_browser_fixture() -> AsyncIterator[Any]:
    """Chromium whose fake camera plays a detailed, moving 720p clip."""
    from playwright.async_api import async_playwright

    clip = cached_clip(1280, 720, 30, 2.0)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={clip}"],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def heights(peer: Any) -> list[int]:
    return [s["height"] for s in await peer.inbound()]


@pytest.mark.timeout(120)
async def test_each_subscriber_gets_the_layer_its_view_calls_for(camera_browser: Any) -> None:
    sfu = SfuServer()
    # wait_for_function needs eval, which the server's policy forbids (browser_fixtures).
    context = await camera_browser.new_context(bypass_csp=True)
    await context.add_init_script(FIXED_ENCODER_JS)
    try:
        coach = await new_peer(sfu, context, "spin", "coach", "host")
        answer = await coach.publish()
        assert "a=simulcast:recv q;h;f" in answer and "a=rid:f recv" in answer
        big = await new_peer(sfu, context, "spin", "big", "participant")
        small = await new_peer(sfu, context, "spin", "small", "participant")
        await sfu.set_visible("spin", "big", ["coach"], {"coach": 720})
        await sfu.set_visible("spin", "small", ["coach"], {"coach": 160}, max_height=360)

        async def all_layers_sent() -> bool:
            sent = await coach.outbound()
            return all(sent.get(rid, {}).get("bytes", 0) > 0 for rid in "qhf")

        assert await wait_for(all_layers_sent, 30), await coach.outbound()

        async def settled() -> bool:
            return await heights(big) == [720] and await heights(small) == [180]

        assert await wait_for(settled, 40), (await big.inbound(), await small.inbound())
        # The small tile now grows and its cap goes: it moves up (after a probe shows the
        # link carries the next layer), and the switch needs no repair.
        (before,) = await small.inbound()
        await sfu.set_visible("spin", "small", ["coach"], {"coach": 360})

        async def grown() -> bool:
            return await heights(small) == [360]

        assert await wait_for(grown, 40), await small.inbound()
        await asyncio.sleep(2)
        (after,) = await small.inbound()
        # A stream that broke at the switch makes the receiver ask for a keyframe (PLI)
        # and drop or freeze pictures until one comes.
        changes = {k: after[k] - before[k] for k in ("plis", "dropped", "freezes", "keyframes")}
        assert changes["plis"] == 0 and changes["dropped"] == 0, changes
        assert after["freezes"] - before["freezes"] <= 1 and after["fps"] >= 5, (before, after)
        counters = sfu.stats_counters
        assert counters.layer_switches >= 3 and counters.probe_packets > 0, counters
    finally:
        await context.close()
        await sfu.close()


@pytest.mark.timeout(90)
async def test_a_layer_nobody_wants_is_switched_off_at_the_publisher(camera_browser: Any) -> None:
    sfu = SfuServer()
    # wait_for_function needs eval, which the server's policy forbids (browser_fixtures).
    context = await camera_browser.new_context(bypass_csp=True)
    await context.add_init_script(FIXED_ENCODER_JS)
    try:
        coach = await new_peer(sfu, context, "yoga", "coach", "host")
        await coach.publish()
        ann = await new_peer(sfu, context, "yoga", "ann", "participant")
        await sfu.set_visible("yoga", "ann", ["coach"], {"coach": 170})

        async def told_off() -> bool:
            return bool(coach.layer_messages) and coach.layer_messages[-1] == ["q"]

        assert await wait_for(told_off, 30), coach.layer_messages

        async def quiet() -> bool:
            sent = await coach.outbound()
            before = {rid: s["bytes"] for rid, s in sent.items()}
            await asyncio.sleep(1.5)
            after = {rid: s["bytes"] for rid, s in (await coach.outbound()).items()}
            return after["f"] == before["f"] and after["h"] == before["h"]

        assert await wait_for(quiet, 10), await coach.outbound()
        # Someone shows the coach large again: the layers come back on.
        await sfu.set_visible("yoga", "ann", ["coach"], {"coach": 720})

        async def back_on() -> bool:
            return coach.layer_messages[-1] == ["q", "h", "f"] and await heights(ann) == [720]

        assert await wait_for(back_on, 45), (coach.layer_messages, await ann.inbound())

        # Ann takes the top layer and nobody the middle one: it goes off too.
        async def middle_off() -> bool:
            return coach.layer_messages[-1] == ["q", "f"]

        assert await wait_for(middle_off, 20), coach.layer_messages
        assert await heights(ann) == [720]
    finally:
        await context.close()
        await sfu.close()


@pytest.mark.timeout(60)
async def test_a_publisher_without_layers_works_as_before(camera_browser: Any) -> None:
    sfu = SfuServer()
    # wait_for_function needs eval, which the server's policy forbids (browser_fixtures).
    context = await camera_browser.new_context(bypass_csp=True)
    await context.add_init_script(FIXED_ENCODER_JS)
    try:
        coach = await new_peer(sfu, context, "pilates", "coach", "host")
        answer = await coach.publish(None)
        assert "a=simulcast" not in answer
        ann = await new_peer(sfu, context, "pilates", "ann", "participant")

        async def decoding() -> bool:
            stats = await ann.inbound()
            return bool(stats) and stats[0]["decoded"] > 30

        assert await wait_for(decoding, 30), await ann.inbound()
        assert not coach.layer_messages
    finally:
        await context.close()
        await sfu.close()
