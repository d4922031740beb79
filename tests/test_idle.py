"""A class everyone has left is let go from memory after ``PULSEROOM_IDLE_CLASS_S``
(issue 17, item 8), on a real server in this event loop: its controls (lock, timer) are
kept while people come back in time, and forgotten once it has been empty that long;
what is stored (its chat) stays.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.loopback import loopback_server
from tests.sio_client import Client

PROGRAM = {"rounds": 1, "phases": [{"name": "Hold", "seconds": 600, "kind": "work"}]}


async def _visit(url: str, link: str, then: Any = None) -> dict[str, Any]:
    """Join as the instructor, do ``then``, leave; the join ack."""
    coach = await Client(url).connect()
    try:
        ack: dict[str, Any] = await coach.join(link, "Coach")
        assert ack["ok"], ack
        if then is not None:
            await then(coach)
        assert (await coach.call("leave", {"v": 1}))["ok"]
    finally:
        await coach.close()
    return ack


async def test_an_empty_class_is_let_go_after_a_while_and_only_then(tmp_path: Path) -> None:
    async with loopback_server(tmp_path, PULSEROOM_IDLE_CLASS_S=1.0) as server:
        room = await server.create_room("Idle")
        link = str(room["host_link"])

        async def set_up(coach: Client) -> None:
            assert (await coach.call("lock", {"v": 1, "locked": True}))["ok"]
            assert (await coach.call("timer", {"v": 1, "action": "start", "program": PROGRAM}))[
                "ok"
            ]
            assert (await coach.call("chat", {"v": 1, "text": "back in 5"}))["ok"]

        await _visit(server.url, link, set_up)
        # Back within the second: the class is as it was left.
        await asyncio.sleep(0.3)
        ack = await _visit(server.url, link)
        assert ack["controls"]["locked"] is True and ack["controls"]["timer"] is not None
        # Empty for longer: the controls are gone, the chat is not.
        await asyncio.sleep(1.6)
        ack = await _visit(server.url, link)
        assert ack["controls"]["locked"] is False and ack["controls"]["timer"] is None
        assert [m["text"] for m in ack["chat"]] == ["back in 5"]
