"""Who may come into a class, as stored (issues 16 and 17): removals and link generations.

A participant the instructor removed stays out: their id, so every token bound to it
(rejoin, device), is refused, across reconnects, a server restart and every node of the
shared database. Replacing a class's links (``POST /api/rooms/{room_id}/links``) refuses
every earlier link and the rejoin and device tokens they gave, while the instructor's own
sessions carry on. On real SQLite and PostgreSQL, with real servers: in this event loop
(tests/loopback.py) and, for the restart, as subprocesses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from signaling.tokens import TokenSigner
from storage import migrations
from storage.accounts import AccountStore
from storage.audit import AuditEntry, AuditLog
from storage.store import Store, create_engine
from tests.cluster_nodes import Cluster, cluster_fixture, link_on
from tests.conftest import start_server, stop_server
from tests.instructor import EMAIL as INSTRUCTOR
from tests.loopback import Loopback, loopback_server
from tests.sio_client import Client

SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff"
PASSWORD = "another account's password"


@asynccontextmanager
async def clients(url: str) -> AsyncIterator[Any]:
    """Makes connected Socket.IO clients; closes them all afterwards."""
    made: list[Client] = []

    async def make() -> Client:
        client = await Client(url).connect()
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()


def refused(ack: dict[str, Any], code: str) -> None:
    assert ack["ok"] is False, ack
    assert ack["error"]["code"] == code, ack
    assert ack["error"]["message"]


def bound(link: str, ack: dict[str, Any], key: str = "token") -> str:
    """The link with a join ack's bound (or device) token instead of the link's own."""
    return f"{link.split('#t=')[0]}#t={ack[key]}"


async def join_device(client: Client, ack: dict[str, Any]) -> dict[str, Any]:
    """Join as the strap bridge of the participant whose join ack this is."""
    payload = {"v": 1, "token": ack["device_token"], "name": "strap", "room": ack["room"]["id"]}
    return await client.call("join", payload)


async def chat(client: Client, words: str) -> dict[str, Any]:
    return await client.call("chat", {"v": 1, "text": words})


# -- the store ------------------------------------------------------------------------------


async def test_removals_and_generations_are_stored(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrations.migrate(engine)
        store = Store(engine)
        accounts = AccountStore(engine)
        owner = await accounts.create_user("coach@example.com", "instructor")
        room = await store.create_room("Spin", owner_id=owner.id)
        other = await store.create_room("Yoga")
        assert room.generation == 0 and not await store.is_removed(room.id, "p1")
        await store.remove_participant(room.id, "p1", "coach")
        await store.remove_participant(room.id, "p1", "coach2")  # idempotent
        assert await store.is_removed(room.id, "p1")
        assert not await store.is_removed(room.id, "p2")
        assert not await store.is_removed(other.id, "p1")  # per class

        assert await store.replace_links(room.id) == 1
        assert await store.replace_links(room.id) == 2
        assert await _generation(store, room.id) == 2
        [(listed, _joined)] = await store.rooms_of(owner.id)
        assert listed.generation == 2
        assert await _generation(store, other.id) == 0
        # Unknown or ended: nothing changes.
        assert await store.replace_links("no-such-class") is None
        await store.end_room(room.id)
        assert await store.replace_links(room.id) is None
        assert await _generation(store, room.id) == 2

        # Erasing a participant's data (or the class's, by retention) keeps the removal:
        # an erase must not let them back in.
        await store.forget_participant(room.id, "p1")
        await store.forget_class(room.id)
        assert await store.is_removed(room.id, "p1")
    finally:
        await engine.dispose()


async def _generation(store: Store, room_id: str) -> int:
    room = await store.get_room(room_id)
    assert room is not None
    return room.generation


def _payload(token: str) -> dict[str, Any]:
    body = token.split(".")[0]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return data


async def test_upgrade_keeps_classes_and_their_links_working(
    database_url: str, tmp_path: Path
) -> None:
    """A database as release 0004 left it, with a class, its instructor and a participant
    in it, upgrades at the server's start: the tokens that release signed (no generation)
    still let them in, and a removal and a link replacement then work on it."""
    engine = create_engine(database_url)
    signer = TokenSigner(SECRET.encode(), 3600)
    room_id = "e345d2987fc5"
    try:
        assert [m.version for m in await migrations.migrate(engine, target=4)] == [1, 2, 3, 4]
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO rooms (id, title, created_at, ended_at, gallery, owner_id)"
                    " VALUES (:id, 'Tuesday spin', 1796616212.5, NULL, FALSE, NULL)"
                ),
                {"id": room_id},
            )
        await Store(engine).add_participant(room_id, "ann000000001", "Ann", "participant")
        await Store(engine).add_participant(room_id, "coach0000001", "Coach", "host")
    finally:
        await engine.dispose()
    # What release 0004 signed: no "g" in the payload (generation 0 still leaves it out).
    ann_token, _ = signer.issue(room_id, "participant", participant_id="ann000000001")
    coach_token, _ = signer.issue(room_id, "host", participant_id="coach0000001")
    join_token, _ = signer.issue(room_id, "participant")
    assert "g" not in _payload(ann_token)

    settings = {"DATABASE_URL": database_url, "PULSEROOM_SECRET": SECRET}
    async with (
        loopback_server(tmp_path / "data", **settings) as server,
        clients(server.url) as connect,
    ):
        link = f"{server.url}/r/{room_id}#t="
        coach = await connect()
        coach_ack = await coach.join(link + coach_token, "Coach")
        assert coach_ack["ok"] and coach_ack["you"]["id"] == "coach0000001", coach_ack
        ann = await (await connect()).join(link + ann_token, "Ann")
        assert ann["ok"] and ann["you"]["id"] == "ann000000001", ann
        assert ann["room"]["title"] == "Tuesday spin"
        assert (await (await connect()).join(link + join_token, "Ben"))["ok"]
        # The class (made before accounts: no owner) can still lose a participant.
        removal = {"v": 1, "participant_id": "ann000000001"}
        assert (await coach.call("remove", removal))["ok"]
        refused(await (await connect()).join(link + ann_token, "Ann"), "removed")
    engine = create_engine(database_url)
    try:
        assert await migrations.pending(engine) == []
        store = Store(engine)
        assert await store.is_removed(room_id, "ann000000001")
        assert await _generation(store, room_id) == 0
        [entry] = await AuditLog(engine).entries(action="participant_removed")
        assert entry.actor_label == f"host coach0000001 of class {room_id}"
        assert entry.target == f"participant ann000000001 of class {room_id}"
    finally:
        await engine.dispose()


# -- replacing a class's links ------------------------------------------------------------


async def replace(server: Loopback, room_id: str, **kwargs: Any) -> httpx.Response:
    """``POST /api/rooms/{room_id}/links`` as the test instructor (the class's owner)."""
    return await server.instructor.client.post(
        f"/api/rooms/{room_id}/links", headers={"X-CSRF-Token": server.instructor.csrf_token},
        **kwargs,
    )  # fmt: skip


async def test_replaced_links_and_their_tokens_are_refused(
    database_url: str, tmp_path: Path
) -> None:
    signer = TokenSigner(SECRET.encode(), 3600)
    settings = {"DATABASE_URL": database_url, "PULSEROOM_SECRET": SECRET}
    async with (
        loopback_server(tmp_path / "data", **settings) as server,
        clients(server.url) as connect,
    ):
        created = await server.create_room("Rotating")
        room_id = created["room"]["id"]
        old_host, old_join = str(created["host_link"]), str(created["join_link"])
        coach = await connect()
        coach_ack = await coach.join(old_host, "Coach")
        ann = await connect()
        ann_ack = await ann.join(old_join, "Ann")
        assert (await join_device(await connect(), ann_ack))["ok"]
        # The instructor's join ack carries the class link's token, to invite people from
        # the class; a participant's does not.
        assert "join_token" not in ann_ack
        invited = await (await connect()).join(bound(old_join, coach_ack, "join_token"), "Cy")
        assert invited["ok"] and invited["you"]["role"] == "participant", invited

        answer = await replace(server, room_id)
        assert answer.status_code == 200, answer.text
        fresh = answer.json()
        assert fresh["room"] == {"id": room_id, "title": "Rotating"}
        new_host, new_join = fresh["host_link"], fresh["join_link"]
        assert new_join.startswith(f"{server.url}/r/{room_id}#t=") and new_join != old_join
        assert signer.verify(new_join.split("#t=")[1]).generation == 1

        # The old links, and the rejoin and device tokens they gave, let no one in.
        for link in (
            old_join,
            old_host,
            bound(old_join, ann_ack),
            bound(old_join, coach_ack, "join_token"),
        ):
            refused(await (await connect()).join(link, "Eve"), "link_replaced")
        refused(await join_device(await connect(), ann_ack), "link_replaced")
        # Those in the class stay; the instructor's own tokens keep working.
        assert (await chat(ann, "still here"))["ok"]
        assert (await chat(coach, "still teaching"))["ok"]
        coach_back = await (await connect()).join(bound(old_host, coach_ack), "Coach")
        assert coach_back["ok"] and coach_back["you"]["id"] == coach_ack["you"]["id"]
        assert (await join_device(await connect(), coach_back))["ok"]  # their strap too
        # ... and the class link they are given now is the new one.
        assert (await (await connect()).join(bound(old_host, coach_back, "join_token"), "Di"))["ok"]

        # The new links work; a rejoin token from them expires with the link it came from.
        ben = await (await connect()).join(new_join, "Ben")
        assert ben["ok"], ben
        for key in ("token", "device_token"):
            grant = signer.verify(ben[key], room_id=room_id)
            assert grant.generation == 1 and grant.expires_at == fresh["expires_at"]
        ben_back = await (await connect()).join(bound(new_join, ben), "Ben")
        assert ben_back["ok"] and ben_back["you"]["id"] == ben["you"]["id"]
        assert (await (await connect()).join(new_host, "Coach"))["ok"]

        # The instructor's list mints links of the current generation.
        listed = (await server.instructor.client.get("/api/classes")).json()["classes"]
        [entry] = [c for c in listed if c["id"] == room_id]
        assert signer.verify(entry["join_link"].split("#t=")[1]).generation == 1

        # Again: the links of generation 1 go the same way.
        assert (await replace(server, room_id)).status_code == 200
        refused(await (await connect()).join(new_join, "Eve"), "link_replaced")
        refused(await (await connect()).join(bound(new_join, ben_back), "Ben"), "link_replaced")
    # Each replacement is in the audit log: who, which class, which generation.
    assert [(e.actor_label, e.target, e.detail) for e in await _audit(database_url)] == [
        (INSTRUCTOR, f"class {room_id}", {"generation": g}) for g in (2, 1)
    ]


async def _audit(database_url: str, action: str = "link_rotated") -> list[AuditEntry]:
    engine = create_engine(database_url)
    try:
        return await AuditLog(engine).entries(action=action)
    finally:
        await engine.dispose()


async def test_bad_callers_cannot_replace_links(database_url: str, tmp_path: Path) -> None:
    """Anonymous callers, class tokens, other accounts, unknown and ended classes: a clear
    4xx each, and the links keep working."""
    settings = {"DATABASE_URL": database_url, "PULSEROOM_SECRET": SECRET}
    async with (
        loopback_server(tmp_path / "data", **settings) as server,
        clients(server.url) as connect,
        httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous,
    ):
        created = await server.create_room("Mine")
        room_id = created["room"]["id"]
        path = f"/api/rooms/{room_id}/links"
        ann = await (await connect()).join(str(created["join_link"]), "Ann")
        host_token = str(created["host_link"]).split("#t=")[1]
        engine = create_engine(database_url)
        try:
            accounts = AccountStore(engine)
            await accounts.create_user("other@example.com", "instructor", PASSWORD)
            await accounts.create_user("pat@example.com", "participant", PASSWORD)
        finally:
            await engine.dispose()

        cases: list[tuple[int, str, httpx.Response]] = []
        for token in (None, ann["token"], host_token):  # a class token is no login
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            cases.append((401, "login_required", await anonymous.post(path, headers=headers)))
        # Logged in, but without the session's CSRF token (a page of another site).
        no_csrf = await server.instructor.client.post(path)
        cases.append((403, "csrf_failed", no_csrf))
        for email in ("other@example.com", "pat@example.com"):
            async with _logged_in(server.url, email) as (client, csrf):
                answer = await client.post(path, headers={"X-CSRF-Token": csrf})
                cases.append((403, "forbidden", answer))
        cases.append((404, "room_not_found", await replace(server, "nosuchclass1")))
        cases.append((404, "not_found", await replace(server, "a/b")))
        for status, code, answer in cases:
            assert answer.status_code == status, (code, answer.text)
            assert answer.json()["error"]["code"] == code, answer.text
            assert answer.json()["error"]["message"]

        # Nothing changed: the links of generation 0 still let people in.
        assert (await (await connect()).join(str(created["join_link"]), "Ben"))["ok"]
        assert (await (await connect()).join(bound(str(created["join_link"]), ann), "Ann"))["ok"]

        # An ended class keeps its links as they were.
        coach = await connect()
        assert (await coach.join(str(created["host_link"]), "Coach"))["ok"]
        assert (await coach.call("end_class", {"v": 1}))["ok"]
        answer = await replace(server, room_id)
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "room_ended"
        engine = create_engine(database_url)
        try:
            assert await _generation(Store(engine), room_id) == 0
        finally:
            await engine.dispose()
        assert await _audit(database_url) == []


@asynccontextmanager
async def _logged_in(url: str, email: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answer = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        yield client, str(answer.json()["csrf_token"])


# -- across a restart ----------------------------------------------------------------------


async def test_removal_and_replacement_survive_a_restart(database_url: str, tmp_path: Path) -> None:
    """What the instructor decided holds in a server process started afresh on the same
    database (as it would on another node sharing it): nothing of it lives in memory."""
    env = {"DATABASE_URL": database_url}
    first = start_server(tmp_path, **env)
    try:
        created = first.create_room("Restarted")
        join_link = str(created["join_link"])
        async with clients(first.url) as connect:
            coach = await connect()
            coach_ack = await coach.join(str(created["host_link"]), "Coach")
            ann_ack = await (await connect()).join(join_link, "Ann")
            bob_ack = await (await connect()).join(join_link, "Bob")
            removal = {"v": 1, "participant_id": ann_ack["you"]["id"]}
            assert (await coach.call("remove", removal))["ok"]
            # Another instructor session (the host link went where it should not): removed
            # too. Its bound host token would outlive a link replacement; not a removal.
            intruder = await (await connect()).join(str(created["host_link"]), "Not the coach")
            removal = {"v": 1, "participant_id": intruder["you"]["id"]}
            assert (await coach.call("remove", removal))["ok"]
        room_id = created["room"]["id"]
        answer = first.instructor().post(f"/api/rooms/{room_id}/links")
        assert answer.status_code == 200, answer.text
        new_join = answer.json()["join_link"]
    finally:
        stop_server(first)

    second = start_server(tmp_path, **env)
    try:
        async with clients(second.url) as connect:
            # Ann: removed (her rejoin and device tokens both); Bob: his link was replaced.
            refused(await (await connect()).join(bound(join_link, ann_ack), "Ann"), "removed")
            refused(await join_device(await connect(), ann_ack), "removed")
            refused(await (await connect()).join(bound(join_link, intruder), "x"), "removed")
            refused(await (await connect()).join(bound(join_link, bob_ack), "Bob"), "link_replaced")
            refused(await (await connect()).join(join_link, "Eve"), "link_replaced")
            # The instructor comes back; the new link lets people in.
            back = await (await connect()).join(bound(join_link, coach_ack), "Coach")
            assert back["ok"] and back["you"]["id"] == coach_ack["you"]["id"]
            assert (await (await connect()).join(new_join, "Bob"))["ok"]
    finally:
        stop_server(second)


# -- on another node ----------------------------------------------------------------------


@pytest.fixture(name="cluster")
def cluster_(tmp_path: Path, postgres_url: str) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, postgres_url)


async def test_another_node_refuses_what_the_holder_was_told(cluster: Cluster) -> None:
    """Two nodes on one PostgreSQL and Redis: a removal made on the class's node and a
    link replaced through the other hold on the other when it takes the class over."""
    a, b = cluster.start_node("a"), cluster.start_node("b")
    await _until(lambda: len(cluster.live()) == 2, "both nodes beat")
    created = a.create_room("Two nodes")
    room_id, join_link = str(created["room"]["id"]), str(created["join_link"])
    async with clients(a.url) as connect:
        coach = await connect()
        coach_ack = await coach.join(str(created["host_link"]), "Coach")
        assert coach_ack["ok"] and cluster.holder(room_id) == cluster.node_id(a)
        ann_ack = await (await connect()).join(join_link, "Ann")
        bob_ack = await (await connect()).join(join_link, "Bob")
        removal = {"v": 1, "participant_id": ann_ack["you"]["id"]}
        assert (await coach.call("remove", removal))["ok"]
        # The links are replaced through the node that does not hold the class.
        answer = b.instructor().post(f"/api/rooms/{room_id}/links")
        assert answer.status_code == 200, answer.text
        new_join = link_on(answer.json()["join_link"], b)
        cluster.kill(a)

    async with clients(b.url) as connect:

        async def join(link: str, name: str) -> dict[str, Any]:
            """Join through b once it has taken the class over from the dead a."""
            for _ in range(100):
                ack = await (await connect()).join(link_on(link, b), name)
                if ack.get("error", {}).get("code") != "moved":
                    return ack
                await asyncio.sleep(0.1)
            raise AssertionError("b never took the class over")

        refused(await join(bound(join_link, ann_ack), "Ann"), "removed")
        assert cluster.holder(room_id) == cluster.node_id(b)
        refused(await join(bound(join_link, bob_ack), "Bob"), "link_replaced")
        refused(await join(join_link, "Eve"), "link_replaced")
        back = await join(bound(join_link, coach_ack), "Coach")
        assert back["ok"] and back["you"]["id"] == coach_ack["you"]["id"], back
        assert (await join(new_join, "Bob"))["ok"]


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)
