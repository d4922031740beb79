"""Mail (issue 16, item 1: "SMTP optional when configured"), against a real SMTP server.

aiosmtpd (a maintained asyncio SMTP server) listens on loopback with a login; the server
under test hands it invitations and password links, and someone who forgot their password
gets a reset link by asking. The links in the mails are the ones that work. Without mail
configured nothing changes (the admin hands links over); a mail server that is down or
lacks STARTTLS when it is required does not lose the link (the admin still sees it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from pulseroom.settings import ConfigError, load_settings
from storage import migrations
from storage.accounts import AccountStore
from tests.conftest import free_port
from tests.loopback import loopback_server
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
SMTP_USER, SMTP_PASSWORD = "pulseroom", "smtp pass/with:odd@chars"
LINK = re.compile(r"(http://\S+/password#token=[\w-]+)")


class Inbox:
    """What the SMTP server accepted: (envelope recipients, parsed message)."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, _server: Any, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.mails.append((list(envelope.rcpt_tos), message_from_bytes(content)))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for rcpt, m in self.mails if address in rcpt]


def _authenticate(
    _server: Any, _session: Session, _envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        mechanism in ("LOGIN", "PLAIN")
        and isinstance(data, LoginPassword)
        and (data.login, data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
    )
    return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[str, Inbox]]:
    """A real SMTP server on loopback that wants a login; its URL and its inbox."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=_authenticate,
        auth_required=True, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    credentials = f"{quote(SMTP_USER, safe='')}:{quote(SMTP_PASSWORD, safe='')}"
    try:
        yield f"smtp://{credentials}@127.0.0.1:{port}", inbox
    finally:
        controller.stop()


def _link(message: Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    found = LINK.search(body.decode())
    assert found, body
    return found.group(1)


def _token(link: str) -> str:
    return link.split("#token=", 1)[1]


async def test_invitations_and_resets_go_by_mail_and_work(
    tmp_path: Path, smtp: tuple[str, Inbox]
) -> None:
    url, inbox = smtp
    settings = {"PULSEROOM_SMTP_URL": url, "PULSEROOM_SMTP_FROM": "classes@studio.example"}
    async with loopback_server(tmp_path, **settings) as server:
        admin = server.instructor.client
        csrf = {"X-CSRF-Token": server.instructor.csrf_token}
        invited = await admin.post(
            "/api/admin/users", json={"email": "coach@studio.example"}, headers=csrf
        )
        assert invited.status_code == 201, invited.text
        assert invited.json()["emailed"] is True
        (mail,) = inbox.to("coach@studio.example")
        assert mail["From"] == "PulseRoom <classes@studio.example>"
        assert mail["Subject"] == "You are invited to PulseRoom"
        assert _link(mail) == invited.json()["link"]  # the same one-time link, by mail

        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            chosen = await anonymous.post(
                "/api/auth/password",
                json={"token": _token(_link(mail)), "password": "the coach's first password"},
            )
            assert chosen.status_code == 200, chosen.text

            # Forgotten: the same answer for an account and for no account; one mail.
            asked = await anonymous.post("/api/auth/forgot", json={"email": "Coach@Studio.example"})
            nobody = await anonymous.post("/api/auth/forgot", json={"email": "no@studio.example"})
            assert asked.status_code == nobody.status_code == 202
            assert asked.json() == nobody.json()
            await until(lambda: len(inbox.to("coach@studio.example")) == 2, timeout=10)
            assert inbox.to("no@studio.example") == []
            reset = inbox.to("coach@studio.example")[1]
            assert reset["Subject"] == "Reset your PulseRoom password"
            changed = await anonymous.post(
                "/api/auth/password",
                json={"token": _token(_link(reset)), "password": "the coach's new password"},
            )
            assert changed.status_code == 200, changed.text
            login = await anonymous.post(
                "/api/auth/login",
                json={"email": "coach@studio.example", "password": "the coach's new password"},
            )
            assert login.status_code == 200, login.text
            used = await anonymous.post(
                "/api/auth/password",
                json={"token": _token(_link(reset)), "password": "someone else's password"},
            )
            assert used.status_code == 403  # once only
            anonymous.cookies.clear()  # logged in above: back to someone without a session

            # Bad input: a clear error, no mail. Then the per-account limit.
            for bad in ({}, {"email": "not an address"}, {"email": "a@b.c", "x": 1}):
                answer = await anonymous.post("/api/auth/forgot", json=bad)
                assert answer.status_code == 400, (bad, answer.text)
            for _ in range(2):
                await anonymous.post("/api/auth/forgot", json={"email": "coach@studio.example"})
            limited = await anonymous.post(
                "/api/auth/forgot", json={"email": "coach@studio.example"}
            )
            assert limited.status_code == 429 and "Retry-After" in limited.headers
            assert len(inbox.to("coach@studio.example")) == 4  # 3 an hour
        audit = (await admin.get("/api/admin/audit")).json()["entries"]
        mailed = [e for e in audit if e["action"] == "password_link"]
        assert mailed and all(e["detail"]["emailed"] is True for e in mailed), mailed


async def test_without_mail_or_with_a_broken_server_no_link_is_lost(
    tmp_path: Path, smtp: tuple[str, Inbox]
) -> None:
    async with loopback_server(tmp_path / "off") as server:
        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            off = await anonymous.post("/api/auth/forgot", json={"email": "a@studio.example"})
        assert off.status_code == 409 and off.json()["error"]["code"] == "mail_off"
        invited = await server.instructor.client.post(
            "/api/admin/users", json={"email": "b@studio.example"},
            headers={"X-CSRF-Token": server.instructor.csrf_token},
        )  # fmt: skip
        assert invited.status_code == 201 and invited.json()["emailed"] is False
        assert "mail_error" not in invited.json()

    url, inbox = smtp
    down = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there
    no_tls = url + "?starttls=required"  # the test server offers no STARTTLS
    for number, broken in enumerate((down, no_tls)):
        async with loopback_server(tmp_path / f"broken{number}", PULSEROOM_SMTP_URL=broken) as s:
            invited = await s.instructor.client.post(
                "/api/admin/users", json={"email": "c@studio.example"},
                headers={"X-CSRF-Token": s.instructor.csrf_token},
            )  # fmt: skip
            body = invited.json()
            assert invited.status_code == 201 and body["emailed"] is False, body
            assert body["mail_error"] and SMTP_PASSWORD not in body["mail_error"]
            assert body["link"].startswith(s.url + "/password#token=")  # shown all the same
    assert inbox.mails == []


def test_bad_smtp_settings_are_refused_without_echoing_the_password() -> None:
    for bad in ("http://mail.example", "smtp://", "smtp://h?starttls=maybe"):
        with pytest.raises(ConfigError, match="PULSEROOM_SMTP_URL") as caught:
            load_settings(PULSEROOM_SMTP_URL=bad.replace("h", "user:hunter2secret@h", 1))
        assert "hunter2secret" not in str(caught.value)
    with pytest.raises(ConfigError, match="PULSEROOM_SMTP_FROM"):
        load_settings(PULSEROOM_SMTP_FROM="not an address")


def test_the_shell_mails_the_link_it_prints(tmp_path: Path, smtp: tuple[str, Inbox]) -> None:
    url, inbox = smtp
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PULSEROOM_SECRET")},
        "PULSEROOM_DATA_DIR": str(tmp_path),
        "PULSEROOM_SMTP_URL": url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "pulseroom.cli", "user", "add", "d@studio.example", "--role",
         "instructor"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    printed = LINK.search(done.stdout)
    assert printed and "mailed the link to d@studio.example" in done.stderr, done
    (mail,) = inbox.to("d@studio.example")
    assert _link(mail) == printed.group(1)


async def test_a_disabled_account_gets_no_mail(tmp_path: Path, smtp: tuple[str, Inbox]) -> None:
    url, inbox = smtp
    database = f"sqlite+aiosqlite:///{tmp_path / 'pulseroom.db'}"
    async with migrations.migrated(database) as engine:
        accounts = AccountStore(engine)
        await accounts.create_user("e@studio.example", "instructor", "a password of e's")
        await accounts.set_disabled("e@studio.example")
    settings = {"DATABASE_URL": database, "PULSEROOM_SMTP_URL": url}
    async with loopback_server(tmp_path / "data", **settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            asked = await anonymous.post("/api/auth/forgot", json={"email": "e@studio.example"})
        assert asked.status_code == 202
    assert inbox.to("e@studio.example") == []
