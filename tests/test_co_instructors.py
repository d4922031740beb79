"""Co-instructors (issue 16, item 5): the class's creator gives another instructor host
rights, on a real server in this event loop with real logins, a real Socket.IO class and
SQLite and PostgreSQL underneath.

The co-instructor finds the class in their own list with links minted for them and hosts
it; taking the rights away (or disabling the account) refuses those links, the tokens
their join gave and their summary link, while the class's own links keep working. Only
the creator manages co-instructors; bad requests change nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from storage import migrations
from storage.accounts import AccountStore
from storage.co_instructors import CoInstructors
from storage.store import Store, create_engine
from tests.instructor import EMAIL, with_session
from tests.loopback import loopback_server
from tests.sio_client import Client

PASSWORD = "a co-instructor's password"


async def _accounts(database_url: str, *people: tuple[str, str]) -> None:
    async with migrations.migrated(database_url) as engine:
        for email, role in people:
            await AccountStore(engine).create_user(email, role, PASSWORD)  # type: ignore[arg-type]


@asynccontextmanager
async def _logged_in(url: str, email: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client with ``email``'s session cookie and its CSRF token on every request."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answer = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = with_session(client.headers, answer)
        yield client


@asynccontextmanager
async def _clients(url: str) -> AsyncIterator[Any]:
    made: list[Client] = []

    async def make() -> Client:
        made.append(await Client(url).connect())
        return made[-1]

    try:
        yield make
    finally:
        for client in made:
            await client.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(link: str) -> str:
    return link.split("#t=", 1)[1]


async def _co(client: httpx.AsyncClient, room_id: str, **body: Any) -> httpx.Response:
    return await client.post(f"/api/rooms/{room_id}/co-instructors", json=body)


def _code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


async def test_a_co_instructor_hosts_until_the_creator_takes_it_back(
    database_url: str, tmp_path: Path
) -> None:
    await _accounts(
        database_url, ("bea@example.com", "instructor"), ("pat@example.com", "participant")
    )
    settings = {"DATABASE_URL": database_url}
    async with (
        loopback_server(tmp_path / "data", **settings) as server,
        _logged_in(server.url, "bea@example.com") as bea,
        _clients(server.url) as connect,
    ):
        owner = server.instructor
        created = await owner.create_room("Saturday spin")
        room_id = created["room"]["id"]
        path = f"/api/rooms/{room_id}/co-instructors"
        csrf = {"X-CSRF-Token": owner.csrf_token}

        # Before: Bea sees nothing of it and may change nothing.
        assert (await bea.get("/api/classes")).json()["classes"] == []
        assert (await bea.get(path)).status_code == 403
        refused = await _co(bea, room_id, email="bea@example.com")
        assert refused.status_code == 403 and _code(refused) == "forbidden"

        # Bad requests from the creator: a clear error each, nothing stored.
        async def add(body: Any, headers: dict[str, str] = csrf) -> httpx.Response:
            return await owner.client.post(path, json=body, headers=headers)

        assert _code(await add({"email": "bea@example.com"}, headers={})) == "csrf_failed"
        assert _code(await add({"email": "nobody@example.com"})) == "user_not_found"
        assert _code(await add({"email": "pat@example.com"})) == "not_instructor"
        assert _code(await add({"email": EMAIL})) == "not_instructor"  # own
        for bad in ({}, {"email": 5}, {"email": "bea@example.com", "role": "admin"}, [1]):
            answer = await add(bad)
            assert answer.status_code == 400 and _code(answer) == "bad_request", bad
        unknown = await owner.client.post(
            "/api/rooms/0123456789ab/co-instructors", json={"email": "bea@example.com"},
            headers=csrf,
        )  # fmt: skip
        assert unknown.status_code == 404 and _code(unknown) == "room_not_found"
        assert (await owner.client.get(path)).json()["co_instructors"] == []

        # The creator adds Bea (twice: the second changes nothing).
        for _ in range(2):
            added = await add({"email": " Bea@Example.com "})
            assert added.status_code == 200, added.text
        listing = added.json()
        assert [c["email"] for c in listing["co_instructors"]] == ["bea@example.com"]
        assert listing["owner"]["email"] == EMAIL
        bea_id = listing["co_instructors"][0]["user_id"]
        assert (await bea.get(path)).json() == listing  # a co-instructor may look
        assert (await _co(bea, room_id, email="pat@example.com")).status_code == 403

        # Bea's list has the class, with links minted for her; she hosts beside the creator.
        (entry,) = (await bea.get("/api/classes")).json()["classes"]
        assert entry["id"] == room_id and entry["hosting"] == "co_instructor"
        creator_entry = (await owner.client.get("/api/classes")).json()["classes"][0]
        assert creator_entry["hosting"] == "creator"
        coach = await (await connect()).join(created["host_link"], "Coach")
        bea_ack = await (await connect()).join(entry["host_link"], "Bea")
        assert bea_ack["ok"] and bea_ack["you"]["role"] == "host", bea_ack
        ann = await (await connect()).join(entry["join_link"], "Ann")
        assert ann["ok"] and ann["you"]["role"] == "participant", ann
        assert {p["name"] for p in coach["participants"]} == {"Coach"}
        summary = await bea.get(f"/api/rooms/{room_id}/summary", headers=_bearer(
            _token(entry["summary_link"])))  # fmt: skip
        assert summary.status_code == 200 and "Ann" in summary.text
        preview = await bea.get(f"/api/rooms/{room_id}/preview", headers=_bearer(
            _token(entry["host_link"])))  # fmt: skip
        assert preview.status_code == 200 and preview.json()["role"] == "host"
        # Co-instructing is not creating: no new links, no managing co-instructors.
        rotated = await bea.post(f"/api/rooms/{room_id}/links")
        assert rotated.status_code == 403

        # The creator takes the rights back: everything minted for Bea is refused ...
        gone = await owner.client.delete(f"{path}/{bea_id}", headers=csrf)
        assert gone.status_code == 200 and gone.json()["co_instructors"] == []
        again = await owner.client.delete(f"{path}/{bea_id}", headers=csrf)
        assert again.status_code == 404 and _code(again) == "user_not_found"
        assert (await bea.get("/api/classes")).json()["classes"] == []
        for link in (entry["host_link"], f"{server.url}/r/{room_id}#t={bea_ack['token']}"):
            refused_join = await (await connect()).join(link, "Bea")
            assert refused_join["error"]["code"] == "host_revoked", refused_join
        for token in (_token(entry["summary_link"]), bea_ack["summary_token"]):
            answer = await bea.get(f"/api/rooms/{room_id}/summary", headers=_bearer(token))
            assert answer.status_code == 403 and _code(answer) == "host_revoked"
        preview = await bea.get(f"/api/rooms/{room_id}/preview", headers=_bearer(
            _token(entry["host_link"])))  # fmt: skip
        assert preview.status_code == 403 and _code(preview) == "host_revoked"
        # ... and the class's own links are as they were.
        assert (await (await connect()).join(created["host_link"], "Coach"))["ok"]
        assert (await (await connect()).join(entry["join_link"], "Ben"))["ok"]

        # Given back, then the account disabled: refused again.
        assert (await add({"email": "bea@example.com"})).status_code == 200
        (entry,) = (await bea.get("/api/classes")).json()["classes"]
        assert (await (await connect()).join(entry["host_link"], "Bea"))["ok"]
        engine = create_engine(database_url)
        try:
            await AccountStore(engine).set_disabled("bea@example.com")
        finally:
            await engine.dispose()
        refused_join = await (await connect()).join(entry["host_link"], "Bea")
        assert refused_join["error"]["code"] == "host_revoked", refused_join

        entries = (await owner.client.get("/api/admin/audit")).json()["entries"]
        actions = [e["action"] for e in entries if e["action"].startswith("co_instructor")]
        assert actions == ["co_instructor_added", "co_instructor_removed", "co_instructor_added"]


async def test_co_instructing_a_series_covers_its_weeks(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'pulseroom.db'}"
    await _accounts(database_url, ("bea@example.com", "instructor"))
    settings = {"DATABASE_URL": database_url}
    async with (
        loopback_server(tmp_path / "data", **settings) as server,
        _logged_in(server.url, "bea@example.com") as bea,
        _clients(server.url) as connect,
    ):
        owner = server.instructor
        made = await owner.client.post(
            "/api/rooms", headers={"X-CSRF-Token": owner.csrf_token},
            json={"title": "Weekly HIIT", "starts_at": time.time() + 120, "weekly": True},
        )  # fmt: skip
        series = made.json()["room"]["id"]
        added = await owner.client.post(
            f"/api/rooms/{series}/co-instructors", json={"email": "bea@example.com"},
            headers={"X-CSRF-Token": owner.csrf_token},
        )  # fmt: skip
        assert added.status_code == 200, added.text
        (entry,) = (await bea.get("/api/classes")).json()["classes"]
        ack = await (await connect()).join(entry["host_link"], "Bea")
        assert ack["ok"] and ack["you"]["role"] == "host", ack
        week = ack["room"]["session_id"]
        assert week not in (None, series)
        # This week's session: in Bea's list, its summary hers to read; its co-instructors
        # are the series'.
        titles = {c["id"]: c for c in (await bea.get("/api/classes")).json()["classes"]}
        assert titles.keys() == {series, week}
        assert titles[week]["hosting"] == "co_instructor"
        summary = await bea.get(f"/api/rooms/{week}/summary", headers=_bearer(ack["summary_token"]))
        assert summary.status_code == 200, summary.text
        refused = await owner.client.post(
            f"/api/rooms/{week}/co-instructors", json={"email": "bea@example.com"},
            headers={"X-CSRF-Token": owner.csrf_token},
        )  # fmt: skip
        assert refused.status_code == 409 and _code(refused) == "series_session"


async def test_the_upgrade_keeps_classes_and_takes_co_instructors(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        applied = await migrations.migrate(engine, target=10)
        assert [m.version for m in applied] == list(range(1, 11))
        await AccountStore(engine).create_user("bea@example.com", "instructor")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO rooms (id, title, created_at, ended_at, gallery, owner_id)"
                    " VALUES ('c0ffee000002', 'Old spin', 1796616212.5, NULL, FALSE, NULL)"
                )
            )
        await migrations.migrate(engine)
        room = await Store(engine).get_room("c0ffee000002")
        assert room is not None and room.title == "Old spin" and room.owner_id is None
        bea = await AccountStore(engine).user_by_email("bea@example.com")
        assert bea is not None
        hosts = CoInstructors(engine)
        assert not await hosts.may_host(room.id, bea.id)
        assert await hosts.add(room.id, bea.id) and not await hosts.add(room.id, bea.id)
        assert await hosts.may_host(room.id, bea.id)
        assert [r.id for r, _ in await hosts.rooms_of(bea.id)] == [room.id]
        assert [c.email for c in await hosts.of_class(room.id)] == ["bea@example.com"]
        assert await hosts.remove(room.id, bea.id) and not await hosts.may_host(room.id, bea.id)
    finally:
        await engine.dispose()
