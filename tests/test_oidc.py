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
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from signaling.sso_api import FLOW_COOKIE
from storage import migrations
from storage.accounts import AccountError, AccountStore
from storage.audit import AuditLog
from storage.store import create_engine
from tests.conftest import free_port
from tests.instructor import EMAIL as ADMIN_EMAIL
from tests.loopback import loopback_server
from tests.oidc_provider import NEEDS_PROVIDER, Provider, running_provider, sign_in_at_provider

pytestmark = NEEDS_PROVIDER
PORT = free_port()  # PulseRoom's, registered with the provider before either starts
COUNTED = ("users", "user_identities", "login_sessions")


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


@pytest.fixture
async def sso(tmp_path: Path, provider: Provider) -> AsyncIterator[Sso]:
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
