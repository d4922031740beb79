"""Classes spread over SFU worker processes; a worker crash ends only its classes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from pulseroom.bot import Bot
from tests.conftest import RunningServer, start_server, stop_server
from tests.peers import join
from tests.sio_client import Client


async def frames_flowing(bot: Bot, seconds: float = 1.5) -> bool:
    """Whether every track the bot receives decoded new frames in the next ``seconds``."""
    before = {mid: t.frames for mid, t in bot.tracks.items()}
    await asyncio.sleep(seconds)
    return bool(before) and all(bot.tracks[mid].frames > n for mid, n in before.items())


async def wait_until(check: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def two_workers(tmp_path: Path) -> Any:
    server = start_server(tmp_path, PULSEROOM_SFU_WORKERS="2")
    yield server
    stop_server(server)


@pytest.mark.timeout(120)
async def test_classes_are_spread_and_a_crash_ends_only_its_own(two_workers: RunningServer) -> None:
    server = two_workers
    links = [server.create_room(f"Class {i}") for i in (1, 2)]
    bots: list[Bot] = []
    watcher = await Client(server.url).connect()
    try:
        for room in links:
            bots.append(await join(str(room["host_link"]), "Coach"))
            bots.append(await join(str(room["join_link"]), "Ann"))
        await watcher.join(str(links[0]["join_link"]), "Watcher")
        for bot in bots:
            await wait_until(lambda b=bot: frames_flowing(b, 0.5))

        workers = server.stats()["workers"]
        assert [w["rooms"] for w in workers] == [1, 1], workers  # least-loaded placement
        assert [w["event_loop"] for w in workers] == ["uvloop", "uvloop"]  # the default
        assert sum(w["participants"] for w in workers) == 5
        # Which worker holds class 1? The one with 3 people (2 bots + the watcher).
        doomed = next(w for w in workers if w["participants"] == 3)
        os.kill(doomed["pid"], signal.SIGKILL)

        failed = await watcher.wait_for("media_failed", timeout=5)
        assert "rejoin" in failed["message"]
        # Class 2, on the other worker, never noticed.
        assert await frames_flowing(bots[2]) and await frames_flowing(bots[3])
        # The pool replaced the dead worker.
        workers_after = server.stats()["workers"]
        assert len(workers_after) == 2 and all(w["alive"] for w in workers_after)
        assert doomed["pid"] not in [w["pid"] for w in workers_after]
        # Class 1 goes on: its people rejoin with their links.
        for bot in bots[:2]:
            await bot.stop()
        bots[:2] = [
            await join(str(links[0]["host_link"]), "Coach"),
            await join(str(links[0]["join_link"]), "Ann"),
        ]
        for bot in bots[:2]:
            await wait_until(lambda b=bot: frames_flowing(b, 0.5))
    finally:
        await watcher.close()
        for bot in bots:
            await bot.stop()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_a_worker_forwards_straight_from_the_socket_on_either_loop(
    tmp_path: Path, event_loop: str
) -> None:
    """The direct ingress path (aiortc_adapter.take_datagrams) hooks the protocol object,
    which asyncio and uvloop call differently: every packet must still come that way."""
    server = start_server(tmp_path, PULSEROOM_SFU_WORKERS="1", PULSEROOM_SFU_EVENT_LOOP=event_loop)
    bots: list[Bot] = []
    try:
        room = server.create_room("Loops")
        bots.append(await join(str(room["host_link"]), "Coach"))
        bots.append(await join(str(room["join_link"]), "Ann"))
        for bot in bots:
            await wait_until(lambda b=bot: frames_flowing(b, 0.5))
        (worker,) = server.stats()["workers"]
        assert worker["event_loop"] == event_loop
        counters = worker["counters"]
        assert counters["received_packets"] > 50, counters
        # Only what raced the DTLS handshake takes aiortc's queue: SRTP that arrives
        # while the handshake's last message still waits in that queue (no SRTP key yet
        # in the socket callback). Seen under load: 2 of 301. Unhooked, all would.
        assert counters["queued_packets"] <= 0.05 * counters["received_packets"], counters
        assert counters["forwarded_packets"] > 50, counters
    finally:
        for bot in bots:
            await bot.stop()
        stop_server(server)
