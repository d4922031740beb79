"""The fuzz target: one real server on a fresh PostgreSQL database, and ways to watch it.

Shared by tests/test_fuzz_*.py and tests/test_abuse.py. Each test module starts one
``pulseroom serve`` subprocess (a module-scoped fixture built from ``run_target``) and
reuses it for every example: hypothesis runs hundreds of payloads against it, and a
server per example would cost minutes.

What "nothing changed" means here: every row of every table of the server's database
(``Database.snapshot``), and every broadcast an observing instructor receives (a state
change in memory, such as the roster, a lock or a mute, is always broadcast).
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from pulseroom.app import SIGNALING, create_app
from pulseroom.settings import load_settings
from signaling.server import SignalingServer
from tests.conftest import ROOT, RunningServer, fresh_database, start_server, stop_server
from tests.sio_client import Client

# Known to the tests, so they can forge tokens.
SECRET = "9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa0f1e2d3c4b5a"
# A liveness probe: end of ICE candidates for the subscribe connection every member has.
# It crosses the whole path (validation, presence, the SFU worker) and changes nothing.
PROBE = ("ice", {"v": 1, "pc": "subscribe", "candidate": ""})


def documented_error_codes() -> frozenset[str]:
    """The error codes listed in docs/protocol.md ("### Error codes")."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("### Error codes", 1)[1].split("\n\n", 1)[0]
    return frozenset(re.findall(r"`([a-z_]+)`", section))


def _unstarted_app() -> web.Application:
    """The app the server under test runs, built by the same factory but never started."""
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(
            PULSEROOM_SFU_WORKERS=0,
            PULSEROOM_SECRET=SECRET,
            PULSEROOM_DATA_DIR=home,
            DATABASE_URL=f"sqlite+aiosqlite:///{home}/unused.db",
            REDIS_URL="",
        )
        return create_app(settings)


def protocol_events() -> Mapping[str, Any]:
    """The server's own event table (name → model, handler, who may send it).

    Read from the app, so an event added to signaling/server.py is fuzzed without
    anyone listing it here.
    """
    signaling: SignalingServer = _unstarted_app()[SIGNALING]
    return signaling.events


def http_routes() -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, HEAD aside: new routes are covered too."""
    routes = set()
    for route in _unstarted_app().router.routes():
        info = route.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        if route.method != "HEAD":
            routes.add((route.method, str(path)))
    return sorted(routes)


@dataclass
class Target:
    """A running server and its database."""

    server: RunningServer
    database_url: str  # asyncpg DSN of the server's database
    _log_offset: int = 0

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.url

    def create_room(self, title: str = "Fuzzed class") -> dict[str, Any]:
        """A new class: ``{"room": {"id"}, "host_link", "join_link"}``."""
        return dict(self.server.create_room(title))

    def mark_log(self) -> None:
        """Start watching the server's log from here."""
        self._log_offset = len(self.server.log())

    def log_problems(self) -> list[str]:
        """Tracebacks and ERROR lines the server logged since ``mark_log``."""
        text = self.server.log()[self._log_offset :]
        return [line for line in text.splitlines() if "Traceback" in line or " ERROR " in line]


def run_target(tmp: Path) -> Iterator[Target]:
    """A fixture body: the server on a fresh PostgreSQL database, stopped and dropped after."""
    databases = fresh_database("pulseroom_fuzz")
    url = next(databases)
    server = start_server(tmp, DATABASE_URL=url, PULSEROOM_SECRET=SECRET, PULSEROOM_SFU_WORKERS="1")
    try:
        yield Target(server, url.replace("postgresql+asyncpg://", "postgresql://"))
    finally:
        stop_server(server)
        for _ in databases:
            pass


class Database:
    """A direct connection to the server's database, to compare its whole content."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._query = ""

    async def open(self) -> Database:
        self._conn = await asyncpg.connect(self.dsn)
        tables = [
            r["tablename"]
            for r in await self._conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        assert "chat_messages" in tables and "participants" in tables, tables
        self._query = " UNION ALL ".join(
            f"SELECT '{t}', count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
            f' FROM "{t}" x'
            for t in tables
        )
        return self

    async def snapshot(self) -> dict[str, tuple[int, str]]:
        """Every table's row count and a digest of all its rows."""
        assert self._conn is not None
        rows = await self._conn.fetch(self._query)
        return {str(r[0]): (int(r[1]), str(r[2])) for r in rows}

    async def rows(self, sql: str, *args: Any) -> list[Any]:
        """The rows of a query."""
        assert self._conn is not None
        return list(await self._conn.fetch(sql, *args))

    async def scalar(self, sql: str, *args: Any) -> Any:
        """One value of a query."""
        assert self._conn is not None
        return await self._conn.fetchval(sql, *args)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


def token_of(link: str) -> str:
    """The token in a class link's fragment."""
    return link.split("#t=", 1)[1]


class Session:
    """A fuzzing client's session in one class, replaced by a fresh one when rate limited.

    Rate limits are checked before payloads, so a refusal for the rate says nothing about
    the payload: the example is then sent again from a new session.
    """

    def __init__(self, target: Target, link: str, name: str, join: bool = True) -> None:
        self.target = target
        self.link = link
        self.name = name
        self.join = join
        self.client: Client | None = None
        self.you: dict[str, Any] = {}

    async def ready(self) -> Client:
        """The connected (and joined) client."""
        if self.client is None or not self.client.sio.connected:
            self.client = await Client(self.target.url).connect()
            if self.join:
                ack = await self.client.join(self.link, self.name)
                assert ack["ok"], ack
                self.you = ack["you"]
        return self.client

    async def renew(self) -> Client:
        """Leave (disconnect) and come back as a new session."""
        await self.close()
        return await self.ready()

    async def call(self, event: str, payload: Any) -> dict[str, Any]:
        """The ack of ``event``, from the live session."""
        client = await self.ready()
        return await client.call(event, payload)

    async def alive(self) -> None:
        """The session is connected and a valid event still succeeds."""
        client = await self.ready()
        assert client.sio.connected
        event, payload = PROBE if self.join else ("time", {"v": 1})
        ack = await client.call(event, payload)
        if not self.join:  # not joined yet: the answer must still come, and say so
            assert ack["error"]["code"] in ("not_joined", "rate_limited"), ack
        else:
            assert ack["ok"] or ack["error"]["code"] == "rate_limited", ack

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


def assert_refused(ack: Any, codes: frozenset[str], allowed: set[str] | None = None) -> str:
    """``ack`` is a refusal of the documented shape; returns its code."""
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    error = ack["error"]
    assert set(error) >= {"code", "message"}, ack
    assert isinstance(error["message"], str) and error["message"], ack
    code = str(error["code"])
    assert code in codes, f"undocumented error code {code!r}: {ack}"
    assert code != "internal", f"the server failed: {ack}"
    if allowed is not None:
        assert code in allowed, ack
    return code


class RawSocket:
    """Socket.IO spoken by hand over a WebSocket, for what no client library would send."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self._http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed = False

    async def open(self) -> RawSocket:
        self._http = aiohttp.ClientSession()
        self.ws = await self._http.ws_connect(self.url, max_msg_size=0)
        opened = await self._text()
        assert opened.startswith("0{"), opened
        await self.ws.send_str("40")
        connected = await self._text()
        assert connected.startswith("40{"), connected
        return self

    async def _text(self, timeout: float = 10.0) -> str:
        """The next Socket.IO packet (pings answered); "" once the server closed."""
        assert self.ws is not None
        while True:
            message = await asyncio.wait_for(self.ws.receive(), timeout)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                self.closed = True
                return ""
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            if message.data == "2":
                await self.ws.send_str("3")
                continue
            if message.data == "1":  # Engine.IO "close": the server ended the session
                self.closed = True
                return ""
            return str(message.data)

    async def send(self, packet: str | bytes) -> None:
        """One raw Engine.IO message."""
        assert self.ws is not None
        if isinstance(packet, bytes):
            await self.ws.send_bytes(packet)
        else:
            await self.ws.send_str(packet)

    async def call(self, event: str, payload_json: str, ack_id: int) -> Any:
        """Emit ``event`` with a payload given as JSON text; the ack's first argument."""
        await self.send(f"42{ack_id}[{json.dumps(event)},{payload_json}]")
        return await self.ack(ack_id)

    async def ack(self, ack_id: int, timeout: float = 10.0) -> Any:
        """Wait for the ack ``ack_id`` (None if the connection closed first)."""
        prefix = f"43{ack_id}["
        while True:
            text = await self._text(timeout)
            if not text:
                return None
            if text.startswith(prefix):
                return json.loads(text[len(prefix) - 1 :])[0]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._http is not None:
            await self._http.close()
