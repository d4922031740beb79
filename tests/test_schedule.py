"""Classes on a schedule (issue 16, item 4), on real SQLite and PostgreSQL.

A class with a start time has a lobby: joins succeed, but nothing is published until the
instructor starts it (``start_class``), and then everyone in the lobby is told at once.
A weekly class is a series with one link: each week's session is a class of its own
(its own participants and summary), made by the first join, and ending one week's
session leaves the link leading to the next. Bad schedules are refused with a clear 400
and store nothing, from the API and from ``pulseroom class create`` alike. A database
from before migration 0010 keeps its classes working (instant: no lobby).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from pulseroom.hr_link import HeartRateLink
from signaling.schedule import OVERRUN_S, next_start, open_week
from signaling.tokens import TokenSigner
from storage import migrations
from storage.accounts import AccountStore
from storage.sessions import WEEK_S
from storage.store import RoomRecord, Store, create_engine
from telemetry.hrm import HeartRateMeasurement
from tests.conftest import ROOT
from tests.loopback import Loopback, loopback_server
from tests.sio_client import Client

SECRET = "5e1f2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff"


@asynccontextmanager
async def clients(url: str) -> AsyncIterator[Any]:
    """Makes connected Socket.IO clients that also record ``class_state``; closes them
    all afterwards."""
    made: list[Client] = []

    async def make() -> Client:
        client = Client(url)
        client.sio.on("class_state", client._recorder("class_state"))
        await client.connect()
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()


async def create(server: Loopback, **body: Any) -> Any:
    """``POST /api/rooms`` as the test instructor: the raw answer."""
    return await server.instructor.client.post(
        "/api/rooms", json={"title": "Spin", **body},
        headers={"X-CSRF-Token": server.instructor.csrf_token},
    )  # fmt: skip


async def room_count(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM rooms"))).scalar_one())
    finally:
        await engine.dispose()


async def stored_room(database_url: str, room_id: str) -> RoomRecord:
    engine = create_engine(database_url)
    try:
        room = await Store(engine).get_room(room_id)
    finally:
        await engine.dispose()
    assert room is not None
    return room


# -- the schedule's arithmetic -------------------------------------------------------------


def test_the_open_week_and_the_next_start() -> None:
    start = 1_800_000_000.0
    series = RoomRecord(
        "s", "Spin", 0.0, None, False, starts_at=start, duration_s=3600, weekly=True
    )
    closes = start + 3600 + OVERRUN_S
    assert open_week(series, start - 10 * WEEK_S) == 0  # created long before
    assert open_week(series, closes - 1) == 0  # running late: still this week
    assert open_week(series, closes) == 1
    assert open_week(series, closes + 3 * WEEK_S - 1) == 3
    assert next_start(series, start + 5 * WEEK_S - 60) == start + 5 * WEEK_S
    assert next_start(series, start + 1, frozenset({0})) == start + WEEK_S  # ended early
    once = RoomRecord("o", "Yoga", 0.0, None, False, starts_at=start, duration_s=600)
    assert next_start(once, start + 600 + OVERRUN_S - 1) == start
    assert next_start(once, start + 600 + OVERRUN_S) is None
    assert next_start(RoomRecord("i", "Now", 0.0, None, False), start) is None  # instant


# -- creating scheduled classes ------------------------------------------------------------


async def test_bad_schedules_are_refused_and_nothing_is_stored(
    database_url: str, tmp_path: Path
) -> None:
    settings = {"DATABASE_URL": database_url, "PULSEROOM_SECRET": SECRET}
    async with loopback_server(tmp_path / "data", **settings) as server:
        before = await room_count(database_url)
        now = time.time()
        bad: list[tuple[dict[str, Any], str]] = [
            ({"starts_at": now - 3600}, "past"),
            ({"starts_at": now + 400 * 86400}, "year"),
            ({"starts_at": now + 600, "duration_s": 0}, "duration_s"),
            ({"starts_at": now + 600, "duration_s": 8 * 3600 + 1}, "duration_s"),
            ({"starts_at": now + 600, "description": "x" * 2001}, "description"),
            ({"weekly": True}, "start time"),
            ({"duration_s": 1800}, "start time"),
            ({"starts_at": "tomorrow"}, "starts_at"),
        ]
        for body, says in bad:
            answer = await create(server, **body)
            assert answer.status_code == 400, (body, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "bad_request" and says in error["message"], (body, error)
        assert await room_count(database_url) == before

        starts = now + 600
        answer = await create(
            server, description="Bring water.\nTowel too.", starts_at=starts, weekly=True
        )
        assert answer.status_code == 201, answer.text
        room = answer.json()["room"]
        assert room["description"] == "Bring water.\nTowel too."
        assert room["starts_at"] == starts and room["duration_s"] == 3600  # the default
        assert room["weekly"] is True and room["started_at"] is None
        stored = await stored_room(database_url, room["id"])
        assert (stored.starts_at, stored.duration_s, stored.weekly) == (starts, 3600, True)
        assert await room_count(database_url) == before + 1


# -- the lobby -----------------------------------------------------------------------------


async def test_the_lobby_waits_for_the_instructor_to_start(
    database_url: str, tmp_path: Path
) -> None:
    settings = {"DATABASE_URL": database_url, "PULSEROOM_SECRET": SECRET}
    async with loopback_server(tmp_path / "data", **settings) as server, clients(server.url) as c:
        starts = time.time() + 300
        created = (await create(server, title="Early birds", starts_at=starts)).json()
        room_id = created["room"]["id"]
        ann = await c()
        ack = await ann.join(created["join_link"], "Ann")
        assert ack["ok"], ack
        state = ack["controls"]
        assert state["started"] is False and state["starts_at"] == starts
        assert state["clock_started_at"] is None
        # Nothing flows in the lobby: a publish is refused, and the participant cannot
        # start the class themselves.
        offer = {"v": 1, "type": "offer", "sdp": "v=0\r\n"}
        refused = await ann.call("publish", offer)
        assert refused["ok"] is False and refused["error"]["code"] == "not_started", refused
        refused = await ann.call("start_class", {"v": 1})
        assert refused["error"]["code"] == "forbidden", refused

        coach = await c()
        host_ack = await coach.join(created["host_link"], "Coach")
        assert host_ack["controls"]["started"] is False  # arriving does not start it
        assert host_ack["controls"]["clock_started_at"] is None
        assert (await coach.call("publish", offer))["error"]["code"] == "not_started"

        assert (await coach.call("start_class", {"v": 1}))["ok"]
        started = await ann.wait_for("class_state", lambda p: p["state"]["started"])
        assert started["state"]["starts_at"] == starts
        assert started["state"]["clock_started_at"] is not None  # the clock starts now
        # Media may flow now: the offer is judged on its merits, no longer on the lobby.
        answer = await ann.call("publish", offer)
        assert answer.get("error", {}).get("code") != "not_started", answer
        assert (await coach.call("start_class", {"v": 1}))["ok"]  # again: nothing happens
        assert len([p for p in ann.received["class_state"] if p["state"]["started"]]) == 1

        # Stored: a participant joining later (or after a restart) finds it started.
        assert (await stored_room(database_url, room_id)).started_at is not None
        late = await (await c()).join(created["join_link"], "Ben")
        assert late["controls"]["started"] is True


async def test_strap_bridges_in_the_lobby(database_url: str, tmp_path: Path) -> None:
    """A bridge joined by the class link waits in the lobby and sends once the class
    starts; one with a participant's device link sends from the lobby on (heart rate,
    no media, and only to the instructor)."""
    settings = {"DATABASE_URL": database_url, "PULSEROOM_SECRET": SECRET}
    async with loopback_server(tmp_path / "data", **settings) as server, clients(server.url) as c:
        created = (await create(server, title="Early", starts_at=time.time() + 300)).json()
        coach = await c()
        await coach.join(created["host_link"], "Coach")
        ann_ack = await (await c()).join(created["join_link"], "Ann")
        ann_id = ann_ack["you"]["id"]
        device = f"{server.url}/r/{created['room']['id']}#t={ann_ack['device_token']}"
        statuses: list[str] = []
        spare = HeartRateLink(created["join_link"], name="Spare strap", on_status=statuses.append)
        anns = HeartRateLink(device, name="Ann's strap")
        tasks = [asyncio.create_task(spare.run()), asyncio.create_task(anns.run())]
        try:
            await anns.wait_open(20)
            anns.send(HeartRateMeasurement(bpm=121))
            await coach.wait_for("hr", lambda p: p["readings"][0]["participant_id"] == ann_id, 10)
            await until(lambda: any("lobby" in s for s in statuses), "the spare strap waits")
            assert not any(s.startswith("sending") for s in statuses)

            assert (await coach.call("start_class", {"v": 1}))["ok"]
            await spare.wait_open(20)
            spare.send(HeartRateMeasurement(bpm=99))
            spare_id = spare.participant_id
            await coach.wait_for("hr", lambda p: p["readings"][0]["participant_id"] == spare_id, 10)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


# -- weekly series -------------------------------------------------------------------------


async def test_a_weekly_series_keeps_one_link_and_a_session_per_week(
    database_url: str, tmp_path: Path
) -> None:
    settings = {"DATABASE_URL": database_url, "PULSEROOM_SECRET": SECRET}
    async with loopback_server(tmp_path / "data", **settings) as server, clients(server.url) as c:
        starts = time.time() + 120
        made = await create(server, title="Weekly HIIT", starts_at=starts, weekly=True)
        created = made.json()
        series = created["room"]["id"]
        coach = await c()
        coach_ack = await coach.join(created["host_link"], "Coach")
        ann = await c()
        ann_ack = await ann.join(created["join_link"], "Ann")
        # The page's URL names the series; this week's session is a class of its own.
        assert coach_ack["room"]["id"] == ann_ack["room"]["id"] == series
        week0 = ann_ack["room"]["session_id"]
        assert week0 not in (None, series) and coach_ack["room"]["session_id"] == week0
        assert ann_ack["controls"]["starts_at"] == starts
        assert (await coach.call("start_class", {"v": 1}))["ok"]
        assert (await ann.call("chat", {"v": 1, "text": "week one"}))["ok"]
        assert (await coach.call("end_class", {"v": 1}))["ok"]

        # The same link now leads to next week's lobby, with an empty chat.
        ben = await (await c()).join(created["join_link"], "Ben")
        assert ben["ok"], ben
        week1 = ben["room"]["session_id"]
        assert week1 not in (None, week0)
        assert ben["controls"]["started"] is False
        assert ben["controls"]["starts_at"] == starts + WEEK_S
        assert ben["chat"] == []
        # Ann's rejoin token (of the series) finds the same week as the link does.
        ann_back = await (await c()).join(f"{server.url}/r/{series}#t={ann_ack['token']}", "Ann")
        assert ann_back["you"]["id"] == ann_ack["you"]["id"], ann_back
        assert ann_back["room"]["session_id"] == week1

        # Week one's summary stays reachable, with its own people only.
        summary = await server.instructor.client.get(
            f"/api/rooms/{week0}/summary",
            headers={"Authorization": f"Bearer {ann_ack['summary_token']}"},
        )
        assert summary.status_code == 200, summary.text
        assert [p["name"] for p in summary.json()["participants"]] == ["Ann"]

        # The list: the series first (upcoming), with next week's start and links;
        # each week with its own summary link and no links of its own.
        await create(server, title="Instant")
        listed = (await server.instructor.client.get("/api/classes")).json()["classes"]
        assert listed[0]["id"] == series and listed[0]["next_starts_at"] == starts + WEEK_S
        assert listed[0]["join_link"] and "summary_link" not in listed[0]
        weeks = {e["id"]: e for e in listed if e["series_id"] == series}
        assert set(weeks) == {week0, week1}
        assert weeks[week0]["ended_at"] is not None and weeks[week0]["summary_link"]
        assert "join_link" not in weeks[week1]
        assert [e["title"] for e in listed[1:]].count("Instant") == 1
        # A week's session has no links of its own to replace.
        answer = await server.instructor.client.post(
            f"/api/rooms/{week1}/links", headers={"X-CSRF-Token": server.instructor.csrf_token}
        )
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "series_session"


# -- the upgrade ---------------------------------------------------------------------------


async def test_classes_from_before_the_upgrade_have_no_lobby(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    room_id = "c0ffee000001"
    try:
        assert [m.version for m in await migrations.migrate(engine, target=9)] == list(range(1, 10))
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO rooms (id, title, created_at, ended_at, gallery, owner_id)"
                    " VALUES (:id, 'Old spin', 1796616212.5, NULL, FALSE, NULL)"
                ),
                {"id": room_id},
            )
        await Store(engine).add_participant(room_id, "ann000000001", "Ann", "participant")
    finally:
        await engine.dispose()
    token, _ = TokenSigner(SECRET.encode(), 3600).issue(
        room_id, "participant", participant_id="ann000000001"
    )
    settings = {"DATABASE_URL": database_url, "PULSEROOM_SECRET": SECRET}
    async with loopback_server(tmp_path / "data", **settings) as server, clients(server.url) as c:
        ack = await (await c()).join(f"{server.url}/r/{room_id}#t={token}", "Ann")
        assert ack["ok"] and ack["you"]["id"] == "ann000000001", ack
        assert ack["controls"]["started"] is True and ack["controls"]["starts_at"] is None
        assert ack["room"] == {
            "id": room_id, "title": "Old spin", "gallery": False, "description": "",
            "session_id": None,
        }  # fmt: skip
    room = await stored_room(database_url, room_id)
    assert (room.description, room.starts_at, room.weekly, room.series_id) == (
        "",
        None,
        False,
        None,
    )


# -- pulseroom class create ----------------------------------------------------------------


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulseroom.cli", "class", "create", *args],
        cwd=ROOT,
        env={
            **{
                k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PULSEROOM_SECRET")
            },
            "PULSEROOM_DATA_DIR": str(data_dir),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_class_create_schedules_from_the_shell(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pulseroom.db'}"

    async def prepare() -> None:
        async with migrations.migrated(url) as engine:
            await AccountStore(engine).create_user("coach@example.com", "instructor")

    asyncio.run(prepare())
    starts = datetime.fromtimestamp(time.time() + 86400, UTC).replace(microsecond=0)
    made = _cli(
        tmp_path, "Tuesday HIIT", "--instructor", "coach@example.com", "--starts",
        starts.isoformat(), "--duration", "45", "--weekly", "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert set(out) == {"host_link", "join_link"}  # as for an instant class
    room_id = out["join_link"].split("#t=")[0].rsplit("/r/", 1)[1]
    room = asyncio.run(stored_room(url, room_id))
    assert (room.starts_at, room.duration_s, room.weekly) == (starts.timestamp(), 2700, True)

    for args, says in (
        (["--starts", "2001-01-01T10:00+00:00"], "past"),
        (["--starts", "next tuesday"], "ISO 8601"),
        (["--starts", starts.isoformat(), "--duration", "0"], "--duration"),
        (["--weekly"], "start time"),
    ):
        refused = _cli(tmp_path, "Bad", "--instructor", "coach@example.com", *args)
        assert refused.returncode == 1 and says in refused.stderr, (args, refused.stderr)
    assert asyncio.run(room_count(url)) == 1
