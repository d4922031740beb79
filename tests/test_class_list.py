"""The instructor's home lists their own classes (issue 16, item 5): ``GET /api/classes``
on a real server in this event loop, with real logins and a real Socket.IO class.

Each class not yet ended comes with a host link minted for the logged-in owner (the
link need not be kept anywhere) and every class with a summary link whose token reads
the summary only. Another instructor sees none of them; anonymous callers and
participants' accounts are refused.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from storage.accounts import AccountStore
from storage.store import create_engine
from tests.loopback import loopback_server
from tests.sio_client import Client

PASSWORD = "another instructor's password"


async def _account(data_dir: Path, email: str, role: str) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'pulseroom.db'}")
    try:
        await AccountStore(engine).create_user(email, role, PASSWORD)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def _login(url: str, email: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=30)
    answer = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return client


def _token(link: str) -> str:
    return link.split("#t=", 1)[1]


async def test_an_instructor_lists_their_own_classes_with_fresh_links(tmp_path: Path) -> None:
    async with loopback_server(tmp_path) as server:
        first = await server.create_room("Monday spin")
        second = await server.create_room("Tuesday HIIT")
        # Monday's class runs (one participant) and ends.
        host, ann = Client(server.url), Client(server.url)
        await host.connect()
        await ann.connect()
        try:
            assert (await host.join(str(first["host_link"]), "Coach"))["ok"]
            assert (await ann.join(str(first["join_link"]), "Ann"))["ok"]
            assert (await host.call("end_class", {"v": 1}))["ok"]
        finally:
            await host.close()
            await ann.close()

        listed = await server.instructor.client.get("/api/classes")
        assert listed.status_code == 200, listed.text
        classes = listed.json()["classes"]
        assert [c["title"] for c in classes] == ["Tuesday HIIT", "Monday spin"]
        tuesday, monday = classes
        assert monday["id"] == first["room"]["id"] and monday["ended_at"] is not None
        assert monday["participants"] == 1 and "host_link" not in monday
        assert tuesday["ended_at"] is None and tuesday["participants"] == 0
        # A class not ended: a host link minted now, which joins as the instructor.
        assert tuesday["host_link"].startswith(f"{server.url}/r/{second['room']['id']}#t=")
        coach = Client(server.url)
        await coach.connect()
        try:
            ack = await coach.join(tuesday["host_link"], "Coach")
            assert ack["ok"] and ack["you"]["role"] == "host", ack
        finally:
            await coach.close()
        # Every class: a summary link that reads everyone's summary and joins nothing.
        summary = await server.instructor.client.get(
            f"/api/rooms/{monday['id']}/summary",
            headers={"Authorization": f"Bearer {_token(monday['summary_link'])}"},
        )
        assert summary.status_code == 200, summary.text
        assert sorted(p["name"] for p in summary.json()["participants"]) == ["Ann", "Coach"]
        thief = Client(server.url)
        await thief.connect()
        try:
            link = tuesday["summary_link"].replace("/summary#", "#")
            refused = await thief.join(link, "Coach")
            assert refused["error"]["code"] == "invalid_token", refused
        finally:
            await thief.close()

        # Someone else's classes are not listed; no login or a participant's gets none.
        await _account(tmp_path, "other@example.com", "instructor")
        await _account(tmp_path, "pat@example.com", "participant")
        other = await _login(server.url, "other@example.com")
        pat = await _login(server.url, "pat@example.com")
        try:
            assert (await other.get("/api/classes")).json() == {"classes": []}
            answer = await pat.get("/api/classes")
            assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"
            answer = await httpx.AsyncClient(base_url=server.url).get("/api/classes")
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "login_required"
        finally:
            await other.aclose()
            await pat.aclose()
