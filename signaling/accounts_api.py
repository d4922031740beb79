"""Accounts over REST: log in and out, who am I, set a password by link, first-run setup.

A login is a session cookie (HttpOnly, SameSite=Lax, Secure when the public URL is
https) holding a random secret; the database keeps only its hash. Every state-changing
``/api/`` request that carries a live session cookie must also carry the session's CSRF
token in ``X-CSRF-Token`` (``csrf_guard``): a page of another site can make the browser
send the cookie, but cannot read the token.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from storage.accounts import (
    SESSION_TTL,
    AccountError,
    AccountStore,
    SessionRecord,
    UserRecord,
    normalize_email,
)
from storage.audit import Actor, AuditLog
from storage.passwords import MAX_LENGTH, MIN_LENGTH

from .http import WEB_DIR, json_error
from .login_throttle import FailureWindow

logger = logging.getLogger(__name__)

SESSION_COOKIE = "pulseroom_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION = web.RequestKey("account_session", SessionRecord)
SECRET = web.RequestKey("account_secret", str)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# AccountError reasons as HTTP: status and protocol error code (docs/protocol.md).
_REFUSALS: dict[str, tuple[int, str]] = {
    "email_taken": (409, "email_taken"),
    "invalid_link": (403, "invalid_link"),
    "setup_done": (409, "setup_done"),
    "bad_credentials": (401, "bad_credentials"),
    "account_disabled": (403, "account_disabled"),
    "last_admin": (409, "last_admin"),
}


def page_link(base_url: str, page: str, token: str) -> str:
    """A one-time link to ``/setup`` or ``/password``: the token rides in the fragment,
    like a class link's, so it never reaches server or proxy logs."""
    return f"{base_url}/{page}#token={token}"


def _check_email(value: str) -> str:
    value = normalize_email(value)
    if not _EMAIL.match(value):
        raise ValueError("not an email address")
    return value


def valid_email(value: str) -> str | None:
    """``value`` as stored (trimmed, lower case) if it looks like an address, else None."""
    try:
        return _check_email(value) if len(value) <= 254 else None
    except ValueError:
        return None


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_check_email)]
NewPassword = Annotated[str, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)]
Token = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LoginIn(_Strict):
    """``POST /api/auth/login`` body."""

    email: Email
    password: Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]


class SetupIn(_Strict):
    """``POST /api/auth/setup`` body: the setup link's token and the first admin."""

    token: Token
    email: Email
    password: NewPassword


class PasswordIn(_Strict):
    """``POST /api/auth/password`` body: an invitation or reset link's token."""

    token: Token
    password: NewPassword


Body = TypeVar("Body", bound=BaseModel)


async def read_body(request: web.Request, model: type[Body]) -> Body | web.Response:
    """The request's JSON body as ``model``, or the 4xx answer that says what is wrong."""
    if request.content_type != "application/json":
        return json_error(415, "bad_request", "send a JSON body (Content-Type: application/json)")
    try:
        body: Any = await request.json()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        return json_error(400, "bad_request", "the body is not valid JSON")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = first["msg"]
        if first["loc"] == ("password",) and first["type"] == "string_too_short":
            message = f"a password needs at least {MIN_LENGTH} characters"
        return json_error(400, "bad_request", f"{where}: {message}")


def actor_of(user: UserRecord) -> Actor:
    """An account as the audit log names it."""
    return Actor(user.email, user.id)


def refusal(error: AccountError) -> web.Response:
    """An ``AccountError`` as its HTTP answer."""
    status, code = _REFUSALS[error.reason]
    return json_error(status, code, error.message)


def set_session_cookie(response: web.Response, secret: str, secure: bool) -> web.Response:
    """``response`` with the login session's cookie (a password or single sign-on login)."""
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=SESSION_TTL,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=secure,
    )
    return response


def session_answer(session: SessionRecord, status: int = 200) -> web.Response:
    """Who is logged in, and the CSRF token their page sends with state changes."""
    user = session.user
    return web.json_response(
        {"email": user.email, "role": user.role, "csrf_token": session.csrf_token},
        status=status,
    )


class AccountsApi:
    """``/api/auth/*`` and the CSRF check on every state-changing ``/api/`` request."""

    def __init__(
        self,
        accounts: AccountStore,
        audit: AuditLog,
        secure_cookies: bool,
        account_failures: int = 5,
        address_failures: int = 20,
        window: float = 15 * 60,
    ) -> None:
        self.accounts = accounts
        self.audit = audit
        self.secure_cookies = secure_cookies
        self._per_account = FailureWindow(account_failures, window)
        # Higher than per account: behind the TLS proxy every login shares one address.
        self._per_address = FailureWindow(address_failures, window)

    @web.middleware
    async def csrf_guard(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Resolve the session cookie; refuse a state change without its CSRF token."""
        secret = request.cookies.get(SESSION_COOKIE)
        if secret and request.path.startswith("/api/"):
            session = await self.accounts.session(secret)
            if session is not None:
                if request.method not in _SAFE_METHODS:
                    sent = request.headers.get(CSRF_HEADER, "")
                    if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
                        return json_error(
                            403, "csrf_failed", f"logged in: send the {CSRF_HEADER} header"
                        )
                request[SESSION] = session
                request[SECRET] = secret
        return await handler(request)

    def _logged_in(self, response: web.Response, secret: str) -> web.Response:
        return set_session_cookie(response, secret, self.secure_cookies)

    async def login(self, request: web.Request) -> web.Response:
        """Check the credentials; start a session (the cookie) on success."""
        payload = await read_body(request, LoginIn)
        if isinstance(payload, web.Response):
            return payload
        address = request.remote or "unknown"
        account_wait = self._per_account.attempt(payload.email)
        address_wait = self._per_address.attempt(address)
        if account_wait or address_wait:
            # Refused untried: take back what attempt() counted where it allowed it.
            if not account_wait:
                self._per_account.forgive(payload.email)
            if not address_wait:
                self._per_address.forgive(address)
            return self._throttled(max(account_wait, address_wait))
        try:
            user = await self.accounts.authenticate(payload.email, payload.password)
        except AccountError as exc:
            logger.info("failed login for %s from %s: %s", payload.email, address, exc.reason)
            await self.audit.record(
                "login_failed", Actor(payload.email), payload.email, address, reason=exc.reason
            )
            return refusal(exc)
        self._per_account.forgive(payload.email, everything=True)
        self._per_address.forgive(address)
        secret, session = await self.accounts.create_session(user)
        logger.info("login: %s from %s", user.email, address)
        await self.audit.record("login", actor_of(user), user.email, address)
        return self._logged_in(session_answer(session), secret)

    @staticmethod
    def _throttled(wait: float) -> web.Response:
        response = json_error(
            429, "rate_limited", "too many failed logins: wait before trying again"
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """End the session of the cookie (CSRF-checked like any state change)."""
        if SECRET not in request:
            return json_error(401, "unauthorized", "not logged in")
        await self.accounts.end_session(request[SECRET])
        user = request[SESSION].user
        await self.audit.record("logout", actor_of(user), user.email, request.remote)
        response = web.json_response({"ok": True})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.Response:
        """Who is logged in, and the CSRF token their page sends with state changes."""
        if SESSION not in request:
            return json_error(401, "unauthorized", "not logged in")
        return session_answer(request[SESSION])

    async def set_password(self, request: web.Request) -> web.Response:
        """Use an invitation or reset link: set the password (the user then logs in)."""
        payload = await read_body(request, PasswordIn)
        if isinstance(payload, web.Response):
            return payload
        try:
            user = await self.accounts.set_password(payload.token, payload.password)
        except AccountError as exc:
            return refusal(exc)
        logger.info("password set by link: %s", user.email)
        await self.audit.record("password_set", actor_of(user), user.email, request.remote)
        return web.json_response({"email": user.email, "role": user.role})

    async def setup(self, request: web.Request) -> web.Response:
        """Use the first-run setup link: create the first admin and log them in."""
        payload = await read_body(request, SetupIn)
        if isinstance(payload, web.Response):
            return payload
        try:
            user = await self.accounts.setup_admin(payload.token, payload.email, payload.password)
        except AccountError as exc:
            return refusal(exc)
        logger.warning("first admin created by the setup link: %s", user.email)
        await self.audit.record("setup", actor_of(user), user.email, request.remote)
        secret, session = await self.accounts.create_session(user)
        return self._logged_in(session_answer(session, status=201), secret)

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints, their pages and the CSRF check on ``app``."""

        async def account_page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "account.html")

        app.middlewares.append(self.csrf_guard)
        app.router.add_get("/setup", account_page)
        app.router.add_get("/password", account_page)
        app.router.add_get("/login", account_page)
        app.router.add_post("/api/auth/login", self.login)
        app.router.add_post("/api/auth/logout", self.logout)
        app.router.add_get("/api/auth/me", self.me)
        app.router.add_post("/api/auth/password", self.set_password)
        app.router.add_post("/api/auth/setup", self.setup)
