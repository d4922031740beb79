"""Signal quality, live RMSSD and the learning maximum, over a real server.

Readings go over a real data channel (tests/test_heart_rate.py's RawChannel) to a real
server process with its database; the device clock runs ahead of the server's, which
the server allows (up to 300 s), so half a minute of readings is sent in a moment and
every one is still shown live.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from typing import Any

import pytest
from sqlalchemy import text

from signaling.profiles import profile_of, profile_out, record_of
from storage import migrations
from storage.store import ProfileRecord, Store, create_engine
from tests.conftest import RunningServer
from tests.test_heart_rate import Connect, RawChannel, _get, _readings, _token, _until

pytestmark = pytest.mark.shared_server


def _reading(seq: int, t: int, bpm: int, **extra: Any) -> dict[str, Any]:
    return {"v": 1, "type": "hr", "seq": seq, "t": t, "bpm": bpm, **extra}


def _stored_profile(server: RunningServer, room_id: str, pid: str) -> tuple[int, int]:
    with sqlite3.connect(server.data_dir / "pulseroom.db") as db:
        row = db.execute(
            "SELECT max_hr, max_hr_learned FROM participants WHERE room_id = ? AND id = ?",
            (room_id, pid),
        ).fetchone()
    return int(row[0]), int(row[1])


async def test_max_is_learned_and_signal_and_rmssd_reach_only_whom_hr_reaches(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann, ben = await connect(), await connect(), await connect()
    assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    assert (await ben.join(str(room["join_link"]), "Ben"))["ok"]
    ann_id = ann_ack["you"]["id"]
    set_ = await ann.call("profile", {"v": 1, "max_hr": 150})
    assert set_["ok"] and set_["profile"]["max_hr_learned"] is False

    start = int(time.time() * 1000) + 5_000
    raw = await RawChannel(ann).open()
    try:
        # 31 s at 158 bpm, above her 150, with RR intervals alternating 400/420 ms.
        for i in range(31):
            rr = [400.0 if i % 2 else 420.0]
            raw.send(_reading(i, start + i * 1000, 158, rr=rr, contact=True))
        await host.wait_for("max_hr_raised", timeout=10)
        raw.send(_reading(31, start + 31_000, 165, contact=True))  # the peak
        raw.send(_reading(32, start + 32_000, 61, contact=False))  # the strap slipped
        raw.send(_reading(33, start + 91_000, 120, contact=True))  # a minute after the peak
        await _until(lambda: len(_readings(host, ann_id)) == 34)
        await _until(lambda: len(ann.received["telemetry_ack"]) > 0)
    finally:
        await raw.close()

    # Told: her own page and the instructor; Ben, nothing.
    told = await ann.wait_for("max_hr_raised")
    assert told["hr_max"] == 158 and told["previous_hr_max"] == 150  # what she held
    assert told["message"] == "Your max heart rate was raised to 158 bpm"
    assert told["profile"]["max_hr_learned"] is True
    assert (await host.wait_for("max_hr_raised"))["participant_id"] == ann_id
    assert ben.received["max_hr_raised"] == [] and ben.received["hr"] == []
    # Stored, so the summary and her next join use it.
    await _until(lambda: _stored_profile(server, room_id, ann_id) == (158, 1))

    shown = _readings(host, ann_id)
    assert [r["pct_max"] for r in shown[29:32]] == [105, 100, 104]  # 158/150, then /158
    assert {r["signal"] for r in shown[:32]} == {"ok"}
    assert shown[18]["rmssd_ms"] is None  # 18 differences: too few
    assert shown[30]["rmssd_ms"] == 20.0  # ±20 ms every beat
    assert shown[32]["signal"] == "no_contact" and shown[32]["rmssd_ms"] is None
    assert [r["signal"] for r in _readings(ann)] == [r["signal"] for r in shown]

    host_token = _token(str(room["host_link"]))
    people = {p["name"]: p for p in _get(server, room_id, "summary", host_token).json()[
        "participants"]}  # fmt: skip
    summary = people["Ann"]["summary"]
    assert summary["hr_max_used"] == 158 and summary["hr_max_learned"] is True
    assert summary["rmssd_ms"] == 20.0  # over the whole class: the same 30 differences
    assert summary["hr_recovery_bpm"] == 165 - 120  # no timer: 60 s after the peak
    assert people["Ben"]["summary"]["hr_max_learned"] is False
    assert people["Ben"]["summary"]["rmssd_ms"] is None
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(
        _get(server, room_id, "summary.csv", host_token).text))}  # fmt: skip
    assert rows["Ann"]["hr_max_used"] == "158" and rows["Ann"]["hr_max_learned"] == "yes"
    assert rows["Ann"]["rmssd_ms"] == "20.0" and rows["Ann"]["hr_recovery_bpm"] == "45"
    assert rows["Ben"]["rmssd_ms"] == "" and rows["Ben"]["hr_max_used"] == ""  # no readings

    # Her page sends it back (on her next join): still learned. Setting another maximum
    # makes it hers.
    back = await ann.call("profile", {"v": 1, "max_hr": 158})
    assert back["profile"]["max_hr_learned"] is True
    assert _stored_profile(server, room_id, ann_id) == (158, 1)
    again = await ann.call("profile", {"v": 1, "max_hr": 170})
    assert again["profile"]["max_hr_learned"] is False
    assert _stored_profile(server, room_id, ann_id) == (170, 0)


async def test_artefacts_are_flagged_and_never_raise_the_max(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    host, ann = await connect(), await connect()
    await host.join(str(room["host_link"]), "Coach")
    ann_ack = await ann.join(str(room["join_link"]), "Ann")
    await ann.call("profile", {"v": 1, "max_hr": 150})
    start = int(time.time() * 1000) + 5_000
    raw = await RawChannel(ann).open()
    try:
        # 40 s "above" the max, but every third interval is a noise spike: not a heart.
        for i in range(41):
            rr = [400.0, 410.0, 200.0 if i % 3 == 0 else 1500.0]
            raw.send(_reading(i, start + i * 1000, 190, rr=rr))
        await _until(lambda: len(_readings(host)) == 41)
    finally:
        await raw.close()
    shown = _readings(host, ann_ack["you"]["id"])
    assert shown[-1]["signal"] == "artefacts" and shown[-1]["rmssd_ms"] is None
    assert host.received["max_hr_raised"] == [] and ann.received["max_hr_raised"] == []


async def test_recovery_is_measured_from_the_end_of_the_timers_last_work_interval(
    server: RunningServer, connect: Connect
) -> None:
    room = server.create_room()
    room_id = str(room["room"]["id"])
    host, ann = await connect(), await connect()
    await host.join(str(room["host_link"]), "Coach")
    await ann.join(str(room["join_link"]), "Ann")
    program = {"title": "One", "rounds": 1, "phases": [
        {"name": "Work", "seconds": 10, "kind": "work"},
        {"name": "Rest", "seconds": 5, "kind": "rest"}]}  # fmt: skip
    started = int(time.time() * 1000)
    assert (await host.call("timer", {"v": 1, "action": "start", "program": program}))["ok"]
    raw = await RawChannel(ann).open()
    try:
        # 170 through the work, 120 after it, and a peak of 190 later on: the peak rule
        # would find nothing a minute after it, the timer's does.
        for i in range(76):
            bpm = 190 if i == 40 else (170 if i <= 11 else 120)
            raw.send(_reading(i, started + i * 1000, bpm))
        await _until(lambda: len(_readings(host)) == 76)
    finally:
        await raw.close()
    people = _get(server, room_id, "summary", _token(str(room["host_link"]))).json()
    ann_summary = next(p for p in people["participants"] if p["name"] == "Ann")["summary"]
    assert ann_summary["hr_recovery_bpm"] == 170 - 120


async def test_learned_max_is_stored_on_both_databases_after_an_upgrade(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        # As a release before the learning maximum left it, with a profile set.
        await migrations.migrate(engine, target=8)
        store = Store(engine)
        room = await store.create_room("Before the upgrade")
        await store.add_participant(room.id, "ann", "Ann", "participant")
        async with engine.begin() as conn:  # as that release's set_profile did
            await conn.execute(
                text("UPDATE participants SET age = 30, max_hr = 180 WHERE id = 'ann'")
            )
        await migrations.migrate(engine)
        before = await store.participant(room.id, "ann")
        assert before is not None and before.profile == ProfileRecord(age=30, max_hr=180)
        learned = ProfileRecord(age=30, max_hr=190, max_hr_learned=True)
        await store.set_profile(room.id, "ann", learned)
        after = await store.participant(room.id, "ann")
        assert after is not None and after.profile == learned
        assert record_of(profile_of(after.profile)) == learned
        assert profile_out(profile_of(after.profile))["max_hr_learned"] is True
    finally:
        await engine.dispose()
