"""The server and real aiortc peers in one event loop, on loopback (as aiortc's own tests).

``create_app`` with the SFU in this process (``PULSEROOM_SFU_WORKERS=0``) served on a free
port, and peers made with ``tests.peers.join``: real signaling, ICE, DTLS and RTP over
127.0.0.1 without starting a server or a bot process. For the SFU core's behaviour
(forwarding, NACK, keyframes, speaker, bitrate); the worker pool has tests of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from pulseroom.app import SFU, create_app
from pulseroom.settings import load_settings
from sfu.server import SfuServer
from tests.conftest import free_port


@dataclass
class Loopback:
    """A server running in this event loop: its URL and its SFU."""

    url: str
    sfu: SfuServer

    async def create_room(self, title: str = "Spin class") -> dict[str, Any]:
        """POST /api/rooms and return the JSON answer (asynchronously: the server is here)."""
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{self.url}/api/rooms", json={"title": title})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def stats(self) -> dict[str, Any]:
        """GET /api/stats."""
        async with httpx.AsyncClient() as client:
            data: dict[str, Any] = (await client.get(f"{self.url}/api/stats")).json()
        return data


@asynccontextmanager
async def loopback_server(data_dir: Path, **settings: object) -> AsyncIterator[Loopback]:
    """Serve ``create_app`` with these settings (by environment name) on a free port."""
    port = free_port()
    app = create_app(
        load_settings(
            PULSEROOM_DATA_DIR=str(data_dir),
            PULSEROOM_PORT=port,
            PULSEROOM_SFU_WORKERS=0,
            PULSEROOM_ROOMS_PER_MINUTE=10_000,
            **settings,
        )
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Loopback(f"http://127.0.0.1:{port}", app[SFU])
    finally:
        await runner.cleanup()
