"""Single sign-on with OpenID Connect (issue 16, item 1) against a real provider.

panva's oidc-provider (OpenID-certified) runs in a Node.js subprocess (tests/oidc_provider.py);
PulseRoom runs in the test's event loop (tests/loopback.py) and an httpx client plays the
browser: PulseRoom's start, the provider's login form and consent screen, the callback,
then the session. Refusals (another browser's or a forged state, a replayed code, ID
tokens altered after signing, an unverified address, a disabled account) are answered
with the documented codes and leave users, identities and sessions as they were.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from signaling.sso_api import FLOW_COOKIE
from storage.accounts import AccountStore
from storage.audit import AuditLog
from storage.store import create_engine
from tests.conftest import free_port
from tests.fuzz_payloads import fuzz_settings
from tests.fuzz_target import documented_error_codes
from tests.instructor import EMAIL as ADMIN_EMAIL
from tests.loopback import loopback_server
from tests.oidc_provider import NEEDS_PROVIDER, Provider, running_provider, sign_in_at_provider

# One provider and one server for the module (each test signs in its own users).
pytestmark = [NEEDS_PROVIDER, pytest.mark.asyncio(loop_scope="module")]
PORT = free_port()  # PulseRoom's, registered with the provider before either starts
COUNTED = ("users", "user_identities", "login_sessions")
CODES = documented_error_codes()
FUZZ = fuzz_settings(25)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider(f"http://127.0.0.1:{PORT}/api/auth/oidc/callback") as running:
        yield running


@dataclass
class Sso:
    """PulseRoom with single sign-on, its database, and a fresh "browser" per call."""

    url: str
    provider: Provider
    engine: AsyncEngine

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=15)

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            return {
                t: int((await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one())
                for t in COUNTED
            }

    async def to_callback(self, browser: httpx.AsyncClient, login: str) -> str:
        """Start at PulseRoom and sign in at the provider; the callback URL, not opened."""
        start = await browser.get(f"{self.url}/api/auth/oidc/start")
        assert start.status_code == 302, start.text
        assert FLOW_COOKIE in start.cookies
        return await sign_in_at_provider(browser, start, login)

    async def sign_in(self, browser: httpx.AsyncClient, login: str) -> httpx.Response:
        """The whole flow; the callback's answer."""
        return await browser.get(await self.to_callback(browser, login))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sso(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> AsyncIterator[Sso]:
    tmp_path = tmp_path_factory.mktemp("sso")
    settings = provider.settings(PULSEROOM_OIDC_INSTRUCTOR_DOMAINS=["coaches.example"])
    async with loopback_server(tmp_path, port=PORT, **settings) as server:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pulseroom.db'}")
        yield Sso(server.url, provider, engine)
        await engine.dispose()


async def me(browser: httpx.AsyncClient, url: str) -> dict[str, Any]:
    answer = await browser.get(f"{url}/api/auth/me")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


async def test_a_new_address_becomes_a_participant_logged_in_at_home(sso: Sso) -> None:
    before = await sso.counts()
    async with sso.browser() as browser:
        answer = await sso.sign_in(browser, "ann@example.com")
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert FLOW_COOKIE not in browser.cookies  # the flow's secrets are spent
        assert await me(browser, sso.url) == {
            "email": "ann@example.com",
            "role": "participant",
            "csrf_token": (await me(browser, sso.url))["csrf_token"],
        }
    after = await sso.counts()
    assert after == {
        "users": before["users"] + 1,
        "user_identities": before["user_identities"] + 1,
        "login_sessions": before["login_sessions"] + 1,
    }
    entries = [e.as_json() for e in await AuditLog(sso.engine).entries()]
    login = next(e for e in entries if e["action"] == "login" and e["target"] == "ann@example.com")
    assert login["detail"] == {"method": "sso", "account": "created"}
    added = next(e for e in entries if e["action"] == "user_added")
    assert added["detail"] == {"role": "participant", "method": "sso"}


async def test_an_instructor_domain_makes_an_instructor_and_an_account_keeps_its_role(
    sso: Sso,
) -> None:
    async with sso.browser() as browser:
        assert (await sso.sign_in(browser, "bea@coaches.example")).status_code == 303
        assert (await me(browser, sso.url))["role"] == "instructor"
    # The admin's own address logs into the admin's account (not a new one, not demoted).
    before = await sso.counts()
    async with sso.browser() as browser:
        assert (await sso.sign_in(browser, ADMIN_EMAIL.upper())).status_code == 303
        assert (await me(browser, sso.url))["email"] == ADMIN_EMAIL
        assert (await me(browser, sso.url))["role"] == "admin"
    after = await sso.counts()
    assert after["users"] == before["users"]
    assert after["user_identities"] == before["user_identities"] + 1


async def test_an_address_changed_at_the_provider_keeps_the_account(sso: Sso) -> None:
    sso.provider.set_account("carl-42", email="carl@example.com", email_verified=True)
    async with sso.browser() as browser:
        assert (await sso.sign_in(browser, "carl-42")).status_code == 303
        first = await me(browser, sso.url)
    sso.provider.set_account("carl-42", email="carl.new@example.com", email_verified=True)
    before = await sso.counts()
    async with sso.browser() as browser:
        assert (await sso.sign_in(browser, "carl-42")).status_code == 303
        assert (await me(browser, sso.url))["email"] == first["email"] == "carl@example.com"
    assert (await sso.counts())["users"] == before["users"]


async def refused(sso: Sso, answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code, answer.text
    assert "pulseroom_session" not in answer.cookies


async def test_a_forged_state_or_another_browser_is_refused(sso: Sso) -> None:
    before = await sso.counts()
    async with sso.browser() as browser:
        callback = await sso.to_callback(browser, "dan@example.com")
        parts = urlsplit(callback)
        query = dict(parse_qsl(parts.query))
        forged = parts._replace(query=urlencode({**query, "state": "x" + query["state"]}))
        await refused(sso, await browser.get(forged.geturl()), 400, "sso_state")
        # Another browser (no flow cookie) with the real answer: refused too.
        async with sso.browser() as other:
            await refused(sso, await other.get(callback), 400, "sso_state")
        # The provider said no (the user cancelled): refused, with its reason.
        denied = parts._replace(query=urlencode({"error": "access_denied", "state": "s"}))
        await refused(sso, await browser.get(denied.geturl()), 400, "sso_state")
    assert await sso.counts() == before
    # Not audited: anyone can send these without having begun a sign-in.
    failures = [e for e in await AuditLog(sso.engine).entries() if e.action == "login_failed"]
    assert "sso_state" not in {e.detail["reason"] for e in failures}


async def test_a_provider_error_and_a_missing_code_are_refused(sso: Sso) -> None:
    before = await sso.counts()
    async with sso.browser() as browser:
        start = await browser.get(f"{sso.url}/api/auth/oidc/start")
        state = dict(parse_qsl(urlsplit(start.headers["location"]).query))["state"]
        callback = f"{sso.url}/api/auth/oidc/callback"
        answer = await browser.get(callback, params={"error": "access_denied", "state": state})
        await refused(sso, answer, 400, "sso_failed")
        assert "access_denied" in answer.json()["error"]["message"]
        start = await browser.get(f"{sso.url}/api/auth/oidc/start")
        state = dict(parse_qsl(urlsplit(start.headers["location"]).query))["state"]
        await refused(sso, await browser.get(callback, params={"state": state}), 400, "bad_request")
        # An answer naming another issuer (RFC 9207: a mix-up of providers) is refused.
        start = await browser.get(f"{sso.url}/api/auth/oidc/start")
        state = dict(parse_qsl(urlsplit(start.headers["location"]).query))["state"]
        answer = await browser.get(
            callback, params={"state": state, "code": "c", "iss": "https://evil.example"}
        )
        await refused(sso, answer, 400, "sso_failed")
        assert "another provider" in answer.json()["error"]["message"]
    assert await sso.counts() == before


async def test_a_replayed_code_is_refused(sso: Sso) -> None:
    async with sso.browser() as browser:
        callback = await sso.to_callback(browser, "eve@example.com")
        flow = browser.cookies[FLOW_COOKIE]
        assert (await browser.get(callback)).status_code == 303
    before = await sso.counts()
    # Someone who copied the answer and the flow cookie: the provider refuses the code.
    async with sso.browser() as thief:
        thief.cookies.set(FLOW_COOKIE, flow, domain="127.0.0.1", path="/api/auth/oidc")
        await refused(sso, await thief.get(callback), 400, "sso_failed")
    assert await sso.counts() == before


@pytest.mark.parametrize("mode", ["payload", "signature"])
async def test_an_id_token_altered_after_signing_is_refused(sso: Sso, mode: str) -> None:
    before = await sso.counts()
    async with sso.browser() as browser:
        callback = await sso.to_callback(browser, f"fay-{mode}@example.com")
        sso.provider.tamper_next(mode)  # the ID token in the code exchange's answer
        answer = await browser.get(callback)
        await refused(sso, answer, 400, "sso_failed")
        assert "ID token" in answer.json()["error"]["message"]
    assert await sso.counts() == before
    latest = (await AuditLog(sso.engine).entries())[0]
    assert (latest.action, latest.detail) == (
        "login_failed",
        {"method": "sso", "reason": "sso_failed"},
    )


async def test_an_unverified_address_is_refused(sso: Sso) -> None:
    sso.provider.set_account("gus@example.com", email_verified=False)
    before = await sso.counts()
    async with sso.browser() as browser:
        # A browser that navigated here gets a page saying why, with the way back.
        callback = await sso.to_callback(browser, "gus@example.com")
        answer = await browser.get(callback, headers={"accept": "text/html"})
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("text/html")
        assert "no verified email address" in answer.text and 'href="/login"' in answer.text
    assert await sso.counts() == before


async def test_a_disabled_account_is_refused(sso: Sso) -> None:
    accounts = AccountStore(sso.engine)
    await accounts.create_user("hal@example.com", "instructor")
    await accounts.set_disabled("hal@example.com")
    before = await sso.counts()
    async with sso.browser() as browser:
        await refused(sso, await sso.sign_in(browser, "hal@example.com"), 403, "account_disabled")
    assert await sso.counts() == before  # no identity linked to it either
    latest = (await AuditLog(sso.engine).entries())[0]
    assert (latest.action, latest.target, latest.detail["reason"]) == (
        "login_failed", "hal@example.com", "account_disabled",
    )  # fmt: skip


async def test_the_login_page_is_told_about_sso(sso: Sso) -> None:
    async with sso.browser() as browser:
        config = (await browser.get(f"{sso.url}/api/auth/sso")).json()
    issuer_host = urlsplit(sso.provider.issuer).hostname
    assert config == {"enabled": True, "name": issuer_host, "start": "/api/auth/oidc/start"}


async def test_without_settings_there_is_no_sso(tmp_path: Path) -> None:
    async with loopback_server(tmp_path) as server, httpx.AsyncClient() as browser:
        assert (await browser.get(f"{server.url}/api/auth/sso")).json() == {"enabled": False}
        for path in ("/api/auth/oidc/start", "/api/auth/oidc/callback?code=x&state=y"):
            answer = await browser.get(f"{server.url}{path}")
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "sso_off"


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(["code", "state", "error", "iss", "session_state"]),
        # No lone surrogates (a URL cannot carry them), and the URL within aiohttp's 8 KiB
        # request line; one value past the 2 KiB the callback takes.
        st.text(max_size=150) | st.sampled_from(["", "\x00", "../..", "x" * 2100]),
        max_size=3,
    ),
    real_state=st.booleans(),
)
async def test_any_answer_to_the_callback_is_refused_cleanly(
    sso: Sso, query: dict[str, str], real_state: bool
) -> None:
    """With a provider configured: whatever the query (with this browser's own state or
    not), a documented 4xx, and nothing changes."""
    before = await sso.counts()
    async with sso.browser() as browser:
        start = await browser.get(f"{sso.url}/api/auth/oidc/start")
        if real_state:
            query = {
                **query,
                "state": dict(parse_qsl(urlsplit(start.headers["location"]).query))["state"],
            }
        answer = await browser.get(f"{sso.url}/api/auth/oidc/callback", params=query)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"]["code"] in CODES, answer.text
    assert await sso.counts() == before


async def test_an_unreachable_provider_is_said_plainly(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = {
        "PULSEROOM_OIDC_ISSUER": nobody,
        "PULSEROOM_OIDC_CLIENT_ID": "x",
        "PULSEROOM_OIDC_CLIENT_SECRET": "y",
    }
    async with loopback_server(tmp_path, **settings) as server, httpx.AsyncClient() as browser:
        answer = await browser.get(f"{server.url}/api/auth/oidc/start")
        assert answer.status_code == 502 and answer.json()["error"]["code"] == "sso_unavailable"
        assert FLOW_COOKIE not in answer.cookies
        page = await browser.get(
            f"{server.url}/api/auth/oidc/start", headers={"accept": "text/html"}
        )
        assert page.status_code == 502 and "cannot be used" in page.text
