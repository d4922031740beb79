"""Joining a class over Socket.IO, shared by the bot and the heart-rate sender.

``call`` emits a protocol event and checks its ack; ``join_following`` connects and
joins on the node that holds the class, following ``moved`` answers
(docs/protocol.md, "Several nodes").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import socketio

MAX_REDIRECTS = 3  # `moved` answers followed for one join
# Refusals that rejoining cannot fix.
FINAL_CODES = frozenset(
    {"invalid_token", "token_expired", "wrong_room", "room_ended", "room_not_found", "not_found"}
)


class BotError(Exception):
    """The bot could not join or run; the message says why (``code``: the server's).

    ``url``: with code ``moved``, the node that holds the class.
    """

    def __init__(self, message: str, code: str | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.url = url


async def call(sio: socketio.AsyncClient, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Emit a protocol event and return its ack, raising BotError on a refusal."""
    ack = await sio.call(event, {"v": 1, **payload}, timeout=20)
    if not isinstance(ack, dict) or not ack.get("ok"):
        error = (ack or {}).get("error", {}) if isinstance(ack, dict) else {}
        code = error.get("code")
        url = error.get("url") if isinstance(error.get("url"), str) else None
        raise BotError(f"{event} refused: {code}: {error.get('message')}", code, url)
    return ack


async def join_following(
    url: str, payload: dict[str, Any], setup: Callable[[socketio.AsyncClient], None] | None = None
) -> tuple[socketio.AsyncClient, str, dict[str, Any]]:
    """Connect to ``url`` and ``join``, following ``moved`` answers to the class's node.

    ``setup(sio)`` registers handlers on each new client before it connects. Returns the
    connected client, the node's URL and the join ack; raises BotError (``code`` set when
    the server refused, None when no node could be reached).
    """
    for _ in range(MAX_REDIRECTS + 1):
        sio = socketio.AsyncClient(reconnection=False)
        if setup is not None:
            setup(sio)
        try:
            await sio.connect(url, transports=["websocket"], wait_timeout=10)
        except socketio.exceptions.ConnectionError as exc:
            # python-engineio keeps the HTTP session of a failed connect open.
            http = getattr(sio.eio, "http", None)
            if http is not None and not http.closed:
                await http.close()
            raise BotError(f"cannot reach {url}: {exc}") from None
        try:
            ack = await call(sio, "join", payload)
        except BotError as exc:
            with contextlib.suppress(Exception):
                await sio.disconnect()
            if exc.code == "moved" and exc.url:
                url = exc.url.rstrip("/")
                continue
            raise
        except Exception as exc:  # the connection dropped or timed out mid-join
            with contextlib.suppress(Exception):
                await sio.disconnect()
            raise BotError(f"join at {url} failed: {exc.__class__.__name__}: {exc}") from None
        except BaseException:  # cancelled: leave no session behind on the server
            with contextlib.suppress(Exception):
                await sio.disconnect()
            raise
        return sio, url, ack
    raise BotError(f"join redirected more than {MAX_REDIRECTS} times")


def parse_link(link: str) -> tuple[str, str, str]:
    """``(base_url, room_id, token)`` from a class link ``…/r/ROOM#t=TOKEN``."""
    parts = urlsplit(link)
    path = parts.path.rstrip("/").split("/")
    if parts.scheme not in ("http", "https") or len(path) < 2 or path[-2] != "r":
        raise BotError(f"not a class link: {link!r} (expected …/r/ROOM#t=TOKEN)")
    fragment = dict(p.split("=", 1) for p in parts.fragment.split("&") if "=" in p)
    token = fragment.get("t")
    if not token:
        raise BotError("the link has no token (#t=…)")
    prefix = "/".join(path[:-2])
    return f"{parts.scheme}://{parts.netloc}{prefix}", path[-1], token
