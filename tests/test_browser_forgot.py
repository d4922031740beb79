"""A forgotten password, reset by mail in a real browser (issue 16, item 1).

A ``pulseroom serve`` with ``PULSEROOM_SMTP_URL`` pointing at a real SMTP server
(aiosmtpd, tests/test_mail.py's); headless Chromium: the login page offers "Forgot your
password?", the form mails a link, the link from the mail sets a new password, and the new
password logs in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser_fixtures import (
    BROWSER_MODULE,
    SECRET,
    browser_fixture,  # noqa: F401 (fixture "browser")
    open_tab,
    screenshot,
)
from tests.conftest import RunningServer, start_server, stop_server
from tests.test_mail import Inbox, _link, smtp  # noqa: F401 (fixture "smtp")
from tests.waiting import until

pytestmark = BROWSER_MODULE

EMAIL = "forgetful@studio.example"


@pytest.fixture
def mail_server(tmp_path: Path, smtp: tuple[str, Inbox]) -> Iterator[RunningServer]:  # noqa: F811
    server = start_server(tmp_path, PULSEROOM_SECRET=SECRET, PULSEROOM_SMTP_URL=smtp[0])
    yield server
    stop_server(server)


async def test_a_forgotten_password_is_reset_by_mail(
    browser: Any,
    mail_server: RunningServer,
    smtp: tuple[str, Inbox],  # noqa: F811
) -> None:
    inbox = smtp[1]
    admin = mail_server.instructor()
    assert admin.post("/api/admin/users", json={"email": EMAIL}).status_code == 201
    (invitation,) = inbox.to(EMAIL)
    async with httpx.AsyncClient() as client:
        token = _link(invitation).split("#token=", 1)[1]
        answer = await client.post(
            f"{mail_server.url}/api/auth/password",
            json={"token": token, "password": "the first password"},
        )
        assert answer.status_code == 200, answer.text

    tab = await open_tab(browser, "forgetful", enforce_csp=True)
    page = tab.page
    try:
        await page.goto(mail_server.url + "/login")
        await page.get_by_test_id("forgot-link").click()
        await page.wait_for_url(f"{mail_server.url}/forgot")
        assert await page.get_by_test_id("password-input").is_hidden()
        await page.get_by_test_id("email-input").fill(EMAIL)
        await page.get_by_test_id("account-button").click()
        done = page.get_by_test_id("account-done")
        await done.wait_for(state="visible")
        assert "link to set a new password is on its way" in (await done.text_content() or "")
        await screenshot(tab, "forgot-sent")
        await until(lambda: len(inbox.to(EMAIL)) == 2, timeout=10)

        await page.goto(_link(inbox.to(EMAIL)[1]))
        await page.get_by_test_id("password-input").fill("the new password")
        await page.get_by_test_id("account-button").click()
        await page.get_by_test_id("account-done").wait_for(state="visible")
        await page.goto(mail_server.url + "/login")
        await page.get_by_test_id("email-input").fill(EMAIL)
        await page.get_by_test_id("password-input").fill("the new password")
        await page.get_by_test_id("account-button").click()
        await page.get_by_test_id("account-done").wait_for(state="visible")
        assert EMAIL in (await page.get_by_test_id("account-done").text_content() or "")
        assert not tab.errors, tab.diagnostics()
    finally:
        await tab.close()
