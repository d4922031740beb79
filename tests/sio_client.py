"""A small Socket.IO test client that records every event it receives."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import socketio

EVENTS = (
    "participant_joined",
    "participant_left",
    "participant_updated",
    "chat",
    "subscribe_offer",
    "gallery",
    "recording",
    "class_ended",
    "error",
    "media_failed",
    "active_speaker",
    "hr",
    "telemetry_ack",
    "leaderboard",
    "effort_settings",
    "max_hr_raised",
    "shout_out",
    "milestone",
)


class Client:
    """Connects, calls events with acks, and lets tests wait for received events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[Any]] = defaultdict(list)
        for name in EVENTS:
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any = None) -> None:
            self.received[name].append(data)

        return record

    async def connect(self) -> Client:
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=10)
        return self

    async def call(self, event: str, payload: Any) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(event, payload, timeout=15)
        return ack

    async def join(self, link: str, name: str) -> dict[str, Any]:
        room, token = link.split("/r/", 1)[1].split("#t=")
        return await self.call("join", {"v": 1, "token": token, "name": name, "room": room})

    async def wait_for(self, event: str, predicate: Any = None, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.received[event]:
                if predicate is None or predicate(item):
                    return item
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"no {event} event matching within {timeout}s: {self.received[event]!r}"
        )

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
