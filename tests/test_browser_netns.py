"""Real browsers on rate-limited links: the infrastructure the simulcast tests stand on.

A ``tbf`` qdisc on a namespace host's link caps its downlink (``Host.limit``); Chromium
runs inside the namespace (tests/browser_netns.py) and joins a class whose instructor,
in the root namespace, sends a busy clip (tests/y4m.py) as the fake camera. What the
participant receives is read from its page's own WebRTC stats and from the link's
counters. The rates measured go to test-artifacts/browser-netns.json for people to read.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tests.browser_fixtures import ARTIFACTS, NEEDS_CHROMIUM, Tab, join, open_tab
from tests.browser_netns import (  # noqa: F401 (fixtures)
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
from tests.netns import Host, netns_host, netns_unavailable
from tests.y4m import cached_clip, clip, vp8_kbps

NEEDS_NETNS = pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or "")

LIMIT_KBIT = 400
# Above the limit by the slack a 5 s window may show (the bucket's 16 kbit burst, the
# two counters read a few ms apart); far below what the class sends unlimited.
CEILING_KBIT = 450
SETTLE_S = 3.0  # after the link changes, before measuring: the queue drains or fills
MEASURE_S = 5.0

# Counts the UDP payload that reaches ADDRESS:PORT for 2 s from the first datagram.
UDP_SINK = """
import json, socket, sys, time
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind((sys.argv[1], int(sys.argv[2])))
sink.settimeout(2)
print("ready", flush=True)
total, first, last = 0, None, None
try:
    while first is None or last - first < 2:
        total += len(sink.recv(2048))
        last = time.monotonic()
        first = first or last
except socket.timeout:
    pass
print(json.dumps({"bytes": total, "seconds": (last - first) if first else 0}), flush=True)
"""


def udp_received_kbit(host: Host, send_kbit: int, seconds: float = 2.5) -> float:
    """Send UDP at ``send_kbit`` from the root namespace to ``host``; kbit/s it received."""
    port = 40_000 + int(host.address.rsplit(".", 1)[1])
    sink = subprocess.Popen(
        host.command(sys.executable, "-c", UDP_SINK, host.address, str(port)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        payload = b"x" * 1172  # 1200 bytes with the UDP and IP headers
        gap = len(payload) * 8 / (send_kbit * 1000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as source:
            due = time.monotonic()
            end = due + seconds
            while due < end:
                source.sendto(payload, (host.address, port))
                due += gap
                time.sleep(max(0.0, due - time.monotonic()))
        result = json.loads(sink.stdout.readline())
    finally:
        sink.wait(timeout=10)
    return float(result["bytes"] * 8 / max(result["seconds"], 1e-3) / 1000)


def test_clip_needs_real_bitrate(tmp_path: Path) -> None:
    """The fake-camera clip makes VP8 spend like a camera: megabits at 720p, and the
    180p layer still fills its ~150 kbit/s (Chromium's own still picture needs little).
    """
    path = clip(tmp_path / "small.y4m", 320, 180, fps=30, seconds=0.4)  # 12 frames
    frame = 320 * 180 * 3 // 2
    header = b"YUV4MPEG2 W320 H180 F30:1 Ip A1:1 C420jpeg\n"
    assert path.read_bytes()[: len(header)] == header
    assert path.stat().st_size == len(header) + 12 * (len(b"FRAME\n") + frame)
    # At a quality in the middle of WebRTC's range (quantizer 45 of 0-63).
    needs = {size: vp8_kbps(cached_clip(), *size) for size in ((1280, 720), (320, 180))}
    print(
        "VP8 kbit/s at quantizer 45:", {f"{w}x{h}": round(kbps) for (w, h), kbps in needs.items()}
    )
    assert needs[(1280, 720)] >= 1500, needs
    assert needs[(320, 180)] >= 150, needs


@NEEDS_NETNS
def test_limit_caps_a_hosts_downlink() -> None:
    """4 Mbit/s of UDP from the root namespace arrives at 400 kbit/s limited, and whole
    without the limit, before and after; less than the limit passes untouched.
    """
    with netns_host() as host:
        free = udp_received_kbit(host, 4000)
        host.limit(LIMIT_KBIT)
        limited = udp_received_kbit(host, 4000)
        dropped = host.limit_dropped()
        trickle = udp_received_kbit(host, 300)  # below the limit: nothing is lost
        host.unlimit()
        again = udp_received_kbit(host, 4000)
    print(f"UDP kbit/s received: free {free:.0f}, limited {limited:.0f} ({dropped} dropped), "
          f"300 sent under the limit {trickle:.0f}, unlimited again {again:.0f}")  # fmt: skip
    assert free > 3000 and again > 3000, (free, again)
    # Payload only: the qdisc counts the 42 bytes of headers around each 1172 too.
    assert 0.8 * LIMIT_KBIT < limited <= LIMIT_KBIT, limited
    assert dropped > 0
    assert trickle > 250, trickle


async def received(tab: Tab, host: Host, publisher: str, seconds: float) -> dict[str, Any]:
    """``publisher``'s video on ``tab`` over ``seconds``, with the link's downlink meanwhile."""
    down, _ = host.link_bytes()
    start = time.monotonic()
    rates = await video_rates(tab, seconds)
    link_bytes = host.link_bytes()[0] - down
    link_kbps = link_bytes * 8 / (time.monotonic() - start) / 1000
    video = [rate for rate in rates.values() if rate.publisher == publisher]
    assert len(video) == 1, f"{tab.name}: video m-lines of {publisher}: {rates}"
    return {
        **asdict(video[0]),
        "link_down_bytes": link_bytes,
        "link_down_kbps": round(link_kbps, 1),
    }


# Not tests/browser_fixtures.BROWSER_MODULE for the whole module: the other tests need
# neither Chromium nor an event loop.
@NEEDS_NETNS
@NEEDS_CHROMIUM
@pytest.mark.alone
@pytest.mark.asyncio(loop_scope="module")
async def test_participant_on_a_slow_line_gets_the_instructors_video(
    netns_server: RunningServer, playwright: Any, tmp_path: Path
) -> None:
    """A participant whose downlink is capped at 400 kbit/s keeps decoding the instructor's
    720p simulcast clip, and gets no more than the cap; its video crossed the link.
    """
    room = netns_server.create_room("Slow line")
    instructor_browser = await launch(playwright, clip=cached_clip())
    try:
        coach = await open_tab(instructor_browser, "instructor")
        coach_id = await join(coach, str(room["host_link"]), "Coach Ana")
        with netns_host() as host:
            browser = await launch(
                playwright,
                host=host,
                scripts=tmp_path,
                secure_origins=[origin_for(netns_server, host)],
            )
            try:
                ben = await open_tab(browser, "participant on a slow line")
                await join(ben, link_via(str(room["join_link"]), netns_server, host), "Ben")
                await wait_for_video(ben, coach_id)
                record = {"instructor_sends": await sent_rates(coach, 3.0)}
                record["free"] = await received(ben, host, coach_id, 3.0)
                host.limit(LIMIT_KBIT)
                await asyncio.sleep(SETTLE_S)
                record["limited"] = limited = await received(ben, host, coach_id, MEASURE_S)
                record["limit_dropped_packets"] = host.limit_dropped()
                host.unlimit()
                await asyncio.sleep(SETTLE_S)
                # Not asserted: how fast it climbs back is the SFU's layer logic.
                record["unlimited_again"] = await received(ben, host, coach_id, MEASURE_S)
            finally:
                await browser.close()
        print(json.dumps(record, indent=1))
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "browser-netns.json").write_text(json.dumps(record, indent=1) + "\n")
        for phase in ("free", "limited"):
            # The page has no way to the server but the link: its video crossed it (the
            # link's count is over a slightly longer interval, around the page's).
            assert 0 < record[phase]["bytes"] <= record[phase]["link_down_bytes"], record
        assert limited["link_down_kbps"] < CEILING_KBIT, record
        assert limited["kbps"] < CEILING_KBIT, record
        assert limited["frames"] > 0, f"no video decoded while limited: {record}"
    finally:
        await instructor_browser.close()
