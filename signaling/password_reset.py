"""``POST /api/auth/forgot``: someone who forgot their password asks for a reset link by
mail. Only when the server sends mail (``PULSEROOM_SMTP_URL``); without it the admin
issues the link (``/admin`` or ``pulseroom user reset EMAIL``).

The answer is the same whether or not the address has an account (no one learns who has
one), and requests are throttled per address and per account, so the endpoint neither
floods an inbox nor serves as a mail cannon.
"""

from __future__ import annotations

import logging
import math

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from storage.accounts import LINK_TTL, AccountStore, LinkPurpose
from storage.audit import Actor, AuditLog

from .accounts_api import Email, page_link, read_body
from .http import WEB_DIR, json_error
from .login_throttle import FailureWindow
from .mail import Mailer, mail_link

logger = logging.getLogger(__name__)

SENT = "If an account has this address, a link to set a new password is on its way."


class ForgotIn(BaseModel):
    """``POST /api/auth/forgot``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    email: Email


class PasswordResetApi:
    """Reset links by mail, on request."""

    def __init__(
        self, accounts: AccountStore, audit: AuditLog, mailer: Mailer | None, base_url: str | None
    ) -> None:
        self.accounts = accounts
        self.audit = audit
        self.mailer = mailer
        self.base_url = base_url
        # Every request counts (there is no "success" to forgive): 3 mails an hour to one
        # account, 10 requests an hour from one client address.
        self._per_account = FailureWindow(limit=3, window=3600)
        self._per_address = FailureWindow(limit=10, window=3600)

    async def forgot(self, request: web.Request) -> web.Response:
        """Mail a reset link to the account of the address, if there is one."""
        if self.mailer is None:
            return json_error(
                409, "mail_off", "this server sends no mail: ask your admin for a password link"
            )
        payload = await read_body(request, ForgotIn)
        if isinstance(payload, web.Response):
            return payload
        address = request.remote or "unknown"
        wait = self._per_address.attempt(address) or self._per_account.attempt(payload.email)
        if wait:
            response = json_error(429, "rate_limited", "too many requests: try again later")
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        user = await self.accounts.user_by_email(payload.email)
        if user is not None and not user.disabled:
            purpose: LinkPurpose = "reset" if user.has_password else "invite"
            token = await self.accounts.issue_link(purpose, user.id)
            link = page_link(self.base_url or str(request.url.origin()), "password", token)
            mailed = await mail_link(
                self.mailer, user.email, purpose, link, LINK_TTL[purpose] // 3600
            )
            await self.audit.record(
                "password_link", Actor(user.email, user.id), user.email, address,
                by="mail request", emailed=bool(mailed["emailed"]),
            )  # fmt: skip
        else:
            logger.info("password reset asked for %s, which has no enabled account", payload.email)
        return web.json_response({"ok": True, "message": SENT}, status=202)

    async def available(self, _request: web.Request) -> web.Response:
        """Whether this server mails reset links: the login page offers one if so."""
        return web.json_response({"available": self.mailer is not None})

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints and the page on ``app``."""

        async def forgot_page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "account.html")

        app.router.add_get("/forgot", forgot_page)
        app.router.add_get("/api/auth/forgot", self.available)
        app.router.add_post("/api/auth/forgot", self.forgot)
