"""REST basics and the browser pages: JSON errors, stats, serving the client."""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from sfu.backend import MediaBackend

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
logger = logging.getLogger(__name__)


def download_name(title: str, started_at: float, suffix: str) -> str:
    """``pulseroom-2026-12-07-morning-spin-SUFFIX``: a downloaded file's name, with the
    class's date and title (file-safe), so a folder of them sorts and reads."""
    day = datetime.datetime.fromtimestamp(started_at, datetime.UTC).strftime("%Y-%m-%d")
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "class"
    return f"pulseroom-{day}-{slug}{suffix}"


def attachment(name: str) -> dict[str, str]:
    """The header that makes a browser save a response as ``name``."""
    return {"Content-Disposition": f'attachment; filename="{name}"'}


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
    """``GET /api/stats`` and the pages (creating a class: ``signaling/classes.py``)."""

    def __init__(
        self,
        sfu: MediaBackend,
        heart_rate_stats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.heart_rate_stats = heart_rate_stats
        self.sfu = sfu

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
        # The studio TV's board: the class page, read-only (web/room.js, signaling/board.py).
        app.router.add_get("/r/{room_id}/board", room_page)

        async def replay_page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "replay.html")

        app.router.add_get("/r/{room_id}/summary", summary_page)
        app.router.add_get("/r/{room_id}/replay", replay_page)
        app.router.add_get("/api/stats", self.stats)
        app.router.add_static("/static/", WEB_DIR, show_index=False)
