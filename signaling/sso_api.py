"""Single sign-on over REST: ``/api/auth/sso``, ``/api/auth/oidc/start`` and its callback.

The browser goes to ``start``, which sends it to the provider with a fresh ``state``,
``nonce`` and PKCE challenge; their values ride in a signed, HttpOnly cookie (ten
minutes, path ``/api/auth/oidc``), so no server keeps anything between the two requests
and any node of a cluster can finish the sign-in. The provider sends the browser back to
the callback, which checks ``state`` against that cookie, exchanges the code and checks
the ID token (signaling/oidc.py), then logs the browser in with the same session cookie
as a password login. Which account: docs/self-hosting.md, "Single sign-on".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import time
from typing import Annotated
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storage.accounts import AccountError, AccountStore, Role, SsoMatch, UserRecord
from storage.audit import Actor, AuditLog

from .accounts_api import actor_of, set_session_cookie, valid_email
from .http import json_error
from .oidc import Flow, Identity, OidcClient, OidcError

logger = logging.getLogger(__name__)

FLOW_COOKIE = "pulseroom_sso"
FLOW_PATH = "/api/auth/oidc"
CALLBACK_PATH = f"{FLOW_PATH}/callback"
FLOW_TTL = 600  # seconds a sign-in at the provider may take
_ACCOUNT_REFUSALS = {"account_disabled": 403, "email_taken": 409, "sso_conflict": 409}
_Text = Annotated[str, Field(max_length=2048)]


class CallbackQuery(BaseModel):
    """The provider's answer, in the callback's query (RFC 6749, 4.1.2 and 4.1.2.1)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    state: _Text = ""
    code: _Text = ""
    error: Annotated[str, Field(max_length=200)] = ""
    iss: _Text = ""


class _FlowCookie(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    state: str
    nonce: str
    verifier: str
    exp: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FlowSealer:
    """A ``Flow`` as a cookie value: its JSON and an HMAC-SHA256 of it, with an expiry."""

    def __init__(self, server_secret: bytes) -> None:
        # Its own key, so that no other signed thing (a class link) can pass for a flow.
        self._key = hmac.new(server_secret, b"pulseroom sso flow", hashlib.sha256).digest()

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def seal(self, flow: Flow) -> str:
        """The cookie value for ``flow``, valid ``FLOW_TTL`` seconds."""
        fields = {"state": flow.state, "nonce": flow.nonce, "verifier": flow.verifier}
        body = _b64(json.dumps({**fields, "exp": time.time() + FLOW_TTL}).encode())
        return f"{body}.{self._mac(body)}"

    def open(self, value: str | None) -> Flow | None:
        """The flow of a cookie value this server sealed and that has not expired."""
        body, _, mac = (value or "").partition(".")
        if not body or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            sealed = _FlowCookie.model_validate_json(raw)
        except (ValueError, ValidationError):
            return None
        if sealed.exp < time.time():
            return None
        return Flow(sealed.state, sealed.nonce, sealed.verifier)


class SsoApi:
    """The SSO routes; with ``client`` None (not configured) they say so (404 ``sso_off``)."""

    def __init__(
        self,
        client: OidcClient | None,
        accounts: AccountStore,
        audit: AuditLog,
        server_secret: bytes,
        secure_cookies: bool,
        name: str | None = None,
        instructor_domains: tuple[str, ...] = (),
    ) -> None:
        self.client = client
        self.accounts = accounts
        self.audit = audit
        self.secure_cookies = secure_cookies
        host = urlsplit(client.issuer).hostname if client else None
        self.name = name or host or "single sign-on"
        self.instructor_domains = frozenset(instructor_domains)
        self._flows = FlowSealer(server_secret)

    def role_for(self, email: str) -> Role:
        """The role of an account a first SSO login makes: never admin."""
        domain = email.rpartition("@")[2]
        return "instructor" if domain in self.instructor_domains else "participant"

    async def config(self, _request: web.Request) -> web.Response:
        """Whether the login page shows a "Sign in with …" button, and its name."""
        if self.client is None:
            return web.json_response({"enabled": False})
        return web.json_response(
            {"enabled": True, "name": self.name, "start": f"{FLOW_PATH}/start"}
        )

    async def start(self, request: web.Request) -> web.StreamResponse:
        """Send the browser to the provider, with this sign-in's secrets in its cookie."""
        if self.client is None:
            return _off()
        flow = Flow.new()
        try:
            url = await self.client.authorization_url(flow)
        except OidcError as exc:
            logger.warning("single sign-on unavailable: %s", exc.message)
            return _refused(request, exc)
        response = web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
        response.set_cookie(
            FLOW_COOKIE,
            self._flows.seal(flow),
            max_age=FLOW_TTL,
            path=FLOW_PATH,
            httponly=True,
            # Lax: the provider's redirect back is a top-level GET, which carries it.
            samesite="Lax",
            secure=self.secure_cookies,
        )
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        """Finish the sign-in: checks, the account, a session; then home."""
        if self.client is None:
            return _off()
        try:
            query = CallbackQuery.model_validate(dict(request.query))
        except ValidationError:
            return _refused(request, OidcError(400, "bad_request", "the answer is too long"))
        flow = self._flows.open(request.cookies.get(FLOW_COOKIE))
        try:
            checked = self._check_answer(query, flow, self.client.issuer)
        except OidcError as exc:
            # Not audited: anyone can send this, with nothing of a sign-in behind it.
            logger.info("single sign-on callback refused from %s: %s", request.remote, exc.message)
            return _refused(request, exc)
        who = ""  # for the audit log: the address the provider gave, once it gave one
        try:
            identity = await self.client.finish(checked, query.code)
            who = identity.email or ""
            user, how = await self._account(identity)
        except OidcError as exc:
            logger.info("single sign-on refused from %s: %s", request.remote, exc.message)
            await self.audit.record(
                "login_failed", Actor(who or "single sign-on"), who, request.remote,
                method="sso", reason=exc.code,
            )  # fmt: skip
            return _refused(request, exc)
        secret, _session = await self.accounts.create_session(user)
        if how == "created":
            await self.audit.record(
                "user_added", actor_of(user), user.email, request.remote,
                role=user.role, method="sso",
            )  # fmt: skip
        logger.info("login: %s from %s (single sign-on, %s)", user.email, request.remote, how)
        await self.audit.record(
            "login", actor_of(user), user.email, request.remote, method="sso", account=how
        )
        response = web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})
        response.del_cookie(FLOW_COOKIE, path=FLOW_PATH)
        return set_session_cookie(response, secret, self.secure_cookies)

    @staticmethod
    def _check_answer(query: CallbackQuery, flow: Flow | None, issuer: str) -> Flow:
        """The flow this answer finishes: this browser's, with its ``state``, from our
        provider (``iss``, where the provider sends it: RFC 9207), and a code."""
        if flow is None:
            raise OidcError(
                400, "sso_state", "this sign-in expired or began in another browser: start again"
            )
        if not hmac.compare_digest(query.state.encode(), flow.state.encode()):
            raise OidcError(400, "sso_state", "this answer is not for this browser's sign-in")
        if query.iss and query.iss != issuer:
            raise OidcError(400, "sso_failed", "this answer is from another provider")
        if query.error:
            raise OidcError(400, "sso_failed", f"the provider did not sign you in: {query.error}")
        if not query.code:
            raise OidcError(400, "bad_request", "the answer has no code")
        return flow

    async def _account(self, identity: Identity) -> tuple[UserRecord, SsoMatch]:
        email = valid_email(identity.email or "")
        if email is None or not identity.email_verified:
            raise OidcError(
                403, "email_unverified", "the provider has no verified email address for you"
            )
        try:
            return await self.accounts.sso_user(
                identity.issuer, identity.subject, email, self.role_for(email)
            )
        except AccountError as exc:
            raise OidcError(_ACCOUNT_REFUSALS[exc.reason], exc.reason, exc.message) from None

    def add_routes(self, app: web.Application) -> None:
        """Register the SSO endpoints on ``app``."""
        app.router.add_get("/api/auth/sso", self.config)
        app.router.add_get(f"{FLOW_PATH}/start", self.start)
        app.router.add_get(CALLBACK_PATH, self.callback)


def _off() -> web.Response:
    return json_error(404, "sso_off", "single sign-on is not configured on this server")


def _refused(request: web.Request, error: OidcError) -> web.Response:
    """The refusal as JSON, or as a page for a browser that navigated here."""
    if "text/html" not in request.headers.get("Accept", ""):
        response = json_error(error.status, error.code, error.message)
    else:
        response = web.Response(
            status=error.status, text=_PAGE.format(message=html.escape(error.message)),
            content_type="text/html",
        )  # fmt: skip
    response.del_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response


_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>PulseRoom: sign-in failed</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/style.css">
</head>
<body>
  <main class="home">
    <h1>Sign-in failed</h1>
    <p class="error-text" role="alert" data-testid="sso-error">{message}</p>
    <p><a class="button primary" href="/login">Back to log in</a></p>
  </main>
</body>
</html>
"""
