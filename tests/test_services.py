"""Configuration switches the server to the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL, start_server, stop_server
from tests.sio_client import Client


@pytest.mark.timeout(90)
async def test_server_on_postgresql_and_redis(tmp_path: Path, postgres_url: str) -> None:
    server = start_server(tmp_path, DATABASE_URL=postgres_url, REDIS_URL=REDIS_URL)
    redis = aioredis.from_url(REDIS_URL)
    clients: list[Client] = []
    try:
        assert "PostgreSQL" in server.log() and "Redis" in server.log()
        room = server.create_room("Through the real services")
        host_link, join_link = str(room["host_link"]), str(room["join_link"])
        clients = [await Client(server.url).connect() for _ in range(2)]
        await clients[0].join(host_link, "Coach")
        await clients[1].join(join_link, "Ann")
        # Socket.IO fan-out goes through Redis: the manager listens on its channel
        # (named after PULSEROOM_REDIS_PREFIX, default "pulseroom").
        channels = [c.decode() for c in await redis.pubsub_channels()]
        assert "pulseroom:socketio" in channels, channels
        await clients[1].call("chat", {"v": 1, "text": "via redis"})
        got = await clients[0].wait_for("chat")
        assert got["message"]["text"] == "via redis"
        # The class and its chat are in PostgreSQL, not in the SQLite default.
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            rows = await conn.fetch(
                "SELECT r.title, c.text FROM chat_messages c JOIN rooms r ON r.id = c.room_id"
            )
        finally:
            await conn.close()
        assert [(r["title"], r["text"]) for r in rows] == [
            ("Through the real services", "via redis")
        ]
        assert not (tmp_path / "data" / "pulseroom.db").exists()
    finally:
        for client in clients:
            await client.close()
        await redis.aclose()
        stop_server(server)


@pytest.mark.timeout(60)
async def test_unreachable_database_fails_at_start_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as err:
        start_server(tmp_path, DATABASE_URL="postgresql+asyncpg://nobody:secret@127.0.0.1:1/none")
    message = str(err.value)
    assert (
        "pulseroom: cannot use the database postgresql+asyncpg://nobody:***@127.0.0.1:1/none"
        in message
    )
    assert "secret" not in message
    await asyncio.sleep(0)
