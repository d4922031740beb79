"""signaling.fanout: python-socketio's emit semantics, without a task per recipient.

A real ``socketio.AsyncServer`` on aiohttp on loopback, real python-socketio clients;
the Redis variant against the real Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestServer

from signaling.fanout import FanoutManager, FanoutRedisManager
from tests.conftest import REDIS_URL


class Node:
    """One Socket.IO server with a manager under test, and clients connected to it."""

    def __init__(self, manager: socketio.AsyncManager) -> None:
        self.sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
        self.app = web.Application()
        self.sio.attach(self.app)
        self.server = TestServer(self.app, host="127.0.0.1")
        self.sids: list[str] = []
        self.clients: list[tuple[socketio.AsyncClient, dict[str, list[Any]]]] = []

        async def connect(sid: str, _environ: Any, _auth: Any = None) -> None:
            self.sids.append(sid)
            await self.sio.enter_room(sid, "class")

        self.sio.on("connect", connect)

    async def start(self) -> None:
        await self.server.start_server()

    async def client(self) -> dict[str, list[Any]]:
        """Connect a client that records ``news`` and ``pair`` events; its inbox."""
        sio = socketio.AsyncClient(reconnection=False)
        inbox: dict[str, list[Any]] = {"news": [], "pair": []}

        async def news(data: Any) -> None:
            inbox["news"].append(data)

        async def pair(first: Any, second: Any) -> None:
            inbox["pair"].append((first, second))

        sio.on("news", news)
        sio.on("pair", pair)
        await sio.connect(str(self.server.make_url("/")), transports=["websocket"])
        self.clients.append((sio, inbox))
        return inbox

    async def close(self) -> None:
        for sio, _inbox in self.clients:
            await sio.disconnect()
        await self.server.close()


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    running = Node(FanoutManager())
    await running.start()
    yield running
    await running.close()


async def test_room_emit_reaches_everyone_but_the_skipped(node: Node) -> None:
    """To a room: once to each member, in order, skip_sid (one or a list) left out."""
    inboxes = [await node.client() for _ in range(4)]
    await until(lambda: len(node.sids) == 4)
    for n in range(5):
        await node.sio.emit("news", {"n": n}, room="class", skip_sid=node.sids[0])
    await node.sio.emit("news", {"n": 5}, room="class", skip_sid=node.sids[:2])
    await until(lambda: len(inboxes[3]["news"]) == 6 and len(inboxes[2]["news"]) == 6)
    await until(lambda: len(inboxes[1]["news"]) == 5)
    assert inboxes[0]["news"] == []
    assert inboxes[1]["news"] == [{"n": n} for n in range(5)]
    assert inboxes[3]["news"] == [{"n": n} for n in range(6)]


async def test_single_session_tuple_arguments_and_acks(node: Node) -> None:
    """``to=sid`` reaches that session only; a tuple is several arguments; an emit with a
    callback (python-socketio's own path) still gets its ack."""
    first, second = await node.client(), await node.client()
    await until(lambda: len(node.sids) == 2)
    await node.sio.emit("pair", ("a", 2), to=node.sids[1])
    await until(lambda: second["pair"] == [("a", 2)])
    assert first["pair"] == []

    acked: list[Any] = []

    async def ack_handler(data: Any) -> str:
        return f"got {data['n']}"

    node.clients[0][0].on("ask", ack_handler)
    await node.sio.emit("ask", {"n": 7}, to=node.sids[0], callback=acked.append)
    await until(lambda: acked == ["got 7"])


async def test_emit_to_an_unknown_room_or_namespace_is_nothing(node: Node) -> None:
    inbox = await node.client()
    await node.sio.emit("news", {"n": 1}, room="nobody")
    await node.sio.emit("news", {"n": 2}, room="class", namespace="/elsewhere")
    await node.sio.emit("news", {"n": 3}, room="class")
    await until(lambda: inbox["news"] == [{"n": 3}])


async def test_redis_variant_crosses_nodes() -> None:
    """Two nodes on the real Redis: an emit on one reaches the room's members on both."""
    channel = f"pulseroom-test-fanout-{uuid.uuid4().hex[:8]}"
    nodes = [Node(FanoutRedisManager(REDIS_URL, channel=channel)) for _ in range(2)]
    for running in nodes:
        await running.start()
    try:
        local, remote = await nodes[0].client(), await nodes[1].client()
        await until(lambda: len(nodes[0].sids) == 1 and len(nodes[1].sids) == 1)
        await asyncio.sleep(0.5)  # both listeners subscribed
        await nodes[0].sio.emit("news", {"n": 1}, room="class")
        await until(lambda: local["news"] == [{"n": 1}] and remote["news"] == [{"n": 1}])
    finally:
        for running in nodes:
            await running.close()
