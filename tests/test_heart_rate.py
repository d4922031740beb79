"""Heart rate end to end: data channel → validation → fan-out → database → summary.

Real server processes (with their SFU workers), real Socket.IO clients and real aiortc
data channels; nothing in between is replaced.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from pulseroom.hr_link import HeartRateLink
from telemetry.hrm import HeartRateMeasurement
from tests.conftest import RunningServer, free_port, start_server, stop_server
from tests.loopback import loopback_server
from tests.sio_client import Client

Connect = Callable[[], Any]

# Tests taking the `server` fixture make classes of their own on one shared server; the
# server-wide counters they check are compared before and after (tests/conftest.py).
pytestmark = pytest.mark.shared_server


def _token(link: str) -> str:
    return link.split("#t=", 1)[1]


def _device_link(server: RunningServer, room_id: str, ack: dict[str, Any]) -> str:
    return f"{server.url}/r/{room_id}#t={ack['device_token']}"


def _stored(server: RunningServer, room_id: str) -> list[tuple[str, int, int]]:
    with sqlite3.connect(server.data_dir / "pulseroom.db") as db:
        rows = db.execute(
            "SELECT participant_id, seq, bpm FROM heart_rate WHERE room_id = ? ORDER BY seq",
            (room_id,),
        ).fetchall()
    return [(str(p), int(s), int(b)) for p, s, b in rows]


def _names(server: RunningServer, room_id: str) -> list[str]:
    with sqlite3.connect(server.data_dir / "pulseroom.db") as db:
        rows = db.execute("SELECT name FROM participants WHERE room_id = ?", (room_id,))
        return sorted(str(name) for (name,) in rows.fetchall())


def _readings(client: Client, participant_id: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for event in client.received["hr"]
        for r in event["readings"]
        if participant_id is None or r["participant_id"] == participant_id
    ]


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def _link_task(link: HeartRateLink) -> asyncio.Task[None]:
    task = asyncio.create_task(link.run())
    await link.wait_open(20)
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class RawChannel:
    """A joined participant's publish connection carrying only a telemetry channel."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.pc = RTCPeerConnection()
        self.channel: RTCDataChannel = self.pc.createDataChannel("telemetry")
        self.opened = asyncio.Event()
        self.channel.on("open", self.opened.set)

    async def open(self) -> RawChannel:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        ack = await self.client.call(
            "publish", {"v": 1, "type": "offer", "sdp": self.pc.localDescription.sdp}
        )
        assert ack["ok"], ack
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
        await asyncio.wait_for(self.opened.wait(), 20)
        return self

    def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        self.channel.send(text)

    async def close(self) -> None:
        await self.pc.close()


def reading(seq: int, bpm: int, t: int | None = None) -> dict[str, Any]:
    return {"v": 1, "type": "hr", "seq": seq, "t": t or int(time.time() * 1000), "bpm": bpm}


async def test_readings_reach_the_instructor_and_their_owner_only(
    server: RunningServer, connect: Connect
) -> None:
    before = server.stats()["heart_rate"]
    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann, ben = await connect(), await connect(), await connect()
    assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    assert (await ben.join(str(room["join_link"]), "Ben"))["ok"]
    ann_id = ann_ack["you"]["id"]

    # Ann's strap bridge, with her device link: it acts for her, and only for her.
    link = HeartRateLink(_device_link(server, room_id, ann_ack), name="Ann's strap")
    task = await _link_task(link)
    try:
        assert link.participant_id == ann_id
        sent = [131, 138, 142, 150, 163]
        for bpm in sent:
            link.send(HeartRateMeasurement(bpm=bpm, contact=True, rr=(470,)))
            await asyncio.sleep(0.05)
        await _until(lambda: len(_readings(host, ann_id)) == len(sent))
        arrived = time.time()
        await link.wait_acked()
    finally:
        await _stop(task)

    shown = _readings(host, ann_id)
    assert [r["bpm"] for r in shown] == sent
    assert [r["seq"] for r in shown] == [0, 1, 2, 3, 4]
    # Default profile: age 35 → HRmax 183.5 (Tanaka); 163 bpm is 89 % → zone 4.
    assert shown[-1]["pct_max"] == round(100 * 163 / 183.5)
    assert shown[-1]["zone"] == 4 and shown[-1]["zone_name"] == "hard"
    assert arrived - shown[-1]["received_at"] < 1.0
    assert [r["bpm"] for r in _readings(ann)] == sent  # her own tile
    assert ben.received["hr"] == []  # health data is not the class's business
    assert {r["participant_id"] for r in _readings(host)} == {ann_id}
    # The device is nobody in the roster.
    assert all(p["participant"]["role"] != "device" for p in host.received["participant_joined"])
    assert _stored(server, room_id) == [(ann_id, i, bpm) for i, bpm in enumerate(sent)]
    stats = server.stats()["heart_rate"]
    assert stats["accepted"] - before.get("accepted", 0) == 5
    assert stats.get("rejected", 0) - before.get("rejected", 0) == 0
    assert stats["durable"] - before.get("durable", 0) == 5
    assert stats["fanout_lag_p99_s"] < 0.25


async def test_class_link_bridge_joins_as_its_own_participant(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    host = await connect()
    await host.join(str(room["host_link"]), "Coach")
    link = HeartRateLink(str(room["join_link"]), name="Spare strap")
    task = await _link_task(link)
    try:
        joined = await host.wait_for("participant_joined")
        assert joined["participant"]["name"] == "Spare strap"
        assert joined["participant"]["id"] == link.participant_id
        link.send(HeartRateMeasurement(bpm=99))
        await _until(lambda: len(_readings(host, link.participant_id)) == 1)
    finally:
        await _stop(task)


async def test_malformed_messages_are_refused_counted_and_change_nothing(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann = await connect(), await connect()
    await host.join(str(room["host_link"]), "Coach")
    ann_id = (await ann.join(str(room["join_link"]), "Ann"))["you"]["id"]
    rejected_before = server.stats()["heart_rate"].get("rejected", 0)
    raw = await RawChannel(ann).open()
    try:
        bad = [
            "not json",
            json.dumps({**reading(1, 120), "bpm": 500}),  # out of range
            json.dumps({**reading(2, 120), "extra": 1}),  # unknown field
            json.dumps({**reading(3, 120), "bpm": "120"}),  # wrong type
            json.dumps({**reading(4, 120), "pad": "x" * 2000}),  # oversize
            json.dumps(reading(5, 120, t=int((time.time() + 3600) * 1000))),  # an hour ahead
            json.dumps({**reading(6, 120), "v": 2}),  # unknown version
        ]
        for message in bad:
            raw.send(message)
        raw.send(reading(7, 121))  # the channel still works
        await _until(lambda: len(_readings(host)) == 1)
        await _until(
            lambda: server.stats()["heart_rate"].get("rejected", 0) - rejected_before == len(bad)
        )
        error = await ann.wait_for("error", lambda e: e["code"] == "bad_reading")
        assert error["event"] == "telemetry"
        # The reading from an hour ahead parsed, so the sender is told to stop re-sending it.
        ahead = json.loads(bad[5])
        refused = await ann.wait_for("telemetry_ack", lambda a: a.get("refused"))
        assert refused["refused"] == [[5, ahead["t"]]]
    finally:
        await raw.close()
    assert _readings(host)[0]["seq"] == 7
    await _until(lambda: _stored(server, room_id) == [(ann_id, 7, 121)])


async def test_a_resent_reading_is_shown_and_stored_once(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann = await connect(), await connect()
    await host.join(str(room["host_link"]), "Coach")
    ann_id = (await ann.join(str(room["join_link"]), "Ann"))["you"]["id"]
    raw = await RawChannel(ann).open()
    try:
        same = reading(0, 140)
        for _ in range(3):
            raw.send(same)
        raw.send(reading(1, 141))
        await _until(lambda: len(ann.received["telemetry_ack"]) >= 1)
        await _until(lambda: len(_stored(server, room_id)) == 2)
        await asyncio.sleep(0.3)
    finally:
        await raw.close()
    assert [r["seq"] for r in _readings(host)] == [0, 1]
    assert _stored(server, room_id) == [(ann_id, 0, 140), (ann_id, 1, 141)]
    acked = {tuple(pair) for event in ann.received["telemetry_ack"] for pair in event["acks"]}
    assert (0, same["t"]) in acked  # a re-send is acknowledged too, so the sender stops


async def test_profile_sets_the_zones(server: RunningServer, connect: Connect) -> None:
    room = server.create_room()
    host, ann = await connect(), await connect()
    await host.join(str(room["host_link"]), "Coach")
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    assert ann_ack["profile"]["hr_max"] == 184  # the age-35 estimate, before she says more
    refused = await ann.call("profile", {"v": 1, "age": 5})
    assert refused["ok"] is False and refused["error"]["code"] == "bad_request"
    set_ = await ann.call("profile", {"v": 1, "age": 40, "max_hr": 170, "zone_method": "hrmax"})
    assert set_["ok"] and set_["profile"]["hr_max"] == 170
    raw = await RawChannel(ann).open()
    try:
        raw.send(reading(0, 153))
        await _until(lambda: len(_readings(host)) == 1)
    finally:
        await raw.close()
    shown = _readings(host)[0]
    assert shown["pct_max"] == 90 and shown["zone"] == 5


async def test_rejoin_with_the_bound_token_keeps_the_participant(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    first, second, host = await connect(), await connect(), await connect()
    await host.join(str(room["host_link"]), "Coach")
    ack = await first.join(str(room["join_link"]), "Ann")
    again = await second.call(
        "join", {"v": 1, "token": ack["token"], "name": "Ann", "room": room_id}
    )
    assert again["ok"] and again["you"]["id"] == ack["you"]["id"]
    replaced = await first.wait_for("error", lambda e: e["code"] == "replaced")
    assert replaced["event"] == "join"
    await _until(lambda: not first.sio.connected)
    # One Ann in the roster, not two.
    roster = await (await connect()).join(str(room["host_link"]), "Coach 2")
    assert [p["name"] for p in roster["participants"]].count("Ann") == 1
    # A bound token is still bound to its room.
    other = server.create_room("Other")
    refused = await (await connect()).call(
        "join", {"v": 1, "token": ack["token"], "name": "Ann", "room": other["room"]["id"]}
    )
    assert refused["error"]["code"] == "wrong_room"


async def test_a_device_can_only_send_readings(server: RunningServer, connect: Connect) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    ann, device = await connect(), await connect()
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    joined = await device.call(
        "join", {"v": 1, "token": ann_ack["device_token"], "name": "strap", "room": room_id}
    )
    assert joined["ok"] and joined["you"]["acts_for"] == ann_ack["you"]["id"]
    assert "participants" not in joined and "chat" not in joined
    # Whose heart rate, in which class: what the strap page (web/strap.js) says.
    assert joined["you"]["for_name"] == "Ann"
    assert joined["room"] == {"id": room_id, "title": room["room"]["title"]}
    for event, payload in [
        ("chat", {"v": 1, "text": "hi"}),
        ("media_state", {"v": 1, "audio": False, "video": False}),
        ("profile", {"v": 1, "age": 30}),
        ("end_class", {"v": 1}),
    ]:
        ack = await device.call(event, payload)
        assert ack["error"]["code"] == "forbidden", event
    assert ann.received["chat"] == []

    # One bridge per device link at a time; the next gets in once the first is gone.
    join = {"v": 1, "token": ann_ack["device_token"], "name": "copy", "room": room_id}
    second = await connect()
    assert (await second.call("join", join))["error"]["code"] == "device_in_use"
    await device.close()
    third = await connect()

    async def third_joins() -> bool:
        return bool((await third.call("join", join)).get("ok"))

    deadline = time.monotonic() + 5
    while not await third_joins():
        assert time.monotonic() < deadline, "the device link stayed taken after its bridge left"
        await asyncio.sleep(0.3)  # joins are limited to bursts of 5 per connection


def _get(server: RunningServer, room_id: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}/api/rooms/{room_id}/{path}", headers=headers, timeout=10)


async def test_summary_export_and_delete_respect_who_asks(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann, ben = await connect(), await connect(), await connect()
    await host.join(str(room["host_link"]), "Coach")
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    ben_ack = await ben.join(str(room["join_link"]), "Ben")
    await ann.call("chat", {"v": 1, "text": "Ann was here"})
    now = int(time.time() * 1000)
    for client, bpms in ((ann, [120, 150, 170, 160]), (ben, [100, 110])):
        raw = await RawChannel(client).open()
        for i, bpm in enumerate(bpms):
            raw.send(reading(i, bpm, t=now - (len(bpms) - i) * 1000))
        await _until(lambda c=client: len(c.received["telemetry_ack"]) > 0)
        await raw.close()
    await host.call("end_class", {"v": 1})
    host_token = _token(str(room["host_link"]))

    everyone = _get(server, room_id, "summary", host_token)
    assert everyone.status_code == 200
    people = {p["name"]: p for p in everyone.json()["participants"]}
    assert people["Ann"]["readings"] == 4 and people["Ann"]["summary"]["peak_bpm"] == 170
    assert people["Ben"]["summary"]["peak_bpm"] == 110
    assert len(people["Ann"]["series"]) == 4
    assert people["Ann"]["summary"]["duration_s"] == pytest.approx(3.0)
    # Default profile: HRmax 183.5, zones from 50/60/70/80/90 % of it.
    assert people["Ann"]["zone_floors_bpm"] == [92, 110, 128, 147, 165]

    own = _get(server, room_id, "summary", ann_ack["token"]).json()["participants"]
    assert [p["name"] for p in own] == ["Ann"]
    csv_text = _get(server, room_id, "summary.csv", host_token).text
    assert csv_text.splitlines()[0].startswith("participant_id,name,duration_min")
    assert len(csv_text.strip().splitlines()) == 4  # header, host, Ann, Ben
    assert _get(server, room_id, "heart-rate.csv", ann_ack["token"]).text.count("\n") == 5

    for token, status in [
        (None, 401),
        ("forged.token", 403),
        (_token(str(room["join_link"])), 403),  # the class link is nobody in particular
        (ann_ack["device_token"], 403),
        (_token(str(server.create_room("Other")["host_link"])), 403),  # another class
    ]:
        assert _get(server, room_id, "summary", token).status_code == status, token

    export = _get(server, room_id, "me/export", ann_ack["token"]).json()
    assert [r["bpm"] for r in export["heart_rate"]] == [120, 150, 170, 160]
    assert export["chat"][0]["text"] == "Ann was here"
    assert _get(server, room_id, "me/export", host_token).status_code == 403  # not bound

    deleted = await asyncio.to_thread(
        httpx.delete,
        f"{server.url}/api/rooms/{room_id}/me",
        headers={"Authorization": f"Bearer {ann_ack['token']}"},
        timeout=10,
    )
    assert deleted.json()["deleted"] == {"heart_rate": 4, "other": 2}
    summary = _get(server, room_id, "summary", host_token).json()
    after = {p["name"]: p for p in summary["participants"]}
    assert "Ann" not in after and after["Ben"]["readings"] == 2
    assert [p for p, _s, _b in _stored(server, room_id)] == [ben_ack["you"]["id"]] * 2


async def test_readings_survive_a_killed_server(tmp_path: Path) -> None:
    """SIGKILL the server mid-class: the bridge keeps what was not acknowledged, rejoins
    the restarted server as the same participant and re-sends; each reading is stored once."""
    port = str(free_port())
    server = start_server(tmp_path, PULSEROOM_PORT=port)
    room = server.create_room()
    room_id = str(room["room"]["id"])
    link = HeartRateLink(str(room["join_link"]), backoff=(0.3,))
    task = await _link_task(link)
    try:
        first_id = link.participant_id
        for bpm in range(100, 110):
            link.send(HeartRateMeasurement(bpm=bpm))
            await asyncio.sleep(0.02)
        server.process.kill()
        server.process.wait()
        for bpm in range(110, 130):  # taken while the server is down
            link.send(HeartRateMeasurement(bpm=bpm))
            await asyncio.sleep(0.02)
        assert link.pending >= 20
        server = start_server(tmp_path, PULSEROOM_PORT=port)
        await link.wait_acked(timeout=30)
        assert link.participant_id == first_id and link.counts["joins"] == 2
    finally:
        await _stop(task)
        stop_server(server)
    stored = _stored(server, room_id)
    assert [bpm for _p, _s, bpm in stored] == list(range(100, 130))
    assert {p for p, _s, _b in stored} == {first_id}


async def test_hr_bridge_reads_a_strap_through_bleak_and_sends_to_the_owners_tile(
    server: RunningServer, connect: Connect
) -> None:
    """``pulseroom hr-bridge DEVICE_LINK --name polar``: bleak's real client and scanner
    over a fake radio (tests/fake_bleak.py), a real data channel to a real server."""
    from pulseroom.hr_bridge import run_bridge
    from tests.fake_bleak import FakeAir, FakeClient, FakeStrap

    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann = await connect(), await connect()
    await host.join(str(room["host_link"]), "Coach")
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    ann_id = ann_ack["you"]["id"]
    strap = FakeStrap("A0:9E:1A:6A:1B:2C", "Polar H10 6A1B2C3D")
    air = FakeAir(strap)
    bridge = asyncio.create_task(
        run_bridge(
            _device_link(server, room_id, ann_ack),
            name="polar",
            quiet=True,
            strap_options={
                "scanner": air.scanner,
                "client_factory": FakeClient,
                "scan_timeout": 0.05,
                "backoff": (0.05,),
            },
        )
    )
    try:
        sent: list[int] = []
        for bpm in (96, 104, 111):
            await asyncio.wait_for(strap.wait_subscribed(), 10)
            await asyncio.sleep(1.0 if not sent else 0.05)  # the data channel opens meanwhile
            assert strap.notify(HeartRateMeasurement(bpm=bpm, contact=True, rr=(600, 590)))
            sent.append(bpm)
        assert strap.notify(b"\x10\x60\x01")  # malformed: RR flag with a dangling byte
        strap.drop()  # out of range for a moment: the bridge reconnects
        await _until(lambda: strap.connections == 2)
        await asyncio.sleep(0.1)
        assert strap.notify(HeartRateMeasurement(bpm=120))
        sent.append(120)
        await _until(lambda: len(_readings(host, ann_id)) == len(sent))
    finally:
        bridge.cancel()
        await asyncio.gather(bridge, return_exceptions=True)
    assert [r["bpm"] for r in _readings(host, ann_id)] == sent
    await _until(lambda: [b for _p, _s, b in _stored(server, room_id)] == sent)


async def test_hr_bridge_command_simulates_a_strap(server: RunningServer) -> None:
    import sys

    from tests.conftest import ROOT

    room = server.create_room()
    room_id = str(room["room"]["id"])
    # With the class link the bridge is a participant of its own: it needs a name.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pulseroom.cli", "hr-bridge", str(room["join_link"]), "--simulate",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2 and b"--display-name" in err, err
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pulseroom.cli", "hr-bridge", str(room["join_link"]),
        "--simulate", "--seconds", "4", "--seed", "7", "--display-name", "Dee",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    assert _names(server, room_id) == ["Dee"]
    stored = _stored(server, room_id)
    assert report["unacknowledged"] == 0 and report["acked"] >= 2
    assert len(stored) == report["acked"]
    assert all(40 <= bpm <= 200 for _p, _s, bpm in stored)
    assert {p for p, _s, _b in stored} == {report["participant_id"]}

    expired = str(room["join_link"]).split("#t=")[0] + "#t=forged.token"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pulseroom.cli", "hr-bridge", expired, "--simulate",
        "--display-name", "Dee",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert b"not valid" in err


@pytest.fixture(scope="module")
def pg_cluster() -> Any:
    from tests.pg_cluster import running_cluster

    yield from running_cluster()


async def test_database_restart_mid_class_loses_nothing(tmp_path: Path, pg_cluster: Any) -> None:
    """A class of simulated straps on PostgreSQL; PostgreSQL is stopped (immediate: like a
    crash) and started again mid-class. Every reading sent is stored exactly once."""
    from telemetry.simulate import SimulatedStrap

    # The server in this event loop (tests/loopback.py): the outage is the database's.
    async with loopback_server(tmp_path, DATABASE_URL=pg_cluster.url) as server:
        room = await server.create_room()
        room_id = str(room["room"]["id"])
        links = [HeartRateLink(str(room["join_link"]), name=f"rider {i}") for i in range(4)]
        tasks = [await _link_task(link) for link in links]
        curves = [SimulatedStrap(seed=i).readings() for i in range(len(links))]

        async def ride(seconds: float) -> None:
            # 10 readings a second per strap: a class's worth of readings in a few seconds.
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for link, curve in zip(links, curves, strict=True):
                    link.send(next(curve))
                await asyncio.sleep(0.1)

        await ride(1.5)
        await asyncio.to_thread(pg_cluster.stop, "immediate")
        await ride(2.0)  # the server keeps accepting: memory, then its spool
        down_stats = (await server.stats())["heart_rate"]["writer"]
        await asyncio.to_thread(pg_cluster.start)
        await ride(1.5)
        for link in links:
            await link.wait_acked(timeout=30)
        for task in tasks:
            await _stop(task)
        sent = sum(link.counts["queued"] for link in links)
        ids = {link.participant_id for link in links}
        import asyncpg

        conn = await asyncpg.connect(pg_cluster.url.replace("+asyncpg", ""))
        try:
            rows = await conn.fetch(
                "SELECT participant_id, seq FROM heart_rate WHERE room_id = $1", room_id
            )
        finally:
            await conn.close()
    assert down_stats["db_errors"] > 0  # the outage was real and seen
    assert down_stats["pending"] > 0  # readings waited for the database meanwhile
    assert len(rows) == sent
    assert len({(r["participant_id"], r["seq"]) for r in rows}) == sent
    assert {r["participant_id"] for r in rows} == ids
