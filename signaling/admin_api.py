"""The admin's endpoints: accounts (invite, disable, role, password link) and the audit
log, for a logged-in admin only; the ``/admin`` page uses them.

Every change is written to the audit log with the admin who made it and their address.
Links are shown once, to the admin who asked, and never logged or audited.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storage.accounts import LINK_TTL, AccountError, AccountStore, LinkPurpose, Role, UserRecord
from storage.audit import ACTIONS, MAX_PAGE, Action, AuditLog

from .accounts_api import SESSION, Email, actor_of, page_link, read_body, refusal
from .http import WEB_DIR, json_error
from .mail import Mailer, mail_link


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InviteIn(_Strict):
    """``POST /api/admin/users``: who, and in which role."""

    email: Email
    role: Role = "instructor"


class UserChangeIn(_Strict):
    """``PATCH /api/admin/users/{id}``: a new role, enabled or disabled (at least one)."""

    role: Role | None = None
    disabled: bool | None = None


class AuditQuery(BaseModel):
    """``GET /api/admin/audit`` query: a page of entries older than ``before``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    before: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    action: str | None = None


def user_json(user: UserRecord) -> dict[str, Any]:
    """A user as the admin sees one (never a password hash)."""
    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "disabled": user.disabled,
        "has_password": user.has_password,
        "created_at": user.created_at,
    }


class AdminApi:
    """``/api/admin/*`` and the ``/admin`` page."""

    def __init__(
        self,
        accounts: AccountStore,
        audit: AuditLog,
        public_url: str | None,
        mailer: Mailer | None = None,
    ) -> None:
        self.accounts = accounts
        self.audit = audit
        self.public_url = public_url
        self.mailer = mailer  # set: links also go to the person by mail

    @staticmethod
    def _admin(request: web.Request) -> UserRecord | web.Response:
        session = request.get(SESSION)
        if session is None:
            return json_error(401, "unauthorized", "log in as an admin (/login)")
        if session.user.role != "admin":
            return json_error(403, "forbidden", "only admins manage accounts and read the audit")
        user: UserRecord = session.user
        return user

    def _base_url(self, request: web.Request) -> str:
        return self.public_url or str(request.url.origin())

    async def users(self, request: web.Request) -> web.Response:
        """Every account."""
        admin = self._admin(request)
        if isinstance(admin, web.Response):
            return admin
        return web.json_response({"users": [user_json(u) for u in await self.accounts.users()]})

    async def invite(self, request: web.Request) -> web.Response:
        """A new account and its one-time set-password link (shown to this admin only)."""
        admin = self._admin(request)
        if isinstance(admin, web.Response):
            return admin
        payload = await read_body(request, InviteIn)
        if isinstance(payload, web.Response):
            return payload
        try:
            user = await self.accounts.create_user(payload.email, payload.role)
        except AccountError as exc:
            return refusal(exc)
        token = await self.accounts.issue_link("invite", user.id)
        link = page_link(self._base_url(request), "password", token)
        mailed = await mail_link(
            self.mailer, user.email, "invite", link, LINK_TTL["invite"] // 3600
        )
        await self.audit.record(
            "user_added", actor_of(admin), user.email, request.remote, role=user.role,
            emailed=bool(mailed["emailed"]),
        )  # fmt: skip
        return web.json_response(
            {
                "user": user_json(user), "link": link,
                "link_expires_in": LINK_TTL["invite"], **mailed,
            },
            status=201,
        )  # fmt: skip

    async def _target(self, request: web.Request) -> UserRecord | web.Response:
        user = await self.accounts.user_by_id(request.match_info["user_id"])
        if user is None:
            return json_error(404, "not_found", "no such user")
        return user

    async def change(self, request: web.Request) -> web.Response:
        """Change a user's role or enable/disable them (disabling logs them out)."""
        admin = self._admin(request)
        if isinstance(admin, web.Response):
            return admin
        payload = await read_body(request, UserChangeIn)
        if isinstance(payload, web.Response):
            return payload
        if payload.role is None and payload.disabled is None:
            return json_error(400, "bad_request", "send role, disabled or both")
        user = await self._target(request)
        if isinstance(user, web.Response):
            return user
        try:
            if payload.role is not None and payload.role != user.role:
                changed = await self.accounts.set_role(user.email, payload.role)
                assert changed is not None  # users are never deleted
                await self.audit.record(
                    "role_changed", actor_of(admin), user.email, request.remote,
                    before=user.role, after=payload.role,
                )  # fmt: skip
                user = changed
            if payload.disabled is not None and payload.disabled != user.disabled:
                changed = await self.accounts.set_disabled(user.email, payload.disabled)
                assert changed is not None
                action: Action = "user_disabled" if payload.disabled else "user_enabled"
                await self.audit.record(action, actor_of(admin), user.email, request.remote)
                user = changed
        except AccountError as exc:
            return refusal(exc)
        return web.json_response({"user": user_json(user)})

    async def password_link(self, request: web.Request) -> web.Response:
        """A new one-time password link for a user (their earlier links stop working)."""
        admin = self._admin(request)
        if isinstance(admin, web.Response):
            return admin
        user = await self._target(request)
        if isinstance(user, web.Response):
            return user
        if user.disabled:
            return json_error(409, "account_disabled", "enable the account first")
        purpose: LinkPurpose = "reset" if user.has_password else "invite"
        token = await self.accounts.issue_link(purpose, user.id)
        link = page_link(self._base_url(request), "password", token)
        mailed = await mail_link(self.mailer, user.email, purpose, link, LINK_TTL[purpose] // 3600)
        await self.audit.record(
            "password_link", actor_of(admin), user.email, request.remote,
            emailed=bool(mailed["emailed"]),
        )  # fmt: skip
        return web.json_response({"link": link, "link_expires_in": LINK_TTL[purpose], **mailed})

    async def audit_log(self, request: web.Request) -> web.Response:
        """A page of the audit log, newest first (``before``: the last ``at`` seen)."""
        admin = self._admin(request)
        if isinstance(admin, web.Response):
            return admin
        try:
            query = AuditQuery.model_validate(dict(request.query))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "query"
            return json_error(400, "bad_request", f"{where}: {first['msg']}")
        if query.action is not None and query.action not in ACTIONS:
            return json_error(400, "bad_request", f"action: one of {', '.join(ACTIONS)}")
        entries = await self.audit.entries(query.limit, query.before, query.action)
        return web.json_response({"entries": [e.as_json() for e in entries]})

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints and the page on ``app``."""

        async def admin_page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "admin.html")

        app.router.add_get("/admin", admin_page)
        app.router.add_get("/api/admin/users", self.users)
        app.router.add_post("/api/admin/users", self.invite)
        app.router.add_patch("/api/admin/users/{user_id}", self.change)
        app.router.add_post("/api/admin/users/{user_id}/password-link", self.password_link)
        app.router.add_get("/api/admin/audit", self.audit_log)
