"""Per-class quotas on stored rows (issue 17, item 8), on a real server in this event
loop: past ``PULSEROOM_MAX_CHAT_PER_CLASS`` a chat message is refused and nothing is
stored, also from a new session; past ``PULSEROOM_MAX_READINGS_PER_PARTICIPANT`` a
participant's readings are refused (and named in ``telemetry_ack``'s ``refused``, so the
client stops re-sending them), also after they rejoin: the count starts from the database.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from tests.loopback import loopback_server
from tests.sio_client import Client
from tests.test_heart_rate import RawChannel, reading
from tests.waiting import until


def _count(tmp_path: Path, sql: str) -> int:
    with sqlite3.connect(tmp_path / "pulseroom.db") as db:
        return int(db.execute(sql).fetchone()[0])


async def test_a_class_stores_chat_up_to_its_quota(tmp_path: Path) -> None:
    async with loopback_server(tmp_path, PULSEROOM_MAX_CHAT_PER_CLASS=3) as server:
        room = await server.create_room("Chatty")
        for name in ("Ann", "Bob"):  # the quota is the class's, not a session's
            client = await Client(server.url).connect()
            try:
                assert (await client.join(str(room["join_link"]), name))["ok"]
                for i in range(2):
                    answer = await client.call("chat", {"v": 1, "text": f"{name} {i}"})
                    if name == "Bob" and i == 1:
                        assert answer["error"]["code"] == "quota_exceeded", answer
                        assert "3 chat messages" in answer["error"]["message"]
                    else:
                        assert answer["ok"], answer
            finally:
                await client.close()
        assert _count(tmp_path, "SELECT count(*) FROM chat_messages") == 3


async def test_a_participant_stores_readings_up_to_their_quota(tmp_path: Path) -> None:
    async with loopback_server(tmp_path, PULSEROOM_MAX_READINGS_PER_PARTICIPANT=5) as server:
        room = await server.create_room("Strap")
        now = int(time.time() * 1000)
        link = str(room["join_link"])
        for visit, seqs in enumerate((range(0, 8), range(8, 10))):
            ann = await Client(server.url).connect()
            try:
                joined = await ann.join(link, "Ann")
                assert joined["ok"], joined
                link = f"{link.split('#t=')[0]}#t={joined['token']}"  # she rejoins as herself
                raw = await RawChannel(ann).open()
                for seq in seqs:
                    raw.send(reading(seq, 120, t=now - (20 - seq) * 1000))

                def refused(
                    client: Client = ann, expected: int = len(seqs) - 5 * (1 - visit)
                ) -> bool:
                    named = [
                        r for a in client.received["telemetry_ack"] for r in a.get("refused", [])
                    ]
                    return len(named) >= expected

                await until(refused)
                errors = [e for e in ann.received["error"] if e["code"] == "quota_exceeded"]
                assert errors and "5 readings" in errors[0]["message"]
                await raw.close()
            finally:
                await ann.close()
        # Only the first five, of both visits together, were stored.
        await until(lambda: _count(tmp_path, "SELECT count(*) FROM heart_rate") == 5)
        await asyncio.sleep(0.5)
        assert _count(tmp_path, "SELECT max(seq) FROM heart_rate") == 4
