"""A minimal Socket.IO client for load generation: Engine.IO 4 over one websocket.

python-socketio's ``AsyncClient`` costs about as much per event as the server does, so
a benchmark of thousands of them would measure the generators. This speaks just what
``bench.signaling_load`` needs of the protocol (socket.io-protocol v5 over engine.io
v4, websocket transport only, no binary, default namespace): connect, emit with an
ack, receive events (decoded only when someone listens for them) and answer the
server's pings. One ``aiohttp.ClientSession`` serves every client of a process. What the
messages say (payloads, acks, refusals) is ``client.protocol``'s, as for every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

# Handlers get the event's first argument and the time.time() it arrived at.
EventHandler = Callable[[Any, float], None]
AckHandler = Callable[[Any], None]


class SioError(Exception):
    """The connection failed or the server refused it."""


class LightClient:
    """One Socket.IO session on its own websocket."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._url = base_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 0
        self._acks: dict[int, AckHandler] = {}
        self._handlers: dict[str, EventHandler] = {}
        self._connected: asyncio.Future[None] | None = None
        self.closed = False

    def on(self, event: str, handler: EventHandler) -> None:
        """Call ``handler(data, arrived_at)`` for each ``event``; other events are skipped."""
        self._handlers[event] = handler

    async def connect(self, timeout: float = 30.0) -> None:
        """Open the websocket and the default namespace."""
        loop = asyncio.get_running_loop()
        self._connected = loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                self._ws = await self._session.ws_connect(self._url, autoping=False)
                opened = await self._ws.receive_str()
                if not opened.startswith("0"):
                    raise SioError(f"expected an Engine.IO open packet, got {opened[:80]!r}")
                self._reader = asyncio.create_task(self._read())
                await self._ws.send_str("40")
                await self._connected
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.close()
            raise SioError(f"{type(exc).__name__}: {exc}") from None

    async def send_call(self, event: str, data: Any, on_ack: AckHandler) -> None:
        """Emit ``event`` with an ack id; ``on_ack(answer)`` runs when the server answers."""
        if self._ws is None or self.closed:
            raise SioError("not connected")
        self._next_id += 1
        self._acks[self._next_id] = on_ack
        packet = f"42{self._next_id}{json.dumps([event, data], separators=(',', ':'))}"
        try:
            await self._ws.send_str(packet)
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            self._acks.pop(self._next_id, None)
            raise SioError(f"send failed: {exc}") from None

    async def call(self, event: str, data: Any, timeout: float = 30.0) -> Any:
        """Emit ``event`` and wait for its ack."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(value: Any) -> None:
            if not answer.done():
                answer.set_result(value)

        await self.send_call(event, data, done)
        async with asyncio.timeout(timeout):
            return await answer

    @property
    def pending_acks(self) -> int:
        """Calls still waiting for their ack."""
        return len(self._acks)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                if message.data == "2":  # the server's ping
                    await self._ws.send_str("3")
                else:
                    self._packet(message.data)
        except (aiohttp.ClientError, OSError, RuntimeError):
            pass
        finally:
            self.closed = True
            if self._connected is not None and not self._connected.done():
                self._connected.set_exception(SioError("closed before connecting"))

    def _packet(self, text: str) -> None:
        kind = text[:2]
        if kind == "42":  # an event: ["name", data]
            if not self._handlers:
                return
            end = text.find('"', 4)
            handler = self._handlers.get(text[4:end])
            if handler is not None:
                arrived = time.time()
                args = json.loads(text[2:])
                handler(args[1] if len(args) > 1 else None, arrived)
        elif kind == "43":  # an ack: id[data]
            start = 2
            while text[start].isdigit():
                start += 1
            on_ack = self._acks.pop(int(text[2:start]), None)
            if on_ack is not None:
                args = json.loads(text[start:])
                on_ack(args[0] if args else None)
        elif kind == "40":
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(None)
        elif kind == "44" and self._connected is not None and not self._connected.done():
            self._connected.set_exception(SioError(f"connection refused: {text[2:200]}"))

    async def close(self) -> None:
        """Close the websocket and stop reading (idempotent)."""
        self.closed = True
        if self._ws is not None:
            with contextlib.suppress(aiohttp.ClientError, OSError, RuntimeError):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
