"""Participant accounts (issue 16, item 6): sign up, a profile kept across classes, the
history of classes attended, export, and deleting the account with its data.

The server runs in the test's own loop (tests/loopback.py) on SQLite and PostgreSQL;
participants are real Socket.IO clients, their heart rate real readings on a real
WebRTC data channel (tests/test_heart_rate.py's RawChannel).
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from signaling.accounts_api import SESSION_COOKIE
from storage import migrations
from storage.participant_accounts import ParticipantAccounts
from storage.store import ProfileRecord, Store, create_engine
from tests.loopback import Loopback, loopback_server
from tests.sio_client import Client
from tests.test_heart_rate import RawChannel, reading
from tests.waiting import until

PASSWORD = "a long participant password"
PROFILE = {"age": 30, "max_hr": 190, "resting_hr": 55, "weight_kg": 61.5, "sex": "female"}


class Participant:
    """A participant's browser: a cookie jar and the session's CSRF token."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=20)
        self.csrf = ""

    async def signup(self, email: str, password: str = PASSWORD) -> httpx.Response:
        answer = await self.http.post(
            "/api/auth/signup", json={"email": email, "password": password}
        )
        if answer.status_code == 201:
            self.csrf = answer.json()["csrf_token"]
        return answer

    def send(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    async def join(self, link: str, name: str, logged_in: bool = True) -> tuple[Client, Any]:
        """Join a class by its link, sending the session cookie as a browser would."""
        client = Client(self.url)
        secret = self.http.cookies.get(SESSION_COOKIE)
        headers = {"Cookie": f"{SESSION_COOKIE}={secret}"} if logged_in and secret else {}
        await client.sio.connect(
            self.url, headers=headers, transports=["websocket"], wait_timeout=10
        )
        return client, await client.join(link, name)

    async def aclose(self) -> None:
        await self.http.aclose()


@asynccontextmanager
async def people(url: str, count: int) -> AsyncIterator[list[Participant]]:
    made = [Participant(url) for _ in range(count)]
    try:
        yield made
    finally:
        for person in made:
            await person.aclose()


async def heart_rate(client: Client, bpms: list[int]) -> None:
    """Send readings a second apart on the client's telemetry channel; wait for the acks."""
    raw = await RawChannel(client).open()
    start = int(time.time() * 1000) - len(bpms) * 1000
    for i, bpm in enumerate(bpms):
        raw.send(reading(i, bpm, t=start + i * 1000))
    await until(
        lambda: sum(len(a.get("acks", [])) for a in client.received["telemetry_ack"]) >= len(bpms),
        what="the server acknowledged every reading",
    )
    await raw.close()


async def summary(server: Loopback, room: dict[str, Any]) -> dict[str, Any]:
    token = str(room["host_link"]).split("#t=", 1)[1]
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        answer = await http.get(
            f"/api/rooms/{room['room']['id']}/summary", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


async def rows(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()


async def test_an_account_carries_its_profile_into_a_class_and_back_and_keeps_its_history(
    tmp_path: Path, database_url: str
) -> None:
    async with (
        loopback_server(tmp_path, DATABASE_URL=database_url) as server,
        people(server.url, 3) as (ann, bob, cid),
    ):
        assert (await ann.signup(" Ann@Example.org ")).status_code == 201
        assert (await cid.signup("cid@example.org")).status_code == 201
        put = await ann.send("PUT", "/api/me/profile", json=PROFILE)
        assert put.status_code == 200, put.text
        room = await server.create_room("Tuesday spin")
        room_id = str(room["room"]["id"])
        host = await Client(server.url).connect()
        clients = [host]
        try:
            assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
            ann_client, ann_ack = await ann.join(str(room["join_link"]), "Ann")
            bob_client, bob_ack = await bob.join(str(room["join_link"]), "Bob")
            # Cid is logged in, but joins without sending his cookie: an anonymous join.
            cid_client, cid_ack = await cid.join(str(room["join_link"]), "Cid", logged_in=False)
            clients += [ann_client, bob_client, cid_client]
            assert ann_ack["ok"] and bob_ack["ok"] and cid_ack["ok"]
            # The account's profile is the class's starting profile.
            assert ann_ack["profile"]["max_hr"] == 190 and ann_ack["profile"]["age"] == 30
            assert bob_ack["profile"]["max_hr"] is None
            await heart_rate(ann_client, [120, 150, 175, 182, 160])
            await heart_rate(bob_client, [100, 110, 120])
            # A change made in class goes back to the account.
            changed = {"v": 1, **PROFILE, "max_hr": 186}
            assert (await ann_client.call("profile", changed))["ok"]
            assert (await host.call("end_class", {"v": 1}))["ok"]
        finally:
            for client in clients:
                await client.close()

        kept = (await ann.http.get("/api/me/profile")).json()["profile"]
        assert kept["max_hr"] == 186 and kept["weight_kg"] == 61.5
        ann_id, bob_id = ann_ack["you"]["id"], bob_ack["you"]["id"]
        by_id = {p["id"]: p for p in (await summary(server, room))["participants"]}

        history = (await ann.http.get("/api/me/history")).json()
        [visit] = history["classes"]
        assert (visit["room_id"], visit["title"], visit["participant_id"]) == (
            room_id,
            "Tuesday spin",
            ann_id,
        )
        assert visit["summary"] == by_id[ann_id]["summary"]  # the class summary's figures
        assert visit["summary"]["peak_bpm"] == 182 and visit["readings"] == 5
        assert visit["summary_link"].startswith(f"/r/{room_id}/summary#t=")
        assert sum(w["classes"] for w in history["weeks"]) == 1
        assert history["weeks"][-1]["effort_points"] == visit["summary"]["effort_points"]
        # The history's summary link reads Ann's summary, and nobody else's.
        token = visit["summary_link"].split("#t=", 1)[1]
        own = await ann.http.get(
            f"/api/rooms/{room_id}/summary", headers={"Authorization": f"Bearer {token}"}
        )
        assert [p["id"] for p in own.json()["participants"]] == [ann_id]
        # Cid joined anonymously: his history is empty; Bob has no account at all.
        assert (await cid.http.get("/api/me/history")).json()["classes"] == []
        assert (await bob.http.get("/api/me/history")).status_code == 401

        exported = await ann.http.get("/api/me/export")
        assert exported.status_code == 200
        document = exported.json()
        assert document["account"]["email"] == "ann@example.org"
        [item] = document["classes"]
        assert [r["bpm"] for r in item["heart_rate"]] == [120, 150, 175, 182, 160]
        assert item["summary"] == by_id[ann_id]["summary"] and "summary_link" not in item
        table = await ann.http.get("/api/me/export", params={"format": "csv"})
        assert table.headers["Content-Type"].startswith("text/csv")
        [row] = list(csv.DictReader(io.StringIO(table.text)))
        assert (row["class_id"], row["name"], row["peak_bpm"]) == (room_id, "Ann", "182")
        assert float(row["average_bpm"]) == by_id[ann_id]["summary"]["average_bpm"]
        assert bob_id not in table.text and bob_id not in exported.text

        # Deleting: the password again, with the CSRF token.
        gone = await ann.send("DELETE", "/api/me", json={"password": PASSWORD})
        assert gone.status_code == 200, gone.text
        assert gone.json()["deleted"]["heart_rate"] == 5
        assert (await ann.http.get("/api/me/history")).status_code == 401  # logged out
        after = {p["id"]: p for p in (await summary(server, room))["participants"]}
        assert ann_id not in after and after[bob_id]["readings"] == 3
        for sql in (
            "SELECT 1 FROM heart_rate WHERE participant_id = :p",
            "SELECT 1 FROM participants WHERE id = :p",
            "SELECT 1 FROM account_visits WHERE participant_id = :p",
        ):
            assert await rows(database_url, sql, p=ann_id) == [], sql
        for sql in (
            "SELECT 1 FROM users WHERE email = 'ann@example.org'",
            "SELECT 1 FROM account_profiles WHERE user_id NOT IN (SELECT id FROM users)",
            "SELECT 1 FROM login_sessions WHERE user_id NOT IN (SELECT id FROM users)",
        ):
            assert await rows(database_url, sql) == [], sql
        assert len(await rows(database_url, "SELECT 1 FROM heart_rate")) == 3  # Bob's
        actions = await rows(
            database_url, "SELECT action FROM audit_log WHERE actor_label = 'ann@example.org'"
        )
        assert {"signup", "data_exported", "account_deleted"} <= {a for (a,) in actions}


async def test_bad_requests_are_refused_and_change_nothing(
    tmp_path: Path, database_url: str
) -> None:
    async with (
        loopback_server(tmp_path, DATABASE_URL=database_url) as server,
        people(server.url, 1) as (ann,),
    ):
        assert (await ann.http.get("/api/me/profile")).status_code == 401
        assert (await ann.signup("ann@example.org", "short")).status_code == 400
        assert (await ann.signup("ann@example.org")).status_code == 201
        again = await Participant(server.url).signup("ANN@example.org")
        assert again.status_code == 409 and again.json()["error"]["code"] == "email_taken"
        assert (await ann.send("PUT", "/api/me/profile", json=PROFILE)).status_code == 200
        for body in (
            {"max_hr": 999},
            {"age": "thirty"},
            {"resting_hr": 120, "max_hr": 110},
            {"sex": "other"},
            {"pets": 2},
            [1, 2],
        ):
            refused = await ann.send("PUT", "/api/me/profile", json=body)
            assert refused.status_code == 400, (body, refused.text)
        no_csrf = await ann.http.put("/api/me/profile", json={"age": 40})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf_failed"
        kept = (await ann.http.get("/api/me/profile")).json()["profile"]
        assert (kept["age"], kept["max_hr"], kept["sex"]) == (30, 190, "female")
        assert (await ann.http.get("/api/me/export?format=xml")).status_code == 400
        wrong = await ann.send("DELETE", "/api/me", json={"password": "not the password"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_credentials"
        assert (await ann.send("DELETE", "/api/me", json={})).status_code == 400
        assert (
            await ann.http.request("DELETE", "/api/me", json={"password": PASSWORD})
        ).status_code == 403
        assert (await ann.http.get("/api/me/history")).status_code == 200  # still there
        # A participant account never creates classes.
        made = await ann.send("POST", "/api/rooms", json={"title": "Mine"})
        assert made.status_code == 403 and made.json()["error"]["code"] == "forbidden"
        # Someone else's visit cannot be claimed with a made-up token.
        claim = await ann.send("POST", "/api/me/claim", json={"token": "x.y"})
        assert claim.status_code == 403
        # An instructor's session is not a participant account.
        instructor = server.instructor
        answer = await instructor.client.get("/api/me/history")
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"


async def test_signup_can_be_turned_off_and_is_throttled(tmp_path: Path) -> None:
    async with loopback_server(tmp_path / "off", PULSEROOM_PARTICIPANT_SIGNUP="0") as server:
        answer = await Participant(server.url).signup("ann@example.org")
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "signup_disabled"
    async with loopback_server(tmp_path / "on") as server, people(server.url, 1) as (one,):
        codes = []
        for i in range(11):
            one.http.cookies.clear()  # as a new browser: not logged in
            codes.append((await one.signup(f"p{i}@example.org")).status_code)
        assert codes == [201] * 10 + [429], codes


async def test_a_visit_made_without_logging_in_is_claimed_by_its_token(
    tmp_path: Path, database_url: str
) -> None:
    async with (
        loopback_server(tmp_path, DATABASE_URL=database_url) as server,
        people(server.url, 2) as (ann, cid),
    ):
        room = await server.create_room("Saturday")
        client, ack = await ann.join(str(room["join_link"]), "Ann", logged_in=False)
        await client.close()
        assert (await ann.signup("ann@example.org")).status_code == 201
        assert (await cid.signup("cid@example.org")).status_code == 201
        claimed = await ann.send("POST", "/api/me/claim", json={"token": ack["summary_token"]})
        assert claimed.status_code == 200, claimed.text
        [visit] = (await ann.http.get("/api/me/history")).json()["classes"]
        assert visit["participant_id"] == ack["you"]["id"]
        stolen = await cid.send("POST", "/api/me/claim", json={"token": ack["summary_token"]})
        assert stolen.status_code == 409 and stolen.json()["error"]["code"] == "already_claimed"
        assert (await cid.http.get("/api/me/history")).json()["classes"] == []
        host_token = str(room["host_link"]).split("#t=", 1)[1]
        host = await cid.send("POST", "/api/me/claim", json={"token": host_token})
        assert host.status_code == 403


async def test_a_learned_maximum_goes_back_to_the_account_after_an_upgrade(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        # A class with a participant in it, as release 0010 left it; then the upgrade.
        await migrations.migrate(engine, target=10)
        store = Store(engine)
        room = await store.create_room("Before accounts kept profiles")
        await store.add_participant(room.id, "ann", "Ann", "participant")
        async with engine.begin() as conn:  # as that release's set_profile did
            await conn.execute(text("UPDATE participants SET age = 40 WHERE id = 'ann'"))
        await store.add_participant(room.id, "bob", "Bob", "participant")
        await migrations.migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, role, disabled, created_at)"
                    " VALUES ('u1', 'ann@example.org', 'participant', FALSE, 0)"
                )
            )
        accounts = ParticipantAccounts(engine)
        # No account profile yet: the class's becomes the account's.
        assert await accounts.link("u1", room.id, "ann") == ProfileRecord(age=40)
        assert await accounts.profile("u1") == ProfileRecord(age=40)
        learned = ProfileRecord(age=40, max_hr=190, max_hr_learned=True)
        await store.set_profile(room.id, "ann", learned)  # as telemetry/max_hr.py's raise does
        assert await accounts.profile("u1") == learned
        await store.set_profile(room.id, "bob", ProfileRecord(age=70))  # not linked
        assert await accounts.profile("u1") == learned
        # A second class starts from the account's profile.
        other = await store.create_room("Next week")
        await store.add_participant(other.id, "ann2", "Ann", "participant")
        assert await accounts.link("u1", other.id, "ann2") == learned
        person = await store.participant(other.id, "ann2")
        assert person is not None and person.profile == learned
        assert [v.room.id for v in await accounts.visits("u1")] == [other.id, room.id]
    finally:
        await engine.dispose()


async def test_first_class_and_personal_best_are_suggested_to_the_instructor(
    tmp_path: Path,
) -> None:
    """Milestones only an account shows (issue 18, item 6): a participant's first class,
    and passing the effort points of their best earlier class; not for anonymous ones."""
    async with loopback_server(tmp_path) as server, people(server.url, 2) as (ann, bob):
        assert (await ann.signup("ann@example.org")).status_code == 201
        for week, seconds in enumerate((5, 12)):
            room = await server.create_room(f"Week {week}")
            coach = Client(server.url)
            await coach.connect()
            assert (await coach.join(str(room["host_link"]), "Coach"))["ok"]
            client, ack = await ann.join(str(room["join_link"]), "Ann")
            anonymous, _ = await bob.join(str(room["join_link"]), "Bob")
            try:
                if week == 0:
                    first = await coach.wait_for("milestone", lambda e: e["kind"] == "first_class")
                    assert first["participant_id"] == ack["you"]["id"] and "Ann" in first["text"]
                await heart_rate(client, [180] * (seconds + 1))  # zone 5: 4 points a minute
                await heart_rate(anonymous, [180] * (seconds + 1))
                if week == 1:
                    best = await coach.wait_for(
                        "milestone", lambda e: e["kind"] == "personal_best", 10
                    )
                    assert best["participant_id"] == ack["you"]["id"], best
                await coach.wait_for("milestone", lambda e: e["kind"] == "zone_5", 10)
                await asyncio.sleep(2.5)  # another leaderboard round: nothing more is said
                kinds = sorted(
                    (e["name"], e["kind"]) for e in coach.received["milestone"]
                    if e["kind"] in ("first_class", "personal_best")
                )  # fmt: skip
                assert kinds == [("Ann", "first_class" if week == 0 else "personal_best")]
                assert (await coach.call("end_class", {"v": 1}))["ok"]
            finally:
                for each in (coach, client, anonymous):
                    await each.close()
