"""Shout-outs and the milestones that suggest them (issue 18, item 6), on a real server
in this event loop with readings over a real data channel: a shout-out reaches the
participant it names and the instructor, nobody else; only the instructor sends one;
bad input changes nothing; reaching the class's effort target and zone 5 are suggested
to the instructor once each, and to nobody else.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.loopback import loopback_server
from tests.sio_client import Client
from tests.test_heart_rate import RawChannel, reading


async def test_a_shout_out_reaches_its_participant_and_the_instructor_only(tmp_path: Path) -> None:
    async with loopback_server(tmp_path) as server:
        room = await server.create_room("Praise")
        coach, ann, ben, tv = [await Client(server.url).connect() for _ in range(4)]
        try:
            coach_id = (await coach.join(str(room["host_link"]), "Coach Ana"))["you"]["id"]
            ann_id = (await ann.join(str(room["join_link"]), "Ann"))["you"]["id"]
            assert (await ben.join(str(room["join_link"]), "Ben"))["ok"]
            board_token = str(room["board_link"]).split("#t=", 1)[1]
            joined = {"v": 1, "token": board_token, "name": "Studio TV", "room": room["room"]["id"]}
            assert (await tv.call("join", joined))["ok"]
            sent = await coach.call("shout_out", {"v": 1, "participant_id": ann_id})
            assert sent["ok"] and sent["shout_out"]["text"] == "Great push, Ann!", sent
            custom = {"v": 1, "participant_id": ann_id, "text": "Strong finish!"}
            assert (await coach.call("shout_out", custom))["ok"]
            got = await ann.wait_for(
                "shout_out", lambda e: e["shout_out"]["text"] == "Strong finish!"
            )
            assert got["shout_out"]["from"] == "Coach Ana" and got["shout_out"]["name"] == "Ann"
            await coach.wait_for("shout_out", lambda e: e["shout_out"]["text"] == "Strong finish!")
            # The studio's TV board shows it too.
            await tv.wait_for("shout_out", lambda e: e["shout_out"]["text"] == "Strong finish!")
            # Refused, and nothing sent: a participant, an unknown id, the instructor, bad text.
            refusals = [
                (ben, {"participant_id": ann_id}, "forbidden"),
                (tv, {"participant_id": ann_id}, "forbidden"),
                (coach, {"participant_id": "nobody"}, "not_found"),
                (coach, {"participant_id": coach_id}, "not_found"),
                (coach, {"participant_id": ann_id, "text": "two\nlines"}, "bad_request"),
                (coach, {"participant_id": ann_id, "text": "x" * 121}, "bad_request"),
                (coach, {"participant_id": ann_id, "extra": 1}, "bad_request"),
            ]
            for client, body, code in refusals:
                answer = await client.call("shout_out", {"v": 1, **body})
                assert answer["error"]["code"] == code, (body, answer)
            await asyncio.sleep(0.3)
            assert len(ann.received["shout_out"]) == 2 and ben.received["shout_out"] == []
        finally:
            for client in (coach, ann, ben, tv):
                await client.close()


async def test_milestones_are_suggested_to_the_instructor_once(tmp_path: Path) -> None:
    async with loopback_server(tmp_path) as server:
        room = await server.create_room("Effort")
        coach, ann = [await Client(server.url).connect() for _ in range(2)]
        try:
            assert (await coach.join(str(room["host_link"]), "Coach"))["ok"]
            settings = {
                "v": 1,
                "points_per_minute": [0, 1, 2, 3, 4, 4],
                "target": {"kind": "points", "value": 0.1},
            }
            assert (await coach.call("effort_settings", settings))["ok"]
            ann_id = (await ann.join(str(room["join_link"]), "Ann"))["you"]["id"]
            raw = await RawChannel(ann).open()
            now = int(time.time() * 1000)
            for i in range(6):  # 180 bpm: zone 5 of the default profile, 4 points a minute
                raw.send(reading(i, 180, t=now - (6 - i) * 1000))
            seen = await coach.wait_for("milestone", lambda e: e["kind"] == "target_reached", 10)
            assert seen["participant_id"] == ann_id and "Ann" in seen["text"]
            await coach.wait_for("milestone", lambda e: e["kind"] == "zone_5", 5)
            for i in range(6, 9):
                raw.send(reading(i, 181, t=now - (9 - i) * 1000 + 500))
            await asyncio.sleep(2.5)  # another leaderboard round: nothing new to suggest
            kinds = sorted(e["kind"] for e in coach.received["milestone"])
            assert kinds == ["target_reached", "zone_5"], coach.received["milestone"]
            assert ann.received["milestone"] == []
            await raw.close()
        finally:
            for client in (coach, ann):
                await client.close()
