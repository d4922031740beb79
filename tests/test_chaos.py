"""Faults on real (namespaced) networks: a lossy subscriber, a publisher that drops."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, RunningServer, start_server, stop_server
from tests.netns import Host, netns_host, require_netns
from tests.peers import join, run_bot


@pytest.fixture
def open_server(tmp_path: Path) -> Any:
    """A server listening on every address, so namespaced hosts reach it too."""
    require_netns()
    server = start_server(tmp_path, PULSEROOM_HOST="0.0.0.0")
    yield server
    stop_server(server)


def link_via(link: str, host: Host) -> str:
    """The same link, addressed to the server as ``host`` sees it."""
    port = link.split("/r/")[0].rsplit(":", 1)[1]
    return f"http://{host.gateway}:{port}/r/" + link.split("/r/")[1]


async def bot(link: str, name: str, seconds: float, host: Host | None = None) -> dict[str, Any]:
    return await run_bot(link, name, seconds, prefix=host.command() if host else None)


def coach_video(report: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in report["tracks"] if t["publisher"] == "Coach" and t["kind"] == "video")


@pytest.mark.timeout(150)
async def test_lossy_subscriber_recovers_and_does_not_hurt_the_others(
    open_server: RunningServer,
) -> None:
    room = open_server.create_room("Chaos")
    host_link, join_link = str(room["host_link"]), str(room["join_link"])
    with netns_host() as lossy_host:
        lossy_host.set_udp_loss(10)
        coach = asyncio.create_task(bot(host_link, "Coach", 16))
        await asyncio.sleep(2)
        reports = await asyncio.gather(
            bot(join_link, "Clean1", 12),
            bot(join_link, "Clean2", 12),
            bot(link_via(join_link, lossy_host), "Lossy", 12, host=lossy_host),
        )
        await coach
    clean1, clean2, lossy = (coach_video(r) for r in reports)
    print("chaos figures:", clean1, clean2, lossy, open_server.stats())
    stats = open_server.stats()
    # The lossy subscriber lost ~10 % on the wire; NACK + RTX from the SFU filled most of it.
    assert stats["nacks_received"] > 0 and stats["retransmitted_packets"] > 0, stats
    assert lossy["loss_percent"] < 3.0, lossy
    assert lossy["frames"] >= 0.7 * min(clean1["frames"], clean2["frames"]), (lossy, clean1)
    # The others saw nothing of it: no loss, the same stream as each other.
    assert clean1["loss_percent"] == 0.0 and clean2["loss_percent"] == 0.0, (clean1, clean2)
    assert abs(clean1["frames"] - clean2["frames"]) <= 0.1 * clean1["frames"], (clean1, clean2)


@pytest.mark.timeout(120)
async def test_publisher_that_drops_and_rejoins_is_seen_again_within_3s(
    open_server: RunningServer,
) -> None:
    room = open_server.create_room("Drop")
    coach = await join(str(room["host_link"]), "Coach")
    try:
        with netns_host() as phone:
            link = link_via(str(room["join_link"]), phone)
            args = phone.command(sys.executable, "-m", "pulseroom.cli", "bot", link,
                                 "--seconds", "30", "--name", "Ann")  # fmt: skip
            first = await asyncio.create_subprocess_exec(
                *args,
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await asyncio.sleep(5)
            first.send_signal(signal.SIGKILL)  # the phone's app dies mid-class
            await first.wait()
            await asyncio.sleep(1)
            second = asyncio.create_task(bot(link, "Ann", 6, host=phone))
            for _ in range(200):
                await asyncio.sleep(0.05)
                rejoined = [
                    (t, who) for t, kind, who in coach.timeline
                    if kind == "participant_joined" and coach.names.get(who) == "Ann"
                ]  # fmt: skip
                if len(rejoined) >= 2:
                    break
            assert len(rejoined) >= 2, coach.timeline
            joined_at, new_id = rejoined[-1]
            for _ in range(100):
                await asyncio.sleep(0.05)
                video = [
                    t for t in coach.tracks.values()
                    if t.publisher_id == new_id and t.kind == "video" and t.first_frame_at
                ]  # fmt: skip
                if video:
                    break
            assert video, "the rejoined publisher's video never arrived"
            assert video[0].first_frame_at - joined_at < 3.0  # type: ignore[operator]
            left = [w for _, kind, w in coach.timeline if kind == "participant_left"]
            assert left, "the dropped publisher was not removed"
            await second
    finally:
        await coach.stop()
