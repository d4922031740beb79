"""Only instructors create classes (issue 16, item 3), against real ``pulseroom serve``.

Anonymous ``POST /api/rooms`` is refused (401) and creates nothing; a participant's
account gets 403; an instructor's class records its owner; a disabled instructor's
session stops working at once; ``pulseroom class create`` prints links that work on
the running server, and refuses anyone who may not create classes. Joining still needs
no account.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from storage.accounts import AccountStore
from storage.store import create_engine
from tests.conftest import ROOT, RunningServer, start_server, stop_server
from tests.instructor import LoggedIn
from tests.sio_client import Client

PASSWORD = "an instructor's password"


def pulseroom(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``pulseroom ARGS`` with the server's settings (its data directory and port)."""
    return subprocess.run(
        [sys.executable, "-m", "pulseroom.cli", *args],
        cwd=ROOT,
        env={
            **{
                k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PULSEROOM_SECRET")
            },
            "PULSEROOM_DATA_DIR": str(server.data_dir),
            "PULSEROOM_PORT": server.url.rsplit(":", 1)[1],
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def rooms(server: RunningServer) -> list[tuple[str, str, str | None]]:
    """Every stored class: id, title, owner's email (None without an owner)."""
    with sqlite3.connect(server.data_dir / "pulseroom.db") as db:
        return sorted(
            db.execute(
                "SELECT r.id, r.title, u.email FROM rooms r LEFT JOIN users u ON u.id = r.owner_id"
            ).fetchall()
        )


def add_account(server: RunningServer, email: str, role: str) -> None:
    """An account with a password, stored as ``pulseroom user add`` + its link would."""

    async def add() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{server.data_dir / 'pulseroom.db'}")
        try:
            await AccountStore(engine).create_user(email, role, PASSWORD)  # type: ignore[arg-type]
        finally:
            await engine.dispose()

    asyncio.run(add())


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["message"]
    return str(error["code"])


def test_only_enabled_instructors_and_admins_create_classes(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        admin = server.instructor()  # the first admin, by the setup link in the log
        add_account(server, "coach@example.com", "instructor")
        add_account(server, "ann@example.com", "participant")
        before = rooms(server)

        # Anonymous, or a cookie that is no session: 401, nothing stored.
        for cookies in ({}, {"pulseroom_session": "not-a-session"}):
            response = httpx.post(
                f"{server.url}/api/rooms", json={"title": "Free video"}, cookies=cookies
            )
            assert error_code(response, 401) == "login_required"
            assert "/login" in response.json()["error"]["message"]
        # A participant's account: 403, nothing stored.
        ann = LoggedIn.open(server.url, "", "ann@example.com", PASSWORD)
        try:
            response = ann.post("/api/rooms", json={"title": "Mine"})
            assert error_code(response, 403) == "forbidden"
        finally:
            ann.close()
        assert rooms(server) == before

        # An instructor: 201, the class is theirs; the admin's is the admin's.
        coach = LoggedIn.open(server.url, "", "coach@example.com", PASSWORD)
        try:
            created = coach.create_room("Coach's spin")
            mine = admin.create_room("Admin's yoga")
            assert set(rooms(server)) - set(before) == {
                (created["room"]["id"], "Coach's spin", "coach@example.com"),
                (mine["room"]["id"], "Admin's yoga", "instructor@pulseroom.test"),
            }
            # Disabled: the same session creates nothing from then on.
            disabled = pulseroom(server, "user", "disable", "coach@example.com")
            assert disabled.returncode == 0, disabled.stderr
            after = rooms(server)
            response = coach.post("/api/rooms", json={"title": "After hours"})
            assert error_code(response, 401) == "login_required"
            assert rooms(server) == after
        finally:
            coach.close()

        # Participants still join by link, with no account.
        asyncio.run(_joins(server, str(created["join_link"]), str(created["host_link"])))
    finally:
        stop_server(server)


async def _joins(server: RunningServer, join_link: str, host_link: str) -> None:
    """The links join as participant and as host, with no login."""
    for link, role in ((join_link, "participant"), (host_link, "host")):
        client = await Client(server.url).connect()
        try:
            ack = await client.join(link, "Ann" if role == "participant" else "Coach")
            assert ack["ok"] and ack["you"]["role"] == role, ack
        finally:
            await client.close()


def test_class_create_prints_working_links_and_refuses_others(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        server.instructor()  # an admin exists (the test instructor)
        add_account(server, "coach@example.com", "instructor")
        add_account(server, "ann@example.com", "participant")
        add_account(server, "gone@example.com", "instructor")
        assert pulseroom(server, "user", "disable", "gone@example.com").returncode == 0
        before = rooms(server)
        for email, says in (
            ("nobody@example.com", "no account for nobody@example.com"),
            ("gone@example.com", "disabled"),
            ("ann@example.com", "only instructors"),
            ("not an email", "not an email address"),
        ):
            result = pulseroom(server, "class", "create", "Spin", "--instructor", email, "--json")
            assert result.returncode == 1, (email, result.stdout)
            assert result.stderr.startswith("pulseroom class: ") and says in result.stderr, (
                email,
                result.stderr,
            )
            assert result.stdout == ""
        result = pulseroom(server, "class", "create", "", "--instructor", "coach@example.com")
        assert result.returncode == 1 and "title" in result.stderr, result.stderr
        assert rooms(server) == before

        result = pulseroom(
            server,
            "class",
            "create",
            " Tuesday HIIT ",
            "--instructor",
            "Coach@Example.com",
            "--json",
        )
        assert result.returncode == 0, result.stderr
        links = json.loads(result.stdout)
        assert set(links) == {"host_link", "join_link"}
        [(room_id, title, owner)] = set(rooms(server)) - set(before)
        assert (title, owner) == ("Tuesday HIIT", "coach@example.com")
        # Built as POST /api/rooms builds them, signed with the server's own secret.
        for link in links.values():
            assert link.startswith(f"{server.url}/r/{room_id}#t="), link
        asyncio.run(_joins(server, links["join_link"], links["host_link"]))
        # A bot joins with the printed link.
        bot = pulseroom(server, "bot", links["join_link"], "--seconds", "1", "--json")
        assert bot.returncode == 0, bot.stderr
        assert json.loads(bot.stdout)["you"]["role"] == "participant"

        human = pulseroom(server, "class", "create", "Yoga", "--instructor", "coach@example.com")
        assert human.returncode == 0, human.stderr
        assert "instructor link" in human.stdout and f"{server.url}/r/" in human.stdout
    finally:
        stop_server(server)
