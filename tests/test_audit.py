"""The audit log and the admin's account endpoints (issue 16, items 2 and 7).

The log on SQLite and a real PostgreSQL; then a real server in this event loop: logins
and failed logins, an admin inviting an instructor who sets a password and creates a
class, role changes and disabling, each entry with who, what, on what and from where;
only admins read it or manage accounts, bad input changes nothing, the last admin
cannot lock everybody out; ``pulseroom audit`` and ``pulseroom user role`` from the shell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage import migrations
from storage.accounts import AccountError, AccountStore
from storage.audit import SHELL, Actor, AuditLog
from storage.store import create_engine
from tests.conftest import ROOT
from tests.instructor import EMAIL
from tests.loopback import loopback_server

PASSWORD = "a coach's long password"


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[AccountStore, AuditLog]]:
    engine = create_engine(database_url)
    await migrations.migrate(engine)
    yield AccountStore(engine), AuditLog(engine)
    await engine.dispose()


async def test_entries_come_back_newest_first_a_page_at_a_time(
    stores: tuple[AccountStore, AuditLog],
) -> None:
    _accounts, audit = stores
    made = [
        await audit.record("login", Actor("ann@example.com", "u1"), "ann@example.com", "10.0.0.1"),
        await audit.record(
            "login_failed",
            Actor("bob@example.com"),
            "bob@example.com",
            "10.0.0.2",
            reason="bad_credentials",
        ),
        await audit.record("role_changed", SHELL, "ann@example.com", before="x", after="admin"),
    ]
    entries = await audit.entries()
    assert [e.id for e in entries] == [m.id for m in reversed(made)]
    assert entries[1].detail == {"reason": "bad_credentials"}
    assert entries[1].actor_id is None and entries[2].actor_id == "u1"
    assert entries[2].address == "10.0.0.1" and entries[0].address == ""
    # A page, then the next one below the last ``at`` seen; only one kind.
    first = await audit.entries(limit=2)
    rest = await audit.entries(limit=2, before=first[-1].at)
    assert [e.id for e in first + rest] == [e.id for e in entries]
    assert [e.action for e in await audit.entries(action="login_failed")] == ["login_failed"]
    assert len(await audit.entries(limit=0)) == 1  # clamped to a page of at least one


async def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(
    stores: tuple[AccountStore, AuditLog],
) -> None:
    accounts, _audit = stores
    await accounts.create_user("root@example.com", "admin")
    for change in (
        accounts.set_role("root@example.com", "instructor"),
        accounts.set_disabled("root@example.com"),
    ):
        with pytest.raises(AccountError) as refused:
            await change
        assert refused.value.reason == "last_admin"
    root = await accounts.user_by_email("root@example.com")
    assert root is not None and root.role == "admin" and not root.disabled
    # With a second admin, either may go.
    await accounts.create_user("two@example.com", "admin")
    demoted = await accounts.set_role("root@example.com", "instructor")
    assert demoted is not None and demoted.role == "instructor"
    assert [u.email for u in await accounts.users()] == ["two@example.com", "root@example.com"]
    assert await accounts.set_role("nobody@example.com", "admin") is None


def _actions(entries: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["action"], e["actor"]["label"], e["target"]) for e in entries]


async def _entries(admin: httpx.AsyncClient, **query: Any) -> list[dict[str, Any]]:
    answer = await admin.get("/api/admin/audit", params=query)
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


async def test_an_admin_invites_an_instructor_and_every_step_is_audited(tmp_path: Path) -> None:
    async with loopback_server(tmp_path) as server:
        admin = server.instructor.client  # the first admin, made by the setup link
        csrf = {"X-CSRF-Token": server.instructor.csrf_token}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as coach:
            # A wrong password: refused and audited with the address it came from.
            wrong = await coach.post(
                "/api/auth/login", json={"email": "coach@example.com", "password": "nope"}
            )
            assert wrong.status_code == 401
            # The admin invites the coach: a one-time link, shown once.
            invited = await admin.post(
                "/api/admin/users", json={"email": "Coach@Example.com"}, headers=csrf
            )
            assert invited.status_code == 201, invited.text
            body = invited.json()
            assert body["user"]["role"] == "instructor" and not body["user"]["has_password"]
            token = body["link"].split("#token=", 1)[1]
            set_password = await coach.post(
                "/api/auth/password", json={"token": token, "password": PASSWORD}
            )
            assert set_password.status_code == 200, set_password.text
            login = await coach.post(
                "/api/auth/login", json={"email": "coach@example.com", "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            coach_csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
            created = await coach.post("/api/rooms", json={"title": "Spin"}, headers=coach_csrf)
            assert created.status_code == 201, created.text
            room_id = created.json()["room"]["id"]

            # An instructor neither reads the log nor manages accounts.
            assert (await coach.get("/api/admin/audit")).status_code == 403
            assert (await coach.get("/api/admin/users")).status_code == 403
            refused = await coach.post(
                "/api/admin/users", json={"email": "x@example.com"}, headers=coach_csrf
            )
            assert refused.status_code == 403

            # The admin disables the coach: the coach's session ends at once.
            users = (await admin.get("/api/admin/users")).json()["users"]
            coach_id = next(u["id"] for u in users if u["email"] == "coach@example.com")
            disabled = await admin.patch(
                f"/api/admin/users/{coach_id}", json={"disabled": True}, headers=csrf
            )
            assert disabled.status_code == 200 and disabled.json()["user"]["disabled"]
            assert (await coach.get("/api/auth/me")).status_code == 401

        entries = await _entries(admin)
        assert _actions(entries)[:6] == [
            ("user_disabled", EMAIL, "coach@example.com"),
            ("class_created", "coach@example.com", f"class {room_id}"),
            ("login", "coach@example.com", "coach@example.com"),
            ("password_set", "coach@example.com", "coach@example.com"),
            ("user_added", EMAIL, "coach@example.com"),
            ("login_failed", "coach@example.com", "coach@example.com"),
        ]
        assert entries[5]["detail"] == {"reason": "bad_credentials"}
        assert entries[5]["actor"]["id"] is None and entries[1]["actor"]["id"] == coach_id
        assert all(e["address"] == "127.0.0.1" for e in entries[:6])
        assert entries[1]["detail"] == {"title": "Spin"}
        # No secret ever lands in the log.
        assert token not in json.dumps(entries) and PASSWORD not in json.dumps(entries)
        assert _actions(await _entries(admin, action="class_created", limit=5)) == [
            ("class_created", "coach@example.com", f"class {room_id}")
        ]


async def test_admin_endpoints_refuse_bad_input_and_change_nothing(tmp_path: Path) -> None:
    async with loopback_server(tmp_path) as server:
        admin = server.instructor.client
        csrf = {"X-CSRF-Token": server.instructor.csrf_token}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous:
            assert (await anonymous.get("/api/admin/users")).status_code == 401
            assert (await anonymous.get("/api/admin/audit")).status_code == 401
        before_users = (await admin.get("/api/admin/users")).json()["users"]
        before_log = await _entries(admin)
        me = before_users[0]["id"]
        bad: list[tuple[str, str, Any, int, str]] = [
            ("POST", "/api/admin/users", {"email": "not-an-address"}, 400, "bad_request"),
            ("POST", "/api/admin/users", {"email": "a@b.co", "role": "root"}, 400, "bad_request"),
            ("POST", "/api/admin/users", {"email": "a@b.co", "extra": 1}, 400, "bad_request"),
            ("POST", "/api/admin/users", {"email": EMAIL.upper()}, 409, "email_taken"),
            ("PATCH", f"/api/admin/users/{me}", {}, 400, "bad_request"),
            ("PATCH", f"/api/admin/users/{me}", {"disabled": "yes"}, 400, "bad_request"),
            ("PATCH", "/api/admin/users/nobody", {"disabled": True}, 404, "not_found"),
            # The only admin cannot lock everybody out of the accounts page.
            ("PATCH", f"/api/admin/users/{me}", {"role": "instructor"}, 409, "last_admin"),
            ("PATCH", f"/api/admin/users/{me}", {"disabled": True}, 409, "last_admin"),
            ("POST", "/api/admin/users/nobody/password-link", None, 404, "not_found"),
        ]
        for method, path, body, status, code in bad:
            answer = await admin.request(method, path, json=body, headers=csrf)
            assert answer.status_code == status, (path, body, answer.text)
            assert answer.json()["error"]["code"] == code, (path, body, answer.text)
        # Without the CSRF token a logged-in state change is refused.
        answer = await admin.post("/api/admin/users", json={"email": "c@example.com"})
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "csrf_failed"
        for query in ({"limit": "0"}, {"limit": "x"}, {"before": "nan"}, {"action": "hack"},
                      {"bogus": "1"}):  # fmt: skip
            answer = await admin.get("/api/admin/audit", params=query)
            assert answer.status_code == 400, (query, answer.text)
        assert (await admin.get("/api/admin/users")).json()["users"] == before_users
        assert await _entries(admin) == before_log


def _pulseroom(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSEROOM_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "pulseroom.cli", *args],
        cwd=ROOT, env={**env, "PULSEROOM_DATA_DIR": str(data_dir)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_shell_changes_roles_and_reads_the_log(tmp_path: Path) -> None:
    added = _pulseroom(tmp_path, "user", "add", "ann@example.com", "--role", "admin")
    assert added.returncode == 0, added.stderr
    assert "#token=" in added.stdout
    # The shell may demote the only admin (it can undo it), and says what that means.
    alone = _pulseroom(tmp_path, "user", "role", "ann@example.com", "instructor")
    assert alone.returncode == 0 and "no enabled admin is left" in alone.stderr
    assert _pulseroom(tmp_path, "user", "add", "bo@example.com", "--role", "admin").returncode == 0
    again = _pulseroom(tmp_path, "user", "role", "ann@example.com", "instructor")
    assert again.returncode == 0 and again.stderr == ""
    changed = _pulseroom(tmp_path, "user", "role", "ann@example.com", "admin")
    assert changed.returncode == 0 and changed.stderr == ""
    shown = _pulseroom(tmp_path, "audit", "--json")
    assert shown.returncode == 0, shown.stderr
    entries = json.loads(shown.stdout)
    assert _actions(entries) == [
        ("role_changed", "shell", "ann@example.com"),
        ("user_added", "shell", "bo@example.com"),
        ("role_changed", "shell", "ann@example.com"),
        ("user_added", "shell", "ann@example.com"),
    ]  # (the second demotion changed nothing: no entry)
    assert entries[0]["detail"] == {"before": "instructor", "after": "admin"}
    assert added.stdout.split("#token=")[1].split()[0] not in shown.stdout
    text = _pulseroom(tmp_path, "audit", "--action", "role_changed", "--limit", "1")
    assert text.returncode == 0 and text.stdout.count("\n") == 1
    assert "role_changed" in text.stdout and "before=instructor after=admin" in text.stdout
    unknown = _pulseroom(tmp_path, "audit", "--action", "hack")
    assert unknown.returncode == 1 and "unknown action" in unknown.stderr
