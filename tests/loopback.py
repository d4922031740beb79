"""The server and real aiortc peers in one event loop, on loopback (as aiortc's own tests).

``create_app`` with the SFU in this process (``PULSEROOM_SFU_WORKERS=0``) served on a free
port, and peers made with ``tests.peers.join``: real signaling, ICE, DTLS and RTP over
127.0.0.1 without starting a server or a bot process. For the SFU core's behaviour
(forwarding, NACK, keyframes, speaker, bitrate); the worker pool has tests of its own.
"""

from __future__ import annotations

import logging
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
from tests.instructor import AsyncLoggedIn, setup_tokens


@dataclass
class Loopback:
    """A server running in this event loop: its URL and its SFU."""

    url: str
    sfu: SfuServer
    instructor: AsyncLoggedIn  # the test instructor's session (tests/instructor.py)

    async def create_room(self, title: str = "Spin class") -> dict[str, Any]:
        """POST /api/rooms as the test instructor and return the JSON answer."""
        return await self.instructor.create_room(title)

    async def stats(self) -> dict[str, Any]:
        """GET /api/stats."""
        async with httpx.AsyncClient() as client:
            data: dict[str, Any] = (await client.get(f"{self.url}/api/stats")).json()
        return data


@asynccontextmanager
async def loopback_server(
    data_dir: Path, port: int | None = None, **settings: object
) -> AsyncIterator[Loopback]:
    """Serve ``create_app`` with these settings (by environment name) on ``port`` (a free
    one if not given: a test that registers the server's URL elsewhere first picks it)."""
    port = port or free_port()
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
    # The setup link the server logs at start, read as a self-hoster reads the output.
    started = _Lines()
    logging.getLogger("pulseroom.app").addHandler(started)
    try:
        await runner.setup()
    finally:
        logging.getLogger("pulseroom.app").removeHandler(started)
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        tokens = setup_tokens("\n".join(started.lines))
        instructor = await AsyncLoggedIn.open(url, tokens[-1] if tokens else None)
        try:
            yield Loopback(url, app[SFU], instructor)
        finally:
            await instructor.aclose()
    finally:
        await runner.cleanup()


class _Lines(logging.Handler):
    """Keeps the messages logged while the app starts."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
