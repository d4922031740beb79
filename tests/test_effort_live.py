"""Effort points live and after class, against a real server: who sees whose points.

Real server process, real Socket.IO clients and real aiortc data channels (as
tests/test_heart_rate.py). Health data (heart rate, zones, points with them) reaches
only the class's instructor and the participant it belongs to; the rest of the class
gets the leaderboard, names and points of those who did not opt out, and nothing more.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from signaling.effort import BOARD_INTERVAL_S
from tests.conftest import RunningServer
from tests.sio_client import Client
from tests.test_heart_rate import RawChannel, _get, _readings, _token, _until, reading

Connect = Callable[[], Any]
pytestmark = pytest.mark.shared_server


async def _send(client: Client, bpm: int, count: int) -> None:
    """``count`` readings one second apart, the last one a second ago, acknowledged."""
    raw = await RawChannel(client).open()
    now = int(time.time() * 1000)
    for i in range(count):
        raw.send(reading(i, bpm, t=now - (count - i) * 1000))
    await _until(lambda: sum(len(a["acks"]) for a in client.received["telemetry_ack"]) >= count)
    await raw.close()


def _boards(client: Client) -> list[list[dict[str, Any]]]:
    return [event["entries"] for event in client.received["leaderboard"]]


async def test_opted_out_points_never_reach_another_participant(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    host, ann, ben, cat = await connect(), await connect(), await connect(), await connect()
    assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
    ann_id = (await ann.join(str(room["join_link"]), "Ann"))["you"]["id"]
    ben_ack = await ben.join(str(room["join_link"]), "Ben")
    ben_id = ben_ack["you"]["id"]
    cat_ack = await cat.join(str(room["join_link"]), "Cat")
    assert cat_ack["effort"]["on_board"] is True and cat_ack["effort"]["leaderboard"] == []
    assert cat_ack["effort"]["settings"]["points_per_minute"] == [0, 1, 2, 3, 4, 4]

    opted = await ben.call("leaderboard_opt_out", {"v": 1, "opt_out": True})
    assert opted == {"ok": True, "on_board": False, "leaderboard": None}
    refused = await host.call("leaderboard_opt_out", {"v": 1, "opt_out": True})
    assert refused["error"]["code"] == "bad_request"

    # Default HRmax 183.5: 170 bpm is zone 5, 150 zone 4, both 4 points a minute. Ben
    # works longer, so he would top the board if it showed him.
    await _send(ann, 170, 6)
    await _send(ben, 150, 12)
    await _until(lambda: {r["participant_id"] for r in _readings(host)} == {ann_id, ben_id})
    last = {r["participant_id"]: r for r in _readings(host)}
    assert last[ann_id]["effort_points"] == round(4 * 6 / 60, 1)  # 5 gaps of 1 s, 1 s last
    assert last[ben_id]["effort_points"] == round(4 * 12 / 60, 1)
    assert last[ann_id]["target_progress"] is None  # no target set
    assert _readings(ann)[-1]["effort_points"] == 0.4  # her own, on her page

    await cat.wait_for("leaderboard", lambda e: e["entries"], timeout=3 * BOARD_INTERVAL_S)
    await asyncio.sleep(1.5 * BOARD_INTERVAL_S)  # another round, had it anything to add
    assert _boards(cat)[-1] == [{"participant_id": ann_id, "name": "Ann", "points": 0.4}]
    assert _boards(ann)[-1] == _boards(cat)[-1]
    for client in (ann, cat):
        seen = json.dumps([client.received["leaderboard"], client.received["hr"]])
        assert ben_id not in seen and "Ben" not in seen
    assert cat.received["hr"] == []  # heart rate is nobody else's business
    assert {r["participant_id"] for r in _readings(ann)} == {ann_id}
    assert ben.received["leaderboard"] == []  # off the board: he does not get it either
    assert host.received["leaderboard"] == []  # the instructor's page has every point

    # Back on: his ack has the board with him, and the others see him next round.
    back = await ben.call("leaderboard_opt_out", {"v": 1, "opt_out": False})
    assert [e["name"] for e in back["leaderboard"]] == ["Ben", "Ann"]
    await cat.wait_for(
        "leaderboard",
        lambda e: [x["participant_id"] for x in e["entries"]] == [ben_id, ann_id],
        timeout=3 * BOARD_INTERVAL_S,
    )
    # A rejoin keeps the choice (stored), and opting out again takes him off at once.
    await ben.call("leaderboard_opt_out", {"v": 1, "opt_out": True})
    await ben.close()
    again = await connect()
    rejoined = await again.join(
        str(room["join_link"]).split("#t=")[0] + f"#t={ben_ack['token']}", "Ben"
    )
    assert rejoined["you"]["id"] == ben_id
    assert rejoined["effort"]["on_board"] is False and rejoined["effort"]["leaderboard"] is None
    await cat.wait_for(
        "leaderboard",
        lambda e: [x["participant_id"] for x in e["entries"]] == [ann_id],
        timeout=3 * BOARD_INTERVAL_S,
    )


async def test_settings_are_the_instructors_and_reach_the_summary(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann, ben = await connect(), await connect(), await connect()
    assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    await ben.join(str(room["join_link"]), "Ben")

    good = {
        "v": 1,
        "points_per_minute": [0, 1, 2, 3, 5, 5],
        "target": {"kind": "zone_minutes", "value": 0.1, "from_zone": 4},
    }
    for bad in (
        {**good, "points_per_minute": [0, 1, 2, 3, 5]},
        {**good, "points_per_minute": [0, 1, 2, 3, 5, -5]},
        {**good, "target": {"kind": "zone_minutes", "value": 500}},
        {**good, "target": {"kind": "zone_minutes", "value": 6, "from_zone": 9}},
    ):
        ack = await host.call("effort_settings", bad)
        assert ack["ok"] is False and ack["error"]["code"] == "bad_request", ack
        assert ack["error"]["message"]  # says what is wrong
    assert (await ann.call("effort_settings", good))["error"]["code"] == "forbidden"
    await asyncio.sleep(0.2)
    assert ann.received["effort_settings"] == []  # nothing changed, nothing announced
    late = await (await connect()).join(str(room["join_link"]), "Dee")
    assert late["effort"]["settings"]["points_per_minute"] == [0, 1, 2, 3, 4, 4]

    ack = await host.call("effort_settings", good)
    assert ack["ok"] and ack["settings"]["target"] == good["target"]
    event = await ann.wait_for("effort_settings")
    assert event["settings"] == ack["settings"]

    await _send(ann, 170, 10)  # zone 5 for 10 s: 5 x 10 / 60 points, 6 s target met
    await _until(lambda: len(_readings(ann)) == 10)
    assert _readings(ann)[-1]["effort_points"] == 0.8
    assert _readings(ann)[-1]["target_progress"] == 1.0
    await host.call("end_class", {"v": 1})

    host_token = _token(str(room["host_link"]))
    summary = _get(server, room_id, "summary", host_token).json()
    assert "effort" in summary, summary
    assert summary["effort"] == ack["settings"]
    people = {p["name"]: p["summary"] for p in summary["participants"]}
    assert people["Ann"]["effort_points"] == 0.8
    assert people["Ann"]["effort_target_reached"] is True
    assert people["Ben"]["effort_points"] == 0.0
    assert people["Ben"]["effort_target_reached"] is False
    own = _get(server, room_id, "summary", ann_ack["token"]).json()["participants"]
    assert [p["summary"]["effort_points"] for p in own] == [0.8]

    rows = list(csv.DictReader(io.StringIO(_get(server, room_id, "summary.csv", host_token).text)))
    by_name = {r["name"]: r for r in rows}
    assert by_name["Ann"]["effort_points"] == "0.8"
    assert by_name["Ann"]["effort_target_reached"] == "yes"
    # Ben sent no heart rate: nothing measured, so empty cells rather than a "no" or zeros.
    assert by_name["Ben"]["effort_target_reached"] == "" and by_name["Ben"]["effort_points"] == ""
