"""Co-instructors over REST: the class's creator gives another instructor host rights.

``GET /api/rooms/{room_id}/co-instructors`` (the creator or a co-instructor),
``POST`` the same with ``{"email"}`` and ``DELETE …/co-instructors/{user_id}`` (the
creator only). A co-instructor finds the class in their own list (``GET /api/classes``)
with host links minted for them; those links name their account, so taking the rights
away refuses them at the next join or summary read (``host_revoked``) without replacing
the class's links for everyone else.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storage.accounts import AccountStore, normalize_email
from storage.audit import AuditLog
from storage.co_instructors import CoInstructors
from storage.store import RoomRecord, Store

from .accounts_api import SESSION, actor_of
from .http import json_error

HOST_REVOKED = "you no longer co-instruct this class: ask its instructor"
_ROOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a class id can be (storage/store.py)
_USER_ID = re.compile(r"[0-9a-f]{32}")  # what an account id is (storage/accounts.py)
HOSTS = frozenset({"instructor", "admin"})  # who can co-instruct: a class's hosts


class AddCoInstructorIn(BaseModel):
    """``POST /api/rooms/{room_id}/co-instructors``: whom to add, by address."""

    model_config = ConfigDict(extra="forbid", strict=True)
    email: str = Field(min_length=3, max_length=254)


class CoInstructorsApi:
    """The co-instructors of a class, managed by the instructor who created it."""

    def __init__(self, store: Store, accounts: AccountStore, audit: AuditLog) -> None:
        self.store = store
        self.accounts = accounts
        self.audit = audit
        self.hosts = CoInstructors(store.engine)

    async def _class_of(
        self, request: web.Request, *, creator_only: bool
    ) -> RoomRecord | web.Response:
        """The class of the URL if the logged-in account may manage (or, without
        ``creator_only``, see) its co-instructors; else the refusal to send."""
        session = request.get(SESSION)
        if session is None:
            return json_error(401, "login_required", "log in as the class's instructor (/login)")
        room_id = request.match_info["room_id"]
        room = await self.store.get_room(room_id) if _ROOM_ID.fullmatch(room_id) else None
        if room is None:
            return json_error(404, "room_not_found", "this class does not exist")
        if room.series_id is not None:
            return json_error(
                409, "series_session", "this is a week of a series: co-instruct the series"
            )
        user = session.user
        if room.owner_id == user.id:
            return room
        if not creator_only and await self.hosts.may_host(room.id, user.id):
            return room
        return json_error(403, "forbidden", "only the class's creator manages its co-instructors")

    async def _listing(self, room: RoomRecord) -> dict[str, Any]:
        owner = None if room.owner_id is None else await self.accounts.user_by_id(room.owner_id)
        return {
            "room": {"id": room.id, "title": room.title},
            "owner": None if owner is None else {"user_id": owner.id, "email": owner.email},
            "co_instructors": [
                {"user_id": c.user_id, "email": c.email, "added_at": c.added_at,
                 "disabled": c.disabled}
                for c in await self.hosts.of_class(room.id)
            ],
        }  # fmt: skip

    async def list(self, request: web.Request) -> web.Response:
        """Who hosts the class besides its creator."""
        room = await self._class_of(request, creator_only=False)
        if isinstance(room, web.Response):
            return room
        return web.json_response(await self._listing(room))

    async def add(self, request: web.Request) -> web.Response:
        """Give an instructor's account host rights in the class."""
        room = await self._class_of(request, creator_only=True)
        if isinstance(room, web.Response):
            return room
        if request.content_type != "application/json":
            return json_error(415, "bad_request", 'send JSON: {"email": "..."}')
        try:
            payload = AddCoInstructorIn.model_validate(await request.json())
        except (ValueError, RecursionError, ValidationError):
            return json_error(400, "bad_request", 'send {"email": "an instructor\'s address"}')
        user = await self.accounts.user_by_email(normalize_email(payload.email))
        if user is None:
            return json_error(
                404, "user_not_found", "no account has this address: ask an admin to invite them"
            )
        if user.disabled or user.role not in HOSTS:
            return json_error(
                409, "not_instructor", "only an enabled instructor's account can co-instruct"
            )
        if user.id == room.owner_id:
            return json_error(409, "not_instructor", "you created this class: you host it already")
        session = request[SESSION]
        if await self.hosts.add(room.id, user.id):
            await self.audit.record(
                "co_instructor_added", actor_of(session.user), f"class {room.id}",
                request.remote, co_instructor=user.email,
            )  # fmt: skip
        return web.json_response(await self._listing(room))

    async def remove(self, request: web.Request) -> web.Response:
        """Take a co-instructor's host rights away: their links stop letting them in."""
        room = await self._class_of(request, creator_only=True)
        if isinstance(room, web.Response):
            return room
        user_id = request.match_info["user_id"]
        if not _USER_ID.fullmatch(user_id) or not await self.hosts.remove(room.id, user_id):
            return json_error(404, "user_not_found", "this account does not co-instruct the class")
        user = await self.accounts.user_by_id(user_id)
        await self.audit.record(
            "co_instructor_removed", actor_of(request[SESSION].user), f"class {room.id}",
            request.remote, co_instructor=user_id if user is None else user.email,
        )  # fmt: skip
        return web.json_response(await self._listing(room))

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints on ``app``."""
        app.router.add_get("/api/rooms/{room_id}/co-instructors", self.list)
        app.router.add_post("/api/rooms/{room_id}/co-instructors", self.add)
        app.router.add_delete("/api/rooms/{room_id}/co-instructors/{user_id}", self.remove)
