"""docs/protocol.md without I/O: links, payloads, acknowledgements, refusals.

Every client→server event carries ``"v": 1`` and is acknowledged with ``{"ok": true,
…}`` or ``{"ok": false, "error": {"code", "message"}}``; ``call`` sends one through
any Socket.IO client with an awaitable ``call`` (python-socketio's, or the benchmarks'
light one) and turns a refusal into ``ClientError``.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

VERSION = 1
CALL_TIMEOUT_S = 20.0
MAX_REDIRECTS = 3  # `moved` answers followed for one join
# Refusals that rejoining cannot fix.
FINAL_CODES = frozenset(
    {"invalid_token", "token_expired", "wrong_room", "room_ended", "room_not_found", "not_found"}
)


class ClientError(Exception):
    """A client could not join or go on; the message says why (``code``: the server's).

    ``url``: with code ``moved``, the node that holds the class.
    """

    def __init__(self, message: str, code: str | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.url = url


class Caller(Protocol):
    """A Socket.IO client that emits an event and returns its acknowledgement."""

    async def call(self, event: str, data: Any, timeout: float = ...) -> Any:
        """Emit ``event`` with ``data`` and wait for the ack."""


def checked(event: str, ack: Any) -> dict[str, Any]:
    """``ack`` if it says ``ok``; else the refusal as ``ClientError``."""
    if not isinstance(ack, dict) or not ack.get("ok"):
        error = ack.get("error") if isinstance(ack, dict) else None
        if not isinstance(error, dict):
            error = {}
        code = error.get("code")
        url = error.get("url") if isinstance(error.get("url"), str) else None
        raise ClientError(f"{event} refused: {code}: {error.get('message')}", code, url)
    return ack


async def call(
    sio: Caller, event: str, payload: dict[str, Any], timeout: float = CALL_TIMEOUT_S
) -> dict[str, Any]:
    """Emit a protocol event (``v`` added) and return its ack, raising ClientError on a refusal."""
    return checked(event, await sio.call(event, {"v": VERSION, **payload}, timeout=timeout))


def join_payload(token: str, name: str, room: str | None) -> dict[str, Any]:
    """The ``join`` event's payload (without ``v``, which ``call`` adds)."""
    return {"token": token, "name": name, "room": room}


def node_urls(ack: dict[str, Any]) -> list[str]:
    """The live nodes a join ack names (none without several nodes), answering node first."""
    return [str(n).rstrip("/") for n in ack.get("nodes", [])]


def offer_owners(offer: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``mid -> (publisher id, kind)`` for the active m-lines of a ``subscribe_offer``."""
    return {t["mid"]: (t["participant_id"], t["kind"]) for t in offer.get("tracks", [])}


def parse_link(link: str) -> tuple[str, str, str]:
    """``(base_url, room_id, token)`` from a class link ``…/r/ROOM#t=TOKEN``."""
    parts = urlsplit(link)
    path = parts.path.rstrip("/").split("/")
    if parts.scheme not in ("http", "https") or len(path) < 2 or path[-2] != "r":
        raise ClientError(f"not a class link: {link!r} (expected …/r/ROOM#t=TOKEN)")
    fragment = dict(p.split("=", 1) for p in parts.fragment.split("&") if "=" in p)
    token = fragment.get("t")
    if not token:
        raise ClientError("the link has no token (#t=…)")
    prefix = "/".join(path[:-2])
    return f"{parts.scheme}://{parts.netloc}{prefix}", path[-1], token
