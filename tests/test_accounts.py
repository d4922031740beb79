"""Accounts (issue 16, items 1-2): the store on SQLite and a real PostgreSQL, the schema's
upgrade with data in it, and the REST endpoints and ``pulseroom user`` against real
``pulseroom serve`` subprocesses.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from signaling.login_throttle import FailureWindow
from storage import migrations
from storage.accounts import AccountError, AccountStore, secret_hash
from storage.store import ProfileRecord, Store, create_engine
from tests.conftest import ROOT, RunningServer, start_server, stop_server

PASSWORD = "correct horse battery"
ACCOUNT_TABLES = ("users", "login_sessions", "one_time_links")


@pytest.fixture
async def accounts(database_url: str) -> AsyncIterator[AccountStore]:
    engine = create_engine(database_url)
    await migrations.migrate(engine)
    yield AccountStore(engine)
    await engine.dispose()


async def refused(reason: str, call: Any) -> None:
    with pytest.raises(AccountError) as caught:
        await call
    assert caught.value.reason == reason, caught.value.message


# -- the store, on both backends -----------------------------------------------------------


async def test_an_email_has_one_account_whatever_its_case(accounts: AccountStore) -> None:
    ann = await accounts.create_user("  Ann@Example.COM ", "instructor")
    assert ann.email == "ann@example.com" and ann.role == "instructor"
    assert not ann.has_password and not ann.disabled
    await refused("email_taken", accounts.create_user("ANN@example.com", "admin"))
    found = await accounts.user_by_email("ann@EXAMPLE.com")
    assert found is not None and found.id == ann.id
    # The database itself refuses a case variant, even written by hand.
    with pytest.raises(IntegrityError):
        async with accounts.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, role, disabled, created_at)"
                    " VALUES ('x', 'Ann@example.com', 'admin', FALSE, 0)"
                )
            )
    with pytest.raises(IntegrityError):
        async with accounts.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, role, disabled, created_at)"
                    " VALUES ('y', 'bob@example.com', 'superuser', FALSE, 0)"
                )
            )


async def test_a_password_link_works_once_and_not_after_it_expires(
    accounts: AccountStore,
) -> None:
    user = await accounts.create_user("bea@example.com", "instructor")
    # No password yet: nothing logs in, not even an empty guess.
    await refused("bad_credentials", accounts.authenticate("bea@example.com", ""))
    expired = await accounts.issue_link("invite", user.id, ttl=-1)
    await refused("invalid_link", accounts.set_password(expired, PASSWORD))
    first = await accounts.issue_link("invite", user.id)
    second = await accounts.issue_link("reset", user.id)
    # Only the newest link of a user works.
    await refused("invalid_link", accounts.set_password(first, PASSWORD))
    assert (await accounts.set_password(second, PASSWORD)).has_password
    await refused("invalid_link", accounts.set_password(second, "another password"))
    assert (await accounts.authenticate("BEA@example.com", PASSWORD)).id == user.id
    await refused("bad_credentials", accounts.authenticate("bea@example.com", PASSWORD + "x"))
    await refused("bad_credentials", accounts.authenticate("nobody@example.com", PASSWORD))
    # A setup link is not a password link, nor the other way round.
    setup = await accounts.issue_link("setup")
    await refused("invalid_link", accounts.set_password(setup, PASSWORD))


async def test_secrets_are_stored_only_as_hashes(accounts: AccountStore) -> None:
    user = await accounts.create_user("cat@example.com", "admin", PASSWORD)
    token = await accounts.issue_link("reset", user.id)
    secret, session = await accounts.create_session(user)
    async with accounts.engine.connect() as conn:
        stored = [
            str(value)
            for table in ACCOUNT_TABLES
            for row in (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            for value in row
        ]
    assert not [v for v in stored if PASSWORD in v or token in v or secret in v]
    assert secret_hash(secret) in stored and secret_hash(token) in stored
    assert [v for v in stored if v.startswith("$argon2id$")]
    found = await accounts.session(secret)
    assert found is not None and found.user.id == user.id
    assert found.csrf_token == session.csrf_token and found.csrf_token != secret
    assert await accounts.session(secret + "x") is None


async def test_an_sso_login_finds_links_or_makes_the_account(accounts: AccountStore) -> None:
    issuer = "https://id.example.com"
    ann = await accounts.create_user("ann@example.com", "admin")
    user, how = await accounts.sso_user(issuer, "s-ann", "ANN@example.com", "participant")
    assert (user.id, user.role, how) == (ann.id, "admin", "linked")
    user, how = await accounts.sso_user(issuer, "s-ann", "other@example.com", "participant")
    assert (user.id, how) == (ann.id, "known")
    # The same subject at another issuer is someone else.
    user, how = await accounts.sso_user("https://b.example", "s-ann", "x@example.com", "instructor")
    assert (user.email, user.role, how) == ("x@example.com", "instructor", "created")
    assert not user.has_password
    await accounts.set_disabled("ann@example.com", keep_admin=False)
    with pytest.raises(AccountError) as caught:
        await accounts.sso_user(issuer, "s-ann", "ann@example.com", "participant")
    assert caught.value.reason == "account_disabled"
    bob = await accounts.create_user("bob@example.com", "participant")
    await accounts.set_disabled("bob@example.com")
    with pytest.raises(AccountError):
        await accounts.sso_user(issuer, "s-bob", "bob@example.com", "participant")
    async with accounts.engine.connect() as conn:
        linked = (
            await conn.execute(
                text("SELECT count(*) FROM user_identities WHERE user_id = :id"), {"id": bob.id}
            )
        ).scalar_one()
    assert linked == 0  # refused: nothing stored


async def test_disabling_ends_sessions_and_voids_links(accounts: AccountStore) -> None:
    user = await accounts.create_user("dan@example.com", "instructor", PASSWORD)
    secret, _ = await accounts.create_session(user)
    link = await accounts.issue_link("reset", user.id)
    disabled = await accounts.set_disabled("DAN@example.com")
    assert disabled is not None and disabled.disabled
    assert await accounts.session(secret) is None
    await refused("account_disabled", accounts.authenticate("dan@example.com", PASSWORD))
    await refused("invalid_link", accounts.set_password(link, "a new password"))
    assert await accounts.set_disabled("nobody@example.com") is None
    await accounts.set_disabled("dan@example.com", False)
    assert (await accounts.authenticate("dan@example.com", PASSWORD)).id == user.id


async def test_setup_makes_one_admin_only(accounts: AccountStore) -> None:
    assert not await accounts.has_admin()
    first, second = await accounts.issue_link("setup"), await accounts.issue_link("setup")
    await refused("invalid_link", accounts.setup_admin("made-up", "eve@example.com", PASSWORD))
    admin = await accounts.setup_admin(first, "Eve@example.com", PASSWORD)
    assert admin.role == "admin" and admin.email == "eve@example.com"
    assert await accounts.has_admin()
    await refused("invalid_link", accounts.setup_admin(first, "fay@example.com", PASSWORD))
    await refused("setup_done", accounts.setup_admin(second, "fay@example.com", PASSWORD))
    assert await accounts.user_by_email("fay@example.com") is None


async def test_expired_sessions_end_and_are_pruned(accounts: AccountStore) -> None:
    user = await accounts.create_user("gus@example.com", "instructor", PASSWORD)
    secret, _ = await accounts.create_session(user)
    async with accounts.engine.begin() as conn:
        await conn.execute(text("UPDATE login_sessions SET expires_at = 0"))
    assert await accounts.session(secret) is None
    await accounts.issue_link("reset", user.id, ttl=-1)
    assert await accounts.prune() == 2


async def test_upgrade_to_accounts_keeps_classes_and_participants(database_url: str) -> None:
    """A database as the release before accounts left it, with a class in it, upgrades."""
    engine = create_engine(database_url)
    try:
        assert [m.version for m in await migrations.migrate(engine, target=2)] == [1, 2]
        # The class as that release stored it (its INSERT: no owner column yet).
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO rooms (id, title, created_at, ended_at, gallery)"
                    " VALUES ('e345d2987fc5', 'Tuesday spin', 1796616212.5, NULL, FALSE)"
                )
            )
        store = Store(engine)
        room_id = "e345d2987fc5"
        await store.add_participant(room_id, "p1", "Ann", "participant")
        profile = ProfileRecord(age=41, max_hr=181, resting_hr=55, sex="female")
        # Written as that release wrote it (today's set_profile knows later columns).
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE participants SET age = 41, max_hr = 181, resting_hr = 55,"
                    " sex = 'female' WHERE room_id = :room AND id = 'p1'"
                ),
                {"room": room_id},
            )
        chat = await store.add_chat(room_id, "p1", "Ann", "hello")
        await store.end_room(room_id)
        before = await _room_row(engine, room_id)

        assert [m.version for m in await migrations.migrate(engine, target=3)] == [3]
        assert await _room_row(engine, room_id) == before
        # 0004 (and whatever came after it) applies to the database with data in it.
        assert [m.version for m in await migrations.migrate(engine)][:1] == [4]
        room = await store.get_room(room_id)
        assert room is not None and room.owner_id is None  # made before accounts
        assert (room.id, room.title, room.created_at, room.ended_at, room.gallery) == before
        [ann] = await store.participants(room_id)
        assert (ann.id, ann.name, ann.role, ann.profile) == ("p1", "Ann", "participant", profile)
        assert await store.recent_chat(room_id) == [chat]
        user = await AccountStore(engine).create_user("ann@example.com", "participant")
        assert user.role == "participant"
        assert await migrations.pending(engine) == []
    finally:
        await engine.dispose()


async def _room_row(engine: AsyncEngine, room_id: str) -> tuple[Any, ...]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT id, title, created_at, ended_at, gallery FROM rooms WHERE id = :id"),
                {"id": room_id},
            )
        ).one()
    return (row[0], row[1], float(row[2]), row[3], bool(row[4]))


def test_failures_are_counted_in_a_sliding_window() -> None:
    now = [1000.0]
    window = FailureWindow(limit=3, window=60, clock=lambda: now[0])
    assert [window.attempt("a") for _ in range(3)] == [0, 0, 0]
    now[0] += 10
    assert window.attempt("a") == 50  # until the first failure is a minute old
    assert window.attempt("b") == 0  # keys are apart
    window.forgive("a")  # the last attempt succeeded: two failures left
    assert window.attempt("a") == 0
    assert window.attempt("a") == 50
    now[0] += 50
    assert window.attempt("a") == 0  # the first has left the window
    window.forgive("a", everything=True)
    assert [window.attempt("a") for _ in range(4)] == [0, 0, 0, 60]


# -- the server and the command line --------------------------------------------------------


def setup_token(server: RunningServer) -> str:
    found = re.findall(r"/setup#token=([A-Za-z0-9_-]+)", server.log())
    assert len(found) == 1, server.log()
    return str(found[0])


def account_rows(server: RunningServer) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(server.data_dir / "pulseroom.db") as db:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall()) for t in ACCOUNT_TABLES}


def user_cli(server: RunningServer, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``pulseroom user ...`` with the server's settings (its data directory, its port)."""
    return subprocess.run(
        [sys.executable, "-m", "pulseroom.cli", "user", *args],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            "PULSEROOM_DATA_DIR": str(server.data_dir),
            "PULSEROOM_PORT": server.url.rsplit(":", 1)[1],
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def link_token(output: str, base: str) -> str:
    """The token of the link on the last line of ``pulseroom user``'s output."""
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"{base}/password#token="), output
    return last.split("#token=", 1)[1]


def cookie_flags(response: httpx.Response) -> dict[str, str]:
    """The attributes of the session cookie the response sets (lower-cased names)."""
    [header] = [h for h in response.headers.get_list("set-cookie") if "pulseroom_session=" in h]
    parts = [p.strip() for p in header.split(";")]
    pairs = [p.partition("=") for p in parts[1:]]
    return {name.lower(): value for name, _, value in pairs}


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["message"]
    return str(error["code"])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "server"
    path.mkdir()
    return path


BAD_SETUP_BODIES: list[tuple[object, str]] = [
    ({}, "token"),
    ({"token": "{t}", "email": "not-an-email", "password": PASSWORD}, "email"),
    ({"token": "{t}", "email": "x@" + "a" * 260 + ".com", "password": PASSWORD}, "email"),
    ({"token": "{t}", "email": "amy@example.com", "password": "short"}, "at least 10"),
    ({"token": "{t}", "email": "amy@example.com", "password": 1234567890123}, "password"),
    ({"token": "{t}", "email": "amy@example.com", "password": PASSWORD, "role": "x"}, "role"),
    (["{t}", "amy@example.com", PASSWORD], "body"),
]


def _fill(body: object, token: str) -> object:
    if isinstance(body, dict):
        return {k: (token if v == "{t}" else v) for k, v in body.items()}
    if isinstance(body, list):
        return [token if v == "{t}" else v for v in body]
    return body


def test_setup_link_login_csrf_and_logout(home: Path) -> None:
    server = start_server(home)
    try:
        _setup_link_works_once(server)
        _login_csrf_and_logout(server)
    finally:
        stop_server(server)


def _setup_link_works_once(server: RunningServer) -> None:
    token = setup_token(server)
    for page in ("setup", "password", "login"):
        response = httpx.get(f"{server.url}/{page}")
        assert response.status_code == 200 and "/static/account.js" in response.text, page
    assert httpx.get(f"{server.url}/static/account.js").status_code == 200
    assert account_rows(server)["users"] == []
    before = account_rows(server)
    for body, says in BAD_SETUP_BODIES:
        response = httpx.post(f"{server.url}/api/auth/setup", json=_fill(body, token))
        assert error_code(response, 400) == "bad_request", body
        assert says in response.json()["error"]["message"], (body, response.text)
    for content, ctype in ((b"{not json", "application/json"), (b"x", "text/plain")):
        response = httpx.post(
            f"{server.url}/api/auth/setup", content=content, headers={"content-type": ctype}
        )
        assert error_code(response, 400 if ctype == "application/json" else 415) == "bad_request"
    wrong = {"token": token + "x", "email": "amy@example.com", "password": PASSWORD}
    assert error_code(httpx.post(f"{server.url}/api/auth/setup", json=wrong), 403) == (
        "invalid_link"
    )
    assert account_rows(server) == before  # nothing changed

    body = {"token": token, "email": "Amy@Example.com", "password": PASSWORD}
    response = httpx.post(f"{server.url}/api/auth/setup", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["email"] == "amy@example.com" and response.json()["role"] == "admin"
    flags = cookie_flags(response)
    assert "httponly" in flags and flags["samesite"].lower() == "lax" and flags["path"] == "/"
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    again = {"token": token, "email": "bob@example.com", "password": PASSWORD}
    response = httpx.post(f"{server.url}/api/auth/setup", json=again)
    assert error_code(response, 403) == "invalid_link"
    assert [row[1] for row in account_rows(server)["users"]] == ["amy@example.com"]


def _login_csrf_and_logout(server: RunningServer) -> None:
    url = server.url
    assert error_code(httpx.get(f"{url}/api/auth/me"), 401) == "unauthorized"
    before = account_rows(server)
    for body in (
        {"email": "amy@example.com"},
        {"email": "amy@example.com", "password": ""},
        {"email": "amy", "password": PASSWORD},
        {"email": ["amy@example.com"], "password": PASSWORD},
        {"email": "amy@example.com", "password": PASSWORD, "remember": True},
        "amy@example.com",
    ):
        response = httpx.post(f"{url}/api/auth/login", json=body)
        assert error_code(response, 400) == "bad_request", body
        assert "set-cookie" not in response.headers
    assert account_rows(server) == before
    for email, password in (("amy@example.com", PASSWORD + "!"), ("zed@example.com", PASSWORD)):
        response = httpx.post(f"{url}/api/auth/login", json={"email": email, "password": password})
        assert error_code(response, 401) == "bad_credentials"
        assert "set-cookie" not in response.headers
    with httpx.Client(base_url=url) as browser:
        login = browser.post(
            "/api/auth/login", json={"email": "AMY@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf_token"]
        me = browser.get("/api/auth/me").json()
        assert me == {"email": "amy@example.com", "role": "admin", "csrf_token": csrf}

        # A state change with the cookie but not the token is refused, and changes nothing.
        rooms = server.stored_rooms()
        for headers in ({}, {"X-CSRF-Token": csrf + "x"}, {"X-CSRF-Token": ""}):
            response = browser.post("/api/rooms", json={"title": "Spin"}, headers=headers)
            assert error_code(response, 403) == "csrf_failed"
            response = browser.post("/api/auth/logout", headers=headers)
            assert error_code(response, 403) == "csrf_failed"
        assert server.stored_rooms() == rooms
        assert browser.get("/api/auth/me").status_code == 200  # still logged in
        created = browser.post("/api/rooms", json={"title": "Spin"}, headers={"X-CSRF-Token": csrf})
        assert created.status_code == 201 and server.stored_rooms() == rooms + 1
        # Without a session cookie, no class: log in first.
        response = httpx.post(f"{url}/api/rooms", json={"title": "Spin"})
        assert error_code(response, 401) == "login_required"
        assert server.stored_rooms() == rooms + 1

        secret = browser.cookies["pulseroom_session"]
        response = browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
        assert response.status_code == 200, response.text
        assert "pulseroom_session" not in browser.cookies
    # The old cookie is dead on the server, not just forgotten by the browser.
    response = httpx.get(f"{url}/api/auth/me", cookies={"pulseroom_session": secret})
    assert error_code(response, 401) == "unauthorized"
    response = httpx.post(f"{url}/api/auth/logout", cookies={"pulseroom_session": secret})
    assert error_code(response, 401) == "unauthorized"
    # Only the session the setup opened is left.
    assert [row[0] for row in account_rows(server)["login_sessions"]] != [secret_hash(secret)]
    assert len(account_rows(server)["login_sessions"]) == 1


def test_cli_links_secure_cookies_reset_and_disable(home: Path) -> None:
    public = "https://pulseroom.example"
    server = start_server(home, PULSEROOM_PUBLIC_URL=public)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return user_cli(server, *args, PULSEROOM_PUBLIC_URL=public)

    try:
        token = setup_token(server)
        assert f"{public}/setup#token={token}" in server.log()
        added = cli("add", "Boss@Example.com", "--role", "admin")
        assert added.returncode == 0, added.stderr
        invite = link_token(added.stdout, public)
        # An admin exists now: the setup link printed at start is refused.
        body = {"token": token, "email": "amy@example.com", "password": PASSWORD}
        response = httpx.post(f"{server.url}/api/auth/setup", json=body)
        assert error_code(response, 409) == "setup_done"
        assert [row[1] for row in account_rows(server)["users"]] == ["boss@example.com"]

        _password_by_link(server, invite)
        response = _login(server, "boss@example.com", PASSWORD, 200)
        flags = cookie_flags(response)
        assert "secure" in flags and "httponly" in flags and flags["samesite"].lower() == "lax"
        old_session = {"pulseroom_session": response.cookies["pulseroom_session"]}

        reset = cli("reset", "boss@example.com")
        assert reset.returncode == 0, reset.stderr
        _password_by_link(server, link_token(reset.stdout, public), "a brand new password")
        # A new password ends the sessions the old one opened.
        assert httpx.get(f"{server.url}/api/auth/me", cookies=old_session).status_code == 401
        _login(server, "boss@example.com", PASSWORD, 401)
        session = _login(server, "boss@example.com", "a brand new password", 200).cookies

        assert cli("disable", "boss@example.com").returncode == 0
        me = httpx.get(f"{server.url}/api/auth/me", cookies=dict(session))
        assert error_code(me, 401) == "unauthorized"
        response = _login(server, "boss@example.com", "a brand new password", 403)
        assert response.json()["error"]["code"] == "account_disabled"
        before = account_rows(server)
        for args in (
            ("add", "not an email", "--role", "instructor"),
            ("add", "boss@example.com", "--role", "instructor"),
            ("reset", "nobody@example.com"),
            ("reset", "boss@example.com"),  # disabled
            ("disable", "nobody@example.com"),
        ):
            result = cli(*args)
            assert result.returncode == 1 and result.stderr.startswith("pulseroom user: "), args
        assert account_rows(server) == before
    finally:
        stop_server(server)


def _password_by_link(server: RunningServer, token: str, password: str = PASSWORD) -> None:
    url = f"{server.url}/api/auth/password"
    before = account_rows(server)
    response = httpx.post(url, json={"token": token, "password": "too short"})
    assert "at least 10" in response.json()["error"]["message"]
    assert error_code(response, 400) == "bad_request"
    assert account_rows(server) == before
    response = httpx.post(url, json={"token": token, "password": password})
    assert response.status_code == 200, response.text
    response = httpx.post(url, json={"token": token, "password": password})
    assert error_code(response, 403) == "invalid_link"


def _login(server: RunningServer, email: str, password: str, status: int) -> httpx.Response:
    response = httpx.post(
        f"{server.url}/api/auth/login", json={"email": email, "password": password}
    )
    assert response.status_code == status, response.text
    return response


def test_failed_logins_are_throttled_per_account_and_per_address(home: Path) -> None:
    server = start_server(home)
    try:
        added = user_cli(server, "add", "ida@example.com", "--role", "instructor")
        _password_by_link(server, link_token(added.stdout, server.url))
        for _ in range(5):
            assert _login(server, "ida@example.com", "wrong password", 401)
        response = _login(server, "ida@example.com", PASSWORD, 429)  # even the right one
        assert error_code(response, 429) == "rate_limited"
        assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
        # Other accounts from this address still may, up to the address's own limit.
        for n in range(14):
            _login(server, f"guess{n}@example.com", "wrong password", 401)
        _login(server, "guess-last@example.com", "wrong password", 401)  # the 20th failure
        response = _login(server, "someone-else@example.com", "any password", 429)
        assert int(response.headers["Retry-After"]) > 0
        assert account_rows(server)["login_sessions"] == []
    finally:
        stop_server(server)
