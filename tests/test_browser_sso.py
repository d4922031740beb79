"""Single sign-on in a real browser (issue 16, item 1): headless Debian Chromium on the
login page clicks "Sign in with …", signs in at a real OpenID Connect provider (panva's
oidc-provider, tests/oidc_provider.py: its login form, then its consent screen) and lands
on the home page logged in, as an instructor (the address's domain is an instructor
domain) who may create classes. The page runs under the server's Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.browser_fixtures import (
    BROWSER_MODULE,
    browser_fixture,  # noqa: F401 (fixture "browser")
    open_tab,
    screenshot,
)
from tests.conftest import free_port
from tests.loopback import Loopback, loopback_server
from tests.oidc_provider import NEEDS_PROVIDER, running_provider

pytestmark = [*BROWSER_MODULE, NEEDS_PROVIDER]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Loopback]:
    port = free_port()
    with running_provider(f"http://127.0.0.1:{port}/api/auth/oidc/callback") as provider:
        settings = provider.settings(
            PULSEROOM_OIDC_NAME="Studio ID", PULSEROOM_OIDC_INSTRUCTOR_DOMAINS=["studio.example"]
        )
        async with loopback_server(
            tmp_path_factory.mktemp("sso"), port=port, **settings
        ) as running:
            yield running


async def test_the_login_page_signs_in_with_the_provider(browser: Any, server: Loopback) -> None:
    tab = await open_tab(browser, "sso", viewport=(390, 844), enforce_csp=True)
    try:
        await tab.page.goto(f"{server.url}/login")
        button = tab.page.get_by_role("link", name="Sign in with Studio ID")
        await button.wait_for(state="visible")
        await screenshot(tab, "sso-login")
        await button.click()
        # The provider's own pages: any login name works, then consent.
        await tab.page.locator("input[name=login]").fill("ivy@studio.example")
        await tab.page.locator("input[name=password]").fill("anything")
        await tab.page.locator("button[type=submit]").click()
        await tab.page.get_by_role("button", name="Continue").click()
        await tab.page.wait_for_url(f"{server.url}/")
        email = tab.page.get_by_test_id("account-email")
        await email.wait_for(state="visible")
        assert "ivy@studio.example" in (await email.text_content() or "")
        await tab.page.get_by_test_id("create-form").wait_for(state="visible")  # an instructor
        await screenshot(tab, "sso-home")
        assert tab.errors == [], tab.diagnostics()
    finally:
        await tab.close()
