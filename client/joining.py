"""Joining a class over Socket.IO: on the node that holds it, and again after a drop.

``join_following`` connects and joins, following ``moved`` answers to the class's node;
``Membership`` keeps what a rejoin needs (the bound token, the node, the cluster's
nodes) and updates it from each join ack (docs/protocol.md, "Several nodes");
``close_session`` leaves and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiortc import RTCPeerConnection

from .protocol import CALL_TIMEOUT_S, MAX_REDIRECTS, ClientError, call, join_payload, node_urls

CONNECT_TIMEOUT_S = 10.0
Setup = Callable[[socketio.AsyncClient], None]


async def join_following(
    url: str,
    payload: dict[str, Any],
    setup: Setup | None = None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    call_timeout: float = CALL_TIMEOUT_S,
) -> tuple[socketio.AsyncClient, str, dict[str, Any]]:
    """Connect to ``url`` and ``join``, following ``moved`` answers to the class's node.

    ``setup(sio)`` registers handlers on each new client before it connects. Returns the
    connected client, the node's URL and the join ack; raises ClientError (``code`` set
    when the server refused, None when no node could be reached).
    """
    for _ in range(MAX_REDIRECTS + 1):
        sio = socketio.AsyncClient(reconnection=False)
        if setup is not None:
            setup(sio)
        try:
            await sio.connect(url, transports=["websocket"], wait_timeout=connect_timeout)
        except socketio.exceptions.ConnectionError as exc:
            # python-engineio keeps the HTTP session of a failed connect open.
            http = getattr(sio.eio, "http", None)
            if http is not None and not http.closed:
                await http.close()
            raise ClientError(f"cannot reach {url}: {exc}") from None
        try:
            ack = await call(sio, "join", payload, call_timeout)
        except ClientError as exc:
            with contextlib.suppress(Exception):
                await sio.disconnect()
            if exc.code == "moved" and exc.url:
                url = exc.url.rstrip("/")
                continue
            raise
        except Exception as exc:  # the connection dropped or timed out mid-join
            with contextlib.suppress(Exception):
                await sio.disconnect()
            raise ClientError(f"join at {url} failed: {exc.__class__.__name__}: {exc}") from None
        except BaseException:  # cancelled: leave no session behind on the server
            with contextlib.suppress(Exception):
                await sio.disconnect()
            raise
        return sio, url, ack
    raise ClientError(f"join redirected more than {MAX_REDIRECTS} times")


@dataclass(kw_only=True)
class Membership:
    """One client's place in a class: who it joins as and where the class is.

    ``token`` becomes the participant's bound token after the first join, so a rejoin
    comes back as the same participant; ``base_url`` is the node that answered last and
    ``nodes`` the live nodes it named, where a rejoin looks when that node is gone.
    """

    base_url: str
    token: str
    name: str
    room: str | None = None
    nodes: list[str] = field(default_factory=list)

    def candidates(self) -> list[str]:
        """Where to (re)join: the node of the last join, then the other nodes it named."""
        return [self.base_url, *[n for n in self.nodes if n != self.base_url]]

    async def join(
        self,
        setup: Setup | None = None,
        *,
        url: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        call_timeout: float = CALL_TIMEOUT_S,
    ) -> tuple[socketio.AsyncClient, dict[str, Any]]:
        """Join through ``url`` (default: the node of the last join), following moves;
        returns the connected client and the ack. ``setup`` as for ``join_following``."""
        payload = join_payload(self.token, self.name, self.room)
        sio, self.base_url, ack = await join_following(
            url or self.base_url,
            payload,
            setup,
            connect_timeout=connect_timeout,
            call_timeout=call_timeout,
        )
        # Rejoins come back as the same participant.
        self.token = ack.get("token", self.token)
        self.nodes = node_urls(ack)
        return sio, ack


async def close_session(
    sio: socketio.AsyncClient,
    tasks: Iterable[asyncio.Task[Any] | None] = (),
    connections: Iterable[RTCPeerConnection | None] = (),
) -> None:
    """Leave the class, cancel ``tasks`` (offer answering…), close ``connections``, disconnect."""
    if sio.connected:
        with contextlib.suppress(Exception):
            await sio.call("leave", {"v": 1}, timeout=5)
    for task in tasks:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    for pc in connections:
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
    if sio.connected:
        with contextlib.suppress(Exception):
            await sio.disconnect()
