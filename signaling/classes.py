"""Creating a class: ``POST /api/rooms`` for a logged-in instructor, and the links;
``GET /api/classes``, the instructor's own classes with links minted for them then;
``POST /api/rooms/{room_id}/links``, new links for a class, replacing the earlier ones.

``create_class`` is the one place a class is stored and its host and join links signed,
for the REST endpoint and for ``pulseroom class create`` alike, so a link made from the
shell is the same as one made in the browser.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from storage.accounts import Role, UserRecord
from storage.audit import AuditLog
from storage.co_instructors import CoInstructors
from storage.store import RoomRecord, ScheduleRecord, Store

from .accounts_api import SESSION, actor_of
from .http import json_error
from .messages import CreateRoomIn
from .ratelimit import RateLimit
from .schedule import DEFAULT_DURATION_S, next_start
from .tokens import TokenSigner

# What a class id looks like (storage/store.py makes 12 hex digits; allow some room).
_ROOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Who may create classes; participants' accounts only keep their own data.
CREATORS: frozenset[Role] = frozenset({"instructor", "admin"})


def class_link(base_url: str, room_id: str, token: str) -> str:
    """A class link: the token rides in the fragment, so it never reaches server logs."""
    return f"{base_url}/r/{room_id}#t={token}"


async def create_class(
    store: Store, signer: TokenSigner, base_url: str, payload: CreateRoomIn, owner: UserRecord
) -> dict[str, Any]:
    """Store a class owned by ``owner`` (scheduled if ``payload`` says when); what it is,
    with host and join links (a weekly series': the same every week)."""
    schedule = None
    if payload.description or payload.starts_at is not None:
        schedule = ScheduleRecord(
            description=payload.description,
            starts_at=payload.starts_at,
            duration_s=payload.duration_s
            or (None if payload.starts_at is None else DEFAULT_DURATION_S),
            weekly=payload.weekly,
        )
    room = await store.create_room(payload.title, owner_id=owner.id, schedule=schedule)
    return {"room": room_summary(room), **links(signer, base_url, room)}


def room_summary(room: RoomRecord) -> dict[str, Any]:
    """A class as its instructor sees it: what, when, and whether it started."""
    return {
        "id": room.id, "title": room.title, "description": room.description,
        "starts_at": room.starts_at, "duration_s": room.duration_s, "weekly": room.weekly,
        "started_at": room.started_at, "series_id": room.series_id,
    }  # fmt: skip


def links(
    signer: TokenSigner, base_url: str, room: RoomRecord, co_instructor: str | None = None
) -> dict[str, Any]:
    """A class's host, join and board links, of its current link generation, and their
    expiry. Only the class's owner and co-instructors are ever given these (the board link
    shows everyone's heart rate on a studio screen: signaling/board.py); a co-instructor's
    host and board links name their account, honoured while they co-instruct."""
    gen, user = room.generation, co_instructor
    host_token, expires_at = signer.issue(room.id, "host", generation=gen, user_id=user)
    join_token, _ = signer.issue(room.id, "participant", generation=gen)
    board_token, _ = signer.issue(room.id, "board", generation=gen, user_id=user)
    return {
        "host_link": class_link(base_url, room.id, host_token),
        "join_link": class_link(base_url, room.id, join_token),
        "board_link": f"{base_url}/r/{room.id}/board#t={board_token}",
        "expires_at": expires_at,
    }


def summary_link(base_url: str, room_id: str, token: str) -> str:
    """The after-class page of a class (the token: a summary-only one)."""
    return f"{base_url}/r/{room_id}/summary#t={token}"


def creator_refusal(user: UserRecord | None) -> tuple[int, str, str] | None:
    """Why ``user`` may not create a class (status, code, message), or None if they may."""
    if user is None:
        return 401, "login_required", "log in as an instructor to create a class (/login)"
    if user.disabled:
        return 403, "account_disabled", "this account is disabled"
    if user.role not in CREATORS:
        return 403, "forbidden", "only instructors and admins create classes"
    return None


class ClassesApi:
    """``POST /api/rooms``: only a logged-in instructor (or admin) creates a class."""

    def __init__(
        self,
        store: Store,
        signer: TokenSigner,
        audit: AuditLog,
        public_url: str | None,
        rooms_per_minute: int = 10,
    ) -> None:
        self.audit = audit
        # Per client address. Behind a proxy every request shares the proxy's address:
        # generous enough for a gym's worth of instructors, not for a script.
        self._room_creation = RateLimit(rate=rooms_per_minute / 60, burst=rooms_per_minute)
        self.store = store
        self.signer = signer
        self.public_url = public_url
        self.co_instructors = CoInstructors(store.engine)

    def base_url(self, request: web.Request) -> str:
        """Where links point: the public URL, else the address the request came to (so a
        class created over the LAN gets LAN links)."""
        return self.public_url or str(request.url.origin())

    async def create_room(self, request: web.Request) -> web.Response:
        """Create a class; answer with its host and join links."""
        # The session was resolved (and its CSRF token checked) by AccountsApi.csrf_guard;
        # a disabled user's session does not resolve.
        session = request.get(SESSION)
        refusal = creator_refusal(None if session is None else session.user)
        if refusal is not None:
            return json_error(*refusal)
        assert session is not None
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
        created = await create_class(
            self.store, self.signer, self.base_url(request), payload, session.user
        )
        await self.audit.record(
            "class_created", actor_of(session.user), f"class {created['room']['id']}",
            request.remote, title=payload.title,
        )  # fmt: skip
        return web.json_response(created, status=201)

    async def list_classes(self, request: web.Request) -> web.Response:
        """The logged-in instructor's classes, those they created and those they
        co-instruct (``hosting``): those to come (or under way) first, the
        soonest first (``next_starts_at``), then the rest newest first. Links are minted
        now, for them: the host link of a class that has not ended is what their login
        gets them (not a bearer secret kept for hours in a chat app), and every class
        (every week's session of a series) has a summary link whose token reads the
        summary only; a series itself has none, and its sessions no links of their own."""
        session = request.get(SESSION)
        refusal = creator_refusal(None if session is None else session.user)
        if refusal is not None:
            return json_error(*refusal)
        assert session is not None
        base, now, user = self.base_url(request), time.time(), session.user.id
        own = await self.store.rooms_of(user)
        mine = {room.id for room, _ in own}
        hosted = [(r, n) for r, n in await self.co_instructors.rooms_of(user) if r.id not in mine]
        rows = own + hosted
        ended: dict[str, set[int]] = {}  # a series' weeks already ended
        for room, _ in rows:
            if room.series_id is not None and room.ended_at is not None:
                ended.setdefault(room.series_id, set()).add(room.occurrence or 0)
        upcoming: list[dict[str, Any]] = []
        past: list[dict[str, Any]] = []
        for room, joined in rows:
            co = None if room.id in mine else user  # links minted for a co-instructor
            entry: dict[str, Any] = {
                **room_summary(room), "created_at": room.created_at,
                "ended_at": room.ended_at, "participants": joined,
                "next_starts_at": next_start(room, now, frozenset(ended.get(room.id, ()))),
                "hosting": "creator" if co is None else "co_instructor",
            }  # fmt: skip
            if not room.weekly:
                summary_token, _ = self.signer.issue(room.id, "host", summary_only=True, user_id=co)
                entry["summary_link"] = summary_link(base, room.id, summary_token)
            if room.ended_at is None and room.series_id is None:
                entry.update(links(self.signer, base, room, co))
            (past if entry["next_starts_at"] is None else upcoming).append(entry)
        upcoming.sort(key=lambda e: (e["next_starts_at"], e["id"]))
        past.sort(key=lambda e: (-e["created_at"], e["id"]))  # the co-instructed among them
        return web.json_response({"classes": upcoming + past})

    async def replace_links(self, request: web.Request) -> web.Response:
        """New host and join links for a class the logged-in instructor created: every
        earlier link, and every rejoin and device token they gave, stops letting anyone
        in ("link_replaced"); the instructor's own sessions in the class carry on. Who is
        in the class now stays. The body, if any, is not read."""
        session = request.get(SESSION)
        refusal = creator_refusal(None if session is None else session.user)
        if refusal is not None:
            return json_error(*refusal)
        assert session is not None
        room_id = request.match_info["room_id"]
        # Only what a class id can be reaches the database (PostgreSQL refuses a NUL).
        room = await self.store.get_room(room_id) if _ROOM_ID.fullmatch(room_id) else None
        if room is None:
            return json_error(404, "room_not_found", "this class does not exist")
        if room.owner_id != session.user.id:
            return json_error(
                403, "forbidden", "only the instructor who created this class can replace its link"
            )
        if room.ended_at is not None:
            return json_error(409, "room_ended", "this class has ended: its links let no one in")
        if room.series_id is not None:
            return json_error(
                409, "series_session", "this is a week of a series: replace the series' links"
            )
        generation = await self.store.replace_links(room.id)
        if generation is None:  # ended meanwhile
            return json_error(409, "room_ended", "this class has ended: its links let no one in")
        await self.audit.record(
            "link_rotated", actor_of(session.user), f"class {room.id}", request.remote,
            generation=generation,
        )  # fmt: skip
        room = dataclasses.replace(room, generation=generation)
        return web.json_response(
            {
                "room": {"id": room.id, "title": room.title},
                **links(self.signer, self.base_url(request), room),
            }
        )

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints on ``app``."""
        app.router.add_post("/api/rooms", self.create_room)
        app.router.add_get("/api/classes", self.list_classes)
        app.router.add_post("/api/rooms/{room_id}/links", self.replace_links)
