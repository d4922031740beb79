"""Simulcast on links limited the way real ones are: the real browser client, the real
server, and a participant whose downlink is a 400 kbit/s ``tbf`` (a network namespace).

The instructor publishes a detailed 720p clip in three layers. A participant on an
unlimited link must keep the instructor in 540p or better at the bitrate it had before
a participant on the slow line joined (today's SFU without layers would drag it down
to the slow line's rate); the slow participant decodes the lowest layer smoothly, moves
up a layer when its limit is lifted and down again when it comes back.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tests.browser_fixtures import (
    ARTIFACTS,
    FIXED_ENCODER_JS,
    JOIN_TIMEOUT_MS,
    NEEDS_CHROMIUM,
    Tab,
    devices_js,
    join,
    open_class_page,
    open_tab,
    tile_action,
)
from tests.browser_netns import (  # noqa: F401 (fixtures)
    VideoRate,
    launch,
    link_via,
    netns_server_fixture,
    open_server,
    origin_for,
    playwright_fixture,
    sent_rates,
    video_rates,
    wait_for_video,
)
from tests.conftest import RunningServer
from tests.netns import netns_host, netns_unavailable
from tests.simulcast_pages import wait_for
from tests.y4m import cached_clip

pytestmark = [
    pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or ""),
    NEEDS_CHROMIUM,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.alone,
]

LIMIT_KBIT = 400
DATA_SAVER = "localStorage.setItem('pulseroom.maxHeight', '180')"
MEASURE_S = 5.0
# The pages that publish video do so without a microphone, the others with no device at
# all: the video under test is the only load (a fake microphone per page kept Chromium's
# audio service at a third of a core).
CAMERA_ONLY = f"{FIXED_ENCODER_JS};\n{devices_js(camera=True, microphone=False)}"
NO_DEVICES = devices_js(camera=False, microphone=False)


async def video_of(tab: Tab, publisher: str, seconds: float = MEASURE_S) -> VideoRate:
    """What ``tab`` received of ``publisher``'s video over ``seconds``."""
    rates = [r for r in (await video_rates(tab, seconds)).values() if r.publisher == publisher]
    assert len(rates) == 1, rates
    return rates[0]


async def received_and_sent(
    viewer: Tab, publisher_tab: Tab, publisher: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """What ``viewer`` received of ``publisher``'s video and what each of its layers sent,
    over the same MEASURE_S."""
    received, sent = await asyncio.gather(
        video_of(viewer, publisher), sent_rates(publisher_tab, MEASURE_S)
    )
    return asdict(received), sent


async def until(tab: Tab, publisher: str, test: Any, timeout: float) -> list[VideoRate]:
    """Sample ``publisher``'s video on ``tab`` each second until ``test(rate)`` holds;
    returns the samples (the last one passed, unless the time ran out)."""
    samples: list[VideoRate] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples.append(await video_of(tab, publisher, 1.0))
        if test(samples[-1]):
            break
    return samples


async def join_limited(tab: Tab, link: str, name: str, limit: Any) -> None:
    """Load the page at full speed (the client is ~300 KB), then limit, then join."""
    # Loaded means ready to join: the form shows once the page's own requests are done,
    # which then need not cross the limited link.
    await open_class_page(tab, link)
    limit()
    await tab.page.get_by_test_id("name-input").fill(name)
    await tab.page.get_by_test_id("join-button").click()
    await tab.page.wait_for_function(
        "document.body.dataset.state === 'joined'", timeout=JOIN_TIMEOUT_MS
    )


@pytest.mark.timeout(300)
async def test_a_slow_participant_no_longer_drags_the_class_down(
    netns_server: RunningServer, playwright: Any, tmp_path: Path
) -> None:
    room = netns_server.create_room("Layers")
    studio = await launch(playwright, clip=cached_clip())
    record: dict[str, Any] = {}
    try:
        coach = await open_tab(studio, "instructor", init_script=CAMERA_ONLY)
        coach_id = await join(coach, str(room["host_link"]), "Coach Ana")
        # The participants join without devices: the two cores encode and decode the
        # instructor's layers, the video under test, and not two more cameras besides.
        amy = await open_tab(studio, "participant on a good link", init_script=NO_DEVICES)
        await join(amy, str(room["join_link"]), "Amy")
        await wait_for_video(amy, coach_id)
        # A good link climbs to the 720p layer (after probes prove the link carries it)
        # and stays there: three seconds in a row at 540p or better, no padding.
        steady: list[bool] = []

        def settled(rate: VideoRate) -> bool:
            steady.append(rate.frame_height >= 540 and rate.resent_kbps < 50)
            return steady[-3:] == [True] * 3

        climb = await until(amy, coach_id, settled, 60)
        record["amy_climb"] = [asdict(r) for r in climb]
        assert settled(climb[-1]), record
        before, sends_before = await received_and_sent(amy, coach, coach_id)
        record["amy_before"], record["instructor_sends"] = before, sends_before
        with netns_host() as host:
            slow = await launch(
                playwright, host=host, scripts=tmp_path,
                secure_origins=[origin_for(netns_server, host)],
            )  # fmt: skip
            try:
                ben = await open_tab(slow, "participant on a slow line", init_script=NO_DEVICES)
                link = link_via(str(room["join_link"]), netns_server, host)
                await join_limited(ben, link, "Ben", lambda: host.limit(LIMIT_KBIT))
                await wait_for_video(ben, coach_id, timeout=30)
                # The slow line settles on its layer: two seconds in a row on it, within
                # the limit and without a freeze (then measured as before).
                low: list[bool] = []

                def on_its_layer(rate: VideoRate) -> bool:
                    fits = rate.kbps < LIMIT_KBIT and rate.freezes == 0
                    low.append(rate.frame_height <= 180 and fits)
                    return low[-2:] == [True, True]

                record["ben_settling"] = [
                    asdict(r) for r in await until(ben, coach_id, on_its_layer, 15)
                ]
                limited, sends_limited = await received_and_sent(ben, coach, coach_id)
                record["ben_limited"], record["instructor_sends_limited"] = limited, sends_limited
                # A third browser starting on these two cores can make Amy's estimate dip
                # (CPU, not her link): let her settle as before, then measure.
                steady.clear()
                record["amy_resettle"] = [
                    asdict(r) for r in await until(amy, coach_id, settled, 30)
                ]
                after, sends_after = await received_and_sent(amy, coach, coach_id)
                record["amy_after"], record["instructor_sends_after"] = after, sends_after
                # Lifted: the slow participant goes up a layer, without freezing.
                host.unlimit()
                up = await until(ben, coach_id, lambda r: r.frame_height >= 360, 60)
                record["ben_unlimited"] = [asdict(r) for r in up]
                # Limited again: back down to the lowest layer.
                host.limit(LIMIT_KBIT)
                down = await until(ben, coach_id, lambda r: r.frame_height <= 180, 30)
                record["ben_limited_again"] = [asdict(r) for r in down]
                record["ben_settled_again"] = asdict(await video_of(ben, coach_id))
                record["limit_dropped_packets"] = host.limit_dropped()
                record["server"] = {
                    k: v for k, v in netns_server.stats().items()
                    if k in ("layer_switches", "shed_packets", "probe_packets")
                }  # fmt: skip
            finally:
                await slow.close()
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "simulcast-links.json").write_text(json.dumps(record, indent=1) + "\n")
        await studio.close()
    print(json.dumps({k: v for k, v in record.items() if not isinstance(v, list)}, indent=1))
    # The slow line: the lowest layer at 15 fps or more, within its link. (When the two
    # cores leave the instructor's encoder short, it sends that layer at fewer frames a
    # second itself: then what it sends, all but 10 %, is what the SFU must deliver.)
    floor = min(15.0, 0.9 * sends_limited["q"]["fps"])
    assert limited["frame_height"] <= 180 and limited["fps"] >= floor, (limited, sends_limited)
    assert limited["kbps"] < LIMIT_KBIT, limited
    # The good link is not dragged down: 540p or better before and after; the SFU lets
    # the instructor's top layer keep ≥ 90 % of its target (no lowest-of-all estimate
    # reaches the encoder), and forwards ≥ 90 % of what that layer sends meanwhile.
    # (What the encoder sends also follows the two cores' load: a third browser makes
    # it drop frames. So the viewer's rate is held to the sender's, measured together.)
    assert before["frame_height"] >= 540 and after["frame_height"] >= 540, (before, after)
    top_before, top_after = sends_before["f"], sends_after["f"]
    assert top_after["target_kbps"] >= 0.9 * top_before["target_kbps"], (top_before, top_after)
    assert after["kbps"] >= 0.9 * top_after["kbps"], (after, top_after)
    assert before["kbps"] >= 0.9 * top_before["kbps"], (before, top_before)
    # Up a layer once the limit is lifted, with no freeze on the way.
    assert up[-1].frame_height >= 360, record["ben_unlimited"]
    # From the probe's start (padding arrives as retransmissions) to the switch: the
    # seconds before it, the SFU sends as it did while limited (a CI run here froze once
    # there, at 67 kbit/s with no probe or switch: the two cores, not the SFU).
    probing = next((i for i, r in enumerate(up) if r.resent_kbps > 0), len(up) - 1)
    assert sum(r.freezes for r in up[probing:]) == 0, record["ben_unlimited"]
    # And down again when it returns, within a few seconds. The link falls to a quarter
    # at once (while padding may be probing for the next layer), so what is in flight
    # then is lost: short freezes until the lower layer's keyframe, about a second.
    assert down[-1].frame_height <= 180, record["ben_limited_again"]
    assert sum(r.freeze_s for r in down) < 1.5, record["ben_limited_again"]


@pytest.mark.timeout(180)
async def test_the_instructors_gallery_takes_the_thumbnail_layers(
    netns_server: RunningServer, playwright: Any
) -> None:
    """Participants publish two layers; the instructor shows them as tiles, and gets the
    layer that fits the tile (the thumbnail), not the full one; a participant enlarged
    (the instructor's own window grown) gets the bigger layer."""
    room = netns_server.create_room("Gallery")
    studio = await launch(playwright, clip=cached_clip())
    try:
        # A small window: the class board fills the stage with the three tiles, and at
        # this size they are thumbnails (a bigger window draws them larger, and then the
        # bigger layer is the right one).
        coach = await open_tab(studio, "instructor", viewport=(900, 500), init_script=CAMERA_ONLY)
        await join(coach, str(room["host_link"]), "Coach Ana")
        # The instructor's camera off (black at a frame a second): the test is about what
        # the instructor receives, and a 720p three-layer encoder beside three publishing
        # and four decoding pages left the two cores too short (a CI run's receiver froze
        # once while padding probed for Amy's bigger layer, and two probes failed).
        await coach.page.get_by_test_id("cam-button").click()
        ids = []
        for name in ("Amy", "Ben", "Cas"):
            # The participants pick 180p ("data saver") for what they receive: four pages
            # decoding 720p would leave the two cores no time to measure anything else.
            tab = await open_tab(studio, name, init_script=f"{DATA_SAVER};\n{CAMERA_ONLY}")
            ids.append(await join(tab, str(room["join_link"]), name))
        for pid in ids:
            await wait_for_video(coach, pid, timeout=30)
        drawn = await coach.page.evaluate(
            """(ids) => ids.map((id) => document.querySelector(
                `[data-testid=tile][data-participant-id="${id}"] video`).clientHeight
                * devicePixelRatio)""",
            ids,
        )
        # The smallest layer at least 90 % of the drawn height (or the largest).
        expected = {
            pid: 180 if shown <= 200 else 360 for pid, shown in zip(ids, drawn, strict=True)
        }

        async def tiles_have_their_layers() -> bool:
            sample = {r.publisher: r.frame_height for r in (await video_rates(coach, 1.0)).values()}
            return all(sample.get(pid) == height for pid, height in expected.items())

        # Until each tile has its layer (a second at a time, at most 12 s), then measured.
        await wait_for(tiles_have_their_layers, 12, interval=0)
        rates = {r.publisher: r for r in (await video_rates(coach, 3.0)).values()}
        heights = {pid: rates[pid].frame_height for pid in ids}
        print("tiles drawn at", drawn, "px; received heights", heights)
        assert max(drawn) <= 200, f"the tiles are no thumbnails at this size: {drawn}"
        assert heights == expected, (drawn, heights)
        # The instructor spotlights Amy: her tile is drawn large, and her bigger layer comes.
        await tile_action(coach, ids[0], "tile-spotlight")
        big = await until(coach, ids[0], lambda r: r.frame_height >= 360, 30)
        print("spotlighted:", [(r.frame_height, round(r.kbps), r.frames, r.freezes) for r in big])
        assert big[-1].frame_height >= 360, [asdict(r) for r in big]
        # The first second is the page moving the tile to the stage (seen once to count
        # as a freeze); from then on, the probe and the layer switch must not freeze.
        assert sum(r.freezes for r in big[1:]) == 0, [asdict(r) for r in big]
    finally:
        await studio.close()
