"""The class board: the studio TV's read-only session (signaling/board.py).

Real server processes, real Socket.IO clients, a real strap bridge (HeartRateLink over
an aiortc data channel): the board sees everyone's heart rate like the instructor, is
nobody in the class, and can do nothing but watch.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pulseroom.hr_link import HeartRateLink
from telemetry.hrm import HeartRateMeasurement
from tests.conftest import RunningServer
from tests.test_heart_rate import _readings, _until

Connect = Callable[[], Any]

pytestmark = pytest.mark.shared_server


def _token(link: str) -> str:
    return link.split("#t=", 1)[1]


async def _join_board(client: Any, room: dict[str, Any]) -> dict[str, Any]:
    link = str(room["board_link"])
    room_id = str(room["room"]["id"])
    assert link.startswith(f"{link.split('/r/')[0]}/r/{room_id}/board#t=")
    ack: dict[str, Any] = await client.call(
        "join", {"v": 1, "token": _token(link), "name": "Studio TV", "room": room_id}
    )
    return ack


def _stored_people(server: RunningServer, room_id: str) -> set[str]:
    with sqlite3.connect(server.data_dir / "pulseroom.db") as db:
        rows = db.execute("SELECT id FROM participants WHERE room_id = ?", (room_id,)).fetchall()
    return {str(row[0]) for row in rows}


async def test_the_board_sees_everyones_heart_rate_and_is_nobody(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann, ben, board = await connect(), await connect(), await connect(), await connect()
    host_ack = await host.join(str(room["host_link"]), "Coach")
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    assert (await ben.join(str(room["join_link"]), "Ben"))["ok"]
    ann_id = ann_ack["you"]["id"]

    ack = await _join_board(board, room)
    assert ack["ok"], ack
    assert ack["you"]["role"] == "board"
    names = sorted(p["name"] for p in ack["participants"])
    assert names == ["Ann", "Ben", "Coach"]  # the board itself is not among them
    # No rejoin, device or summary token: it reads nothing afterwards and acts for no one.
    assert not {"token", "device_token", "summary_token"} & ack.keys()
    assert "board_link" not in host_ack and "board_token" not in ann_ack

    link = HeartRateLink(f"{server.url}/r/{room_id}#t={ann_ack['device_token']}", name="strap")
    task = asyncio.create_task(link.run())
    try:
        await link.wait_open(20)
        for bpm in (120, 151, 160):
            link.send(HeartRateMeasurement(bpm=bpm, contact=True, rr=()))
            await asyncio.sleep(0.05)
        await _until(lambda: len(_readings(board, ann_id)) == 3)
        await _until(lambda: len(_readings(host, ann_id)) == 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    shown = _readings(board, ann_id)
    assert [r["bpm"] for r in shown] == [120, 151, 160]
    assert shown[-1]["zone"] == 4 and "effort_points" in shown[-1]
    assert ben.received["hr"] == []  # still nobody else's business

    # A board that comes later starts from everyone's latest reading, like the instructor.
    late = await connect()
    late_ack = await _join_board(late, room)
    assert [r["bpm"] for r in late_ack["heart_rates"]] == [160]

    # Nobody was told it came or went, and it is stored nowhere (no summary lists it).
    await board.call("leave", {"v": 1})
    await late.close()
    await ann.call("chat", {"v": 1, "text": "after the boards"})
    await host.wait_for("chat", lambda m: m["message"]["text"] == "after the boards")
    for client in (host, ann, ben):
        joined = [e["participant"]["role"] for e in client.received["participant_joined"]]
        assert "board" not in joined
        left = {e["id"] for e in client.received["participant_left"]}
        assert ack["you"]["id"] not in left and late_ack["you"]["id"] not in left
    assert _stored_people(server, room_id) == {
        host_ack["you"]["id"],
        ann_id,
        *(p["id"] for p in ack["participants"] if p["name"] == "Ben"),
    }


async def test_a_board_can_only_watch(server: RunningServer, connect: Connect) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann, board = await connect(), await connect(), await connect()
    assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    ack = await _join_board(board, room)
    assert ack["ok"], ack

    sdp = "v=0\r\n"
    for event, payload in [
        ("chat", {"v": 1, "text": "hello from the TV"}),
        ("publish", {"v": 1, "type": "offer", "sdp": sdp}),
        ("media_state", {"v": 1, "audio": True, "video": True}),
        ("profile", {"v": 1, "age": 30}),
        ("leaderboard_opt_out", {"v": 1, "opt_out": True}),
        ("gallery", {"v": 1, "enabled": True}),
        ("lock", {"v": 1, "locked": True}),
        ("mute", {"v": 1, "participant_id": ann_ack["you"]["id"]}),
        ("remove", {"v": 1, "participant_id": ann_ack["you"]["id"]}),
        ("end_class", {"v": 1}),
    ]:
        answer = await board.call(event, payload)
        assert answer["error"]["code"] in ("forbidden", "bad_request"), (event, answer)
        if answer["error"]["code"] == "bad_request":  # the payload was wrong: not the point
            pytest.fail(f"{event}: {answer}")
    # What it may send: where its tiles are and how big, and the time.
    assert (await board.call("visibility", {"v": 1, "visible": [], "sizes": {}}))["ok"]
    assert (await board.call("time", {"v": 1}))["ok"]
    assert ann.received["chat"] == [] and ann.received["muted"] == []
    assert ann.received["class_ended"] == []

    # The instructor cannot mute or remove the board (it is nobody in the class).
    for event in ("mute", "remove"):
        answer = await host.call(event, {"v": 1, "participant_id": ack["you"]["id"]})
        assert answer["error"]["code"] == "not_found", (event, answer)

    # A board link reads no class data (summaries, exports).
    board_token = _token(str(room["board_link"]))
    async with httpx.AsyncClient(timeout=10) as http:
        summary = await http.get(
            f"{server.url}/api/rooms/{room_id}/summary",
            headers={"Authorization": f"Bearer {board_token}"},
        )
    assert summary.status_code == 403 and summary.json()["error"]["code"] == "forbidden"


async def test_only_the_owner_gets_a_board_link(server: RunningServer, connect: Connect) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    listed = server.instructor().client.get("/api/classes").json()["classes"]
    mine = next(c for c in listed if c["id"] == room_id)
    assert _token(mine["board_link"]).split(".")[0] and "/board#t=" in mine["board_link"]
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(f"{server.url}/api/classes")).status_code == 401

    # A participant cannot make their link a board link: the role is signed.
    ann = await connect()
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    body, mac = ann_ack["token"].split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["role"] = "board"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    sneak = await connect()
    answer = await sneak.call(
        "join", {"v": 1, "token": f"{forged}.{mac}", "name": "TV", "room": room_id}
    )
    assert answer["error"]["code"] == "invalid_token"
    # Nor does their link, opened at /r/{id}/board, make them anything but a participant.
    again = await connect()
    as_self = await again.call(
        "join", {"v": 1, "token": _token(str(room["join_link"])), "name": "Ann2", "room": room_id}
    )
    assert as_self["you"]["role"] == "participant"
    assert again.received["hr"] == []


async def test_boards_are_limited_and_a_replaced_link_voids_them(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    boards = [await connect() for _ in range(4)]
    acks = [await _join_board(b, room) for b in boards]
    assert all(a["ok"] for a in acks[:3]), acks
    assert acks[3]["error"]["code"] == "room_full"

    replaced = server.instructor().post(f"/api/rooms/{room_id}/links")
    assert replaced.status_code == 200
    fresh = replaced.json()
    assert fresh["board_link"] != room["board_link"]
    old = await connect()
    assert (await _join_board(old, room))["error"]["code"] == "link_replaced"
    await boards[0].close()
    new = await connect()
    assert (await _join_board(new, {**room, "board_link": fresh["board_link"]}))["ok"]
