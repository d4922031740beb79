"""REST endpoints and the browser pages: create a class, serve the client."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from sfu.backend import MediaBackend
from storage.store import Store

from .messages import CreateRoomIn
from .ratelimit import RateLimit
from .tokens import TokenSigner

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
logger = logging.getLogger(__name__)


def json_error(status: int, code: str, message: str) -> web.Response:
    """The REST error body of docs/protocol.md."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Under ``/api/``, aiohttp's own refusals (404, 405, 413, ...) are JSON errors too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        code = "not_found" if exc.status == 404 else "bad_request"
        return json_error(exc.status, code, exc.reason)
    except Exception as exc:
        if request.path.startswith("/api/"):
            logger.exception("%s %s failed", request.method, request.path)
            return json_error(500, "internal", "the server could not handle this request")
        if isinstance(exc, OSError) and request.path.startswith("/static/"):
            raise web.HTTPNotFound() from None  # a name the file system refuses (too long)
        raise


class RoomsApi:
    """``POST /api/rooms``, ``GET /api/stats`` and the static pages."""

    def __init__(
        self,
        store: Store,
        sfu: MediaBackend,
        signer: TokenSigner,
        public_url: str | None,
        heart_rate_stats: Callable[[], dict[str, Any]] | None = None,
        rooms_per_minute: int = 10,
    ) -> None:
        self.heart_rate_stats = heart_rate_stats
        # Per client address. Behind a proxy every request shares the proxy's address:
        # generous enough for a gym's worth of instructors, not for a script.
        self._room_creation = RateLimit(rate=rooms_per_minute / 60, burst=rooms_per_minute)
        self.store = store
        self.sfu = sfu
        self.signer = signer
        self.public_url = public_url

    def link(self, request: web.Request, room_id: str, token: str) -> str:
        """A class link: the token rides in the fragment, so it never reaches server logs.

        Without a configured public URL, links use the address the request came to, so
        a class created over the LAN gets LAN links.
        """
        base = self.public_url or str(request.url.origin())
        return f"{base}/r/{room_id}#t={token}"

    async def create_room(self, request: web.Request) -> web.Response:
        """Create a class; answer with its host and join links."""
        if not self._room_creation.allow(request.remote or "unknown"):
            return json_error(
                429, "rate_limited", "too many classes created: try again in a minute"
            )
        if request.content_type != "application/json":
            return json_error(415, "bad_request", 'send JSON: {"title": "..."}')
        try:
            body: Any = await request.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            return json_error(400, "bad_request", "the body is not valid JSON")
        try:
            payload = CreateRoomIn.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return json_error(400, "bad_request", f"{where}: {first['msg']}")
        room = await self.store.create_room(payload.title)
        host_token, expires_at = self.signer.issue(room.id, "host")
        join_token, _ = self.signer.issue(room.id, "participant")
        return web.json_response(
            {
                "room": {"id": room.id, "title": room.title},
                "host_link": self.link(request, room.id, host_token),
                "join_link": self.link(request, room.id, join_token),
                "expires_at": expires_at,
            },
            status=201,
        )

    async def stats(self, _request: web.Request) -> web.Response:
        """Aggregate counters (no names, no ids)."""
        stats = await self.sfu.stats()
        if self.heart_rate_stats is not None:
            stats["heart_rate"] = self.heart_rate_stats()
        return web.json_response(stats)

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints and pages on ``app``."""

        async def home(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "index.html")

        async def room_page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "room.html")

        app.router.add_get("/", home)

        async def summary_page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "summary.html")

        app.router.add_get("/r/{room_id}", room_page)
        app.router.add_get("/r/{room_id}/summary", summary_page)
        app.router.add_post("/api/rooms", self.create_room)
        app.router.add_get("/api/stats", self.stats)
        app.router.add_static("/static/", WEB_DIR, show_index=False)
