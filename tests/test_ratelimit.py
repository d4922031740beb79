"""Rate limits: the buckets alone, and on a real server's events and REST."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from signaling.ratelimit import RateLimit
from tests.conftest import RunningServer, start_server, stop_server
from tests.sio_client import Client

# The limits are per session and participant: one server for the tests of events; the
# limit on creating classes (per address) gets a server of its own.
pytestmark = pytest.mark.shared_server


def test_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limit = RateLimit(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b")  # another key has its own bucket
    now[0] += 0.5  # one token back
    assert [limit.allow("a") for _ in range(2)] == [True, False]
    now[0] += 100
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]  # capped at burst
    limit.forget("a")
    assert limit.allow("a")


@pytest.fixture
async def chatter(server: RunningServer) -> AsyncIterator[tuple[Client, Client, str]]:
    room = server.create_room()
    sender, listener = await Client(server.url).connect(), await Client(server.url).connect()
    await sender.join(str(room["join_link"]), "Spammer")
    await listener.join(str(room["host_link"]), "Coach")
    yield sender, listener, str(room["room"]["id"])
    await sender.close()
    await listener.close()


async def test_chat_flood_is_cut_off_and_changes_nothing(
    chatter: tuple[Client, Client, str],
) -> None:
    sender, listener, _room = chatter
    acks = [await sender.call("chat", {"v": 1, "text": f"msg {i}"}) for i in range(8)]
    assert [a["ok"] for a in acks] == [True] * 5 + [False] * 3
    assert {a["error"]["code"] for a in acks[5:]} == {"rate_limited"}
    await listener.wait_for("chat", lambda m: m["message"]["text"] == "msg 4")
    assert [m["message"]["text"] for m in listener.received["chat"]] == [
        f"msg {i}" for i in range(5)
    ]


async def test_join_attempts_are_limited_per_session(server: RunningServer) -> None:
    room = server.create_room()
    client = await Client(server.url).connect()
    try:
        codes = []
        for _ in range(7):
            ack = await client.call(
                "join", {"v": 1, "token": "bad.token", "name": "x", "room": room["room"]["id"]}
            )
            codes.append(ack["error"]["code"])
        assert codes == ["invalid_token"] * 5 + ["rate_limited"] * 2
    finally:
        await client.close()


def test_room_creation_is_limited_per_address(tmp_path: Path) -> None:
    server = start_server(tmp_path, PULSEROOM_ROOMS_PER_MINUTE="3")
    try:
        instructor = server.instructor()
        statuses = [
            instructor.post("/api/rooms", json={"title": "x"}).status_code for _ in range(5)
        ]
        assert statuses == [201, 201, 201, 429, 429]
        assert server.stored_rooms() == 3
        # Anonymous requests are refused before they are counted: no class, no 429.
        anonymous = httpx.post(f"{server.url}/api/rooms", json={"title": "x"}, timeout=10)
        assert anonymous.status_code == 401
        assert server.stored_rooms() == 3
    finally:
        stop_server(server)
