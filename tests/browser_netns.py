"""Headless Chromium inside a test namespace (tests/netns.py), and what its pages receive.

A browser on a host whose downlink ``Host.limit`` caps is a participant on a slow line:
the server reaches it only over the host's link, so every byte the page receives went
through the qdisc. Playwright drives that browser over a pipe, which does not care about
namespaces: the executable it starts is a small script that enters the namespace first.

The page in the namespace reaches the server at the host's gateway, not at 127.0.0.1, so
the server listens on every address (``open_server``) and class links are rewritten for
the host (``link_via``). The gateway's plain-HTTP origin is not a secure context; a flag
lets that one origin use the camera and microphone as localhost would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.browser_fixtures import CHROMIUM, CHROMIUM_ARGS, SECRET, Tab
from tests.conftest import RunningServer, start_server, stop_server
from tests.netns import Host, require_netns


# Registered under a `name`, like tests/browser_fixtures: a module imports the functions.
@pytest.fixture(scope="module", name="netns_server")
def netns_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module, on every address so namespaced pages reach it."""
    running = open_server(tmp_path_factory.mktemp("browser-netns"), PULSEROOM_LOG_LEVEL="DEBUG")
    yield running
    stop_server(running)


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="playwright")
async def playwright_fixture() -> AsyncIterator[Any]:
    """Playwright for the module; each test launches the browsers it needs (in namespaces)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as running:
        yield running


def open_server(tmp: Path, **env: str) -> RunningServer:
    """``pulseroom serve`` on every address, so pages in namespaces reach it at a gateway.

    Signed with the browser tests' secret; ``env`` adds or overrides settings. The
    server builds links from the address a request came to, so links it gives the
    test (asked over loopback) point at 127.0.0.1: rewrite them with ``link_via``.
    """
    require_netns()
    return start_server(tmp, PULSEROOM_HOST="0.0.0.0", PULSEROOM_SECRET=SECRET, **env)


def origin_for(server: RunningServer, host: Host) -> str:
    """The server's origin as pages on ``host`` see it (``http://GATEWAY:PORT``)."""
    return f"http://{host.gateway}:{server.url.rsplit(':', 1)[1]}"


def link_via(link: str, server: RunningServer, host: Host) -> str:
    """The same class link (path and token fragment kept), addressed as ``host`` sees it."""
    return origin_for(server, host) + "/r/" + link.split("/r/", 1)[1]


def chromium_args(clip: Path | None = None, secure_origins: Sequence[str] = ()) -> list[str]:
    """The browser tests' Chromium flags, with ``clip`` (a .y4m) as the fake camera.

    ``secure_origins`` are plain-HTTP origins to treat as secure contexts, so a page
    there may open the camera and microphone.
    """
    args = list(CHROMIUM_ARGS)
    if clip is not None:
        args.append(f"--use-file-for-fake-video-capture={clip}")
    if secure_origins:
        args.append("--unsafely-treat-insecure-origin-as-secure=" + ",".join(secure_origins))
    return args


def netns_executable(host: Host, directory: Path) -> Path:
    """A script that runs Chromium inside ``host``'s namespace with the arguments it gets.

    ``ip netns exec`` replaces itself with the program (no fork), so the process
    Playwright starts and later stops is the browser itself, and the pipe Playwright
    talks over (file descriptors 3 and 4) is inherited as it is.
    """
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / f"chromium-in-{host.name}"
    script.write_text(f'#!/bin/sh\nexec ip netns exec {host.name} {CHROMIUM} "$@"\n')
    script.chmod(0o755)
    return script


async def launch(
    playwright: Any,
    *,
    host: Host | None = None,
    scripts: Path | None = None,
    clip: Path | None = None,
    secure_origins: Sequence[str] = (),
) -> Any:
    """Headless Chromium, in ``host``'s namespace if given (its wrapper script goes in
    ``scripts``), with ``clip`` as the fake camera if given. Close it when done.
    """
    executable = CHROMIUM
    if host is not None:
        if scripts is None:
            raise ValueError("a browser in a namespace needs a folder for its wrapper script")
        executable = netns_executable(host, scripts)
    return await playwright.chromium.launch(
        executable_path=str(executable),
        headless=True,
        args=chromium_args(clip, secure_origins),
        timeout=30_000,
    )


# The subscribe connection's inbound video, one entry per m-line (one per publisher
# the page receives video from), with the publisher from the page's m-line map.
INBOUND_VIDEO_JS = """async () => {
    const pr = window.pulseroom;
    const pc = pr && pr.subscribePc;
    if (!pc) return [];
    const owners = pr.tracks;
    const entries = [];
    (await pc.getStats()).forEach((r) => {
        if (r.type !== 'inbound-rtp' || r.kind !== 'video') return;
        entries.push({
            mid: r.mid ?? null,
            publisher: owners[r.mid]?.participant_id ?? null,
            trackIdentifier: r.trackIdentifier ?? null,
            timestamp: r.timestamp,
            frameWidth: r.frameWidth ?? 0,
            frameHeight: r.frameHeight ?? 0,
            framesPerSecond: r.framesPerSecond ?? 0,
            framesDecoded: r.framesDecoded ?? 0,
            framesDropped: r.framesDropped ?? 0,
            freezeCount: r.freezeCount ?? 0,
            totalFreezesDuration: r.totalFreezesDuration ?? 0,
            bytesReceived: r.bytesReceived ?? 0,
            retransmittedBytesReceived: r.retransmittedBytesReceived ?? 0,
            packetsReceived: r.packetsReceived ?? 0,
            packetsLost: r.packetsLost ?? 0,
            keyFramesDecoded: r.keyFramesDecoded ?? 0,
            pliCount: r.pliCount ?? 0,
            nackCount: r.nackCount ?? 0,
        });
    });
    return entries;
}"""


async def inbound_video(tab: Tab) -> list[dict[str, Any]]:
    """The ``inbound-rtp`` video stats of ``tab``'s subscribe connection, one dict per m-line.

    Keys are the stats' own names (``frameHeight``, ``framesDecoded``, ``bytesReceived``,
    ``freezeCount``, ...) plus ``publisher``, the participant id the m-line carries.
    """
    entries: list[dict[str, Any]] = await tab.page.evaluate(INBOUND_VIDEO_JS)
    return entries


@dataclass(frozen=True)
class VideoRate:
    """What one m-line received over a sampling interval."""

    mid: str
    publisher: str | None
    seconds: float
    bytes: int  # payload bytes received in the interval
    kbps: float  # the same, as kbit/s
    resent_kbps: float  # the part of it that came again after a NACK
    fps: float  # frames decoded a second
    frame_height: int  # at the end of the interval
    freezes: int  # freezes that began in the interval
    freeze_s: float  # seconds frozen in the interval
    dropped: int  # frames dropped in the interval
    frames: int  # frames decoded in the interval


async def video_rates(tab: Tab, seconds: float) -> dict[str, VideoRate]:
    """Sample ``inbound_video`` twice, ``seconds`` apart; what each m-line got meanwhile.

    The interval is the stats' own timestamps, so a slow ``evaluate`` does not skew
    the rates. M-lines that appear only in the second sample are left out.
    """
    before = {e["mid"]: e for e in await inbound_video(tab)}
    await asyncio.sleep(seconds)
    rates = {}
    for after in await inbound_video(tab):
        first = before.get(after["mid"])
        if first is None:
            continue
        span = max((after["timestamp"] - first["timestamp"]) / 1000, 1e-3)
        frames = after["framesDecoded"] - first["framesDecoded"]
        received = after["bytesReceived"] - first["bytesReceived"]
        resent = after["retransmittedBytesReceived"] - first["retransmittedBytesReceived"]
        rates[after["mid"]] = VideoRate(
            mid=after["mid"],
            publisher=after["publisher"],
            seconds=round(span, 2),
            bytes=received,
            kbps=round(received * 8 / span / 1000, 1),
            resent_kbps=round(resent * 8 / span / 1000, 1),
            fps=round(frames / span, 1),
            frame_height=after["frameHeight"],
            freezes=after["freezeCount"] - first["freezeCount"],
            freeze_s=round(after["totalFreezesDuration"] - first["totalFreezesDuration"], 2),
            dropped=after["framesDropped"] - first["framesDropped"],
            frames=frames,
        )
    return rates


async def wait_for_video(tab: Tab, publisher: str, timeout: float = 20.0) -> dict[str, Any]:
    """The inbound entry of ``publisher``'s video once ``tab`` decoded a frame of it."""
    deadline = time.monotonic() + timeout
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        entries = await inbound_video(tab)
        for entry in entries:
            if entry["publisher"] == publisher and entry["framesDecoded"] > 0:
                return entry
        await asyncio.sleep(0.25)
    raise AssertionError(
        f"{tab.name}: no decoded video from {publisher} within {timeout} s "
        f"(inbound video: {entries})\n" + tab.diagnostics()
    )


# The publish connection's outbound video, one entry per simulcast layer (rid).
OUTBOUND_VIDEO_JS = """async () => {
    const pc = window.pulseroom && window.pulseroom.publishPc;
    if (!pc) return [];
    const entries = [];
    (await pc.getStats()).forEach((r) => {
        if (r.type !== 'outbound-rtp' || r.kind !== 'video') return;
        entries.push({
            rid: r.rid ?? '', ssrc: r.ssrc, timestamp: r.timestamp,
            frameWidth: r.frameWidth ?? 0, frameHeight: r.frameHeight ?? 0,
            framesEncoded: r.framesEncoded ?? 0, bytesSent: r.bytesSent ?? 0,
            qpSum: r.qpSum ?? 0, targetBitrate: r.targetBitrate ?? 0,
            qualityLimitationReason: r.qualityLimitationReason ?? null,
            active: r.active ?? null,
        });
    });
    return entries;
}"""


async def outbound_video(tab: Tab) -> list[dict[str, Any]]:
    """The ``outbound-rtp`` video stats of ``tab``'s publish connection, one dict per layer."""
    entries: list[dict[str, Any]] = await tab.page.evaluate(OUTBOUND_VIDEO_JS)
    return entries


async def sent_rates(tab: Tab, seconds: float) -> dict[str, dict[str, Any]]:
    """What each layer (by rid, '' without simulcast) sent over ``seconds``: kbit/s,
    frames a second, height, mean QP (0-127 for VP8), target kbit/s and what limits it.
    """
    before = {e["ssrc"]: e for e in await outbound_video(tab)}
    await asyncio.sleep(seconds)
    rates = {}
    for after in await outbound_video(tab):
        first = before.get(after["ssrc"])
        if first is None:
            continue
        span = max((after["timestamp"] - first["timestamp"]) / 1000, 1e-3)
        frames = after["framesEncoded"] - first["framesEncoded"]
        rates[after["rid"]] = {
            "kbps": round((after["bytesSent"] - first["bytesSent"]) * 8 / span / 1000, 1),
            "fps": round(frames / span, 1),
            "frame_height": after["frameHeight"],
            "qp": round((after["qpSum"] - first["qpSum"]) / frames, 1) if frames else None,
            "target_kbps": round(after["targetBitrate"] / 1000),
            "limitation": after["qualityLimitationReason"],
        }
    return rates
