"""A participant takes their class with them as TCX and FIT (issue 18, item 8).

The laps are the instructor's interval timer as it ran (pauses, a stop mid-phase, a new
program replacing one); the TCX file is validated against Garmin's published schema
(TrainingCenterDatabase v2, from Debian's pytrainer package: scripts/test fetches it)
and the FIT file is read back by Garmin's own FIT SDK decoder. End to end: a real server,
a timer started over Socket.IO, readings over a real data channel, the download with the
participant's own token only.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from garmin_fit_sdk import Decoder, Stream
from lxml import etree

from telemetry.activity_export import lap_figures, tcx
from telemetry.fit_export import fit
from telemetry.laps import Lap, covering, timer_laps
from telemetry.rows import HeartRateRow
from telemetry.zones import Profile
from tests.loopback import loopback_server
from tests.sio_client import Client
from tests.test_heart_rate import RawChannel, reading
from tests.waiting import until

T0 = 1_800_000_000.0
PROGRAM = {
    "title": "Tabata-ish",
    "rounds": 2,
    "phases": [
        {"name": "Sprint", "seconds": 30, "kind": "work"},
        {"name": "Recover", "seconds": 20, "kind": "rest"},
    ],
}
XSD = Path(
    os.environ.get(
        "PULSEROOM_TCX_XSD",
        "/var/cache/pulseroom-test/schemas/GarminTrainingCenterDatabase_v2.xsd",
    )
)


def spans(laps: list[Lap]) -> list[tuple[str, float, float, str]]:
    return [(lap.name, lap.start - T0, lap.end - T0, lap.kind) for lap in laps]


def test_the_timer_as_it_ran_makes_the_laps() -> None:
    plain = timer_laps([(T0, "start", PROGRAM)])
    assert spans(plain) == [
        ("Sprint (1/2)", 0, 30, "work"), ("Recover (1/2)", 30, 50, "rest"),
        ("Sprint (2/2)", 50, 80, "work"), ("Recover (2/2)", 80, 100, "rest"),
    ]  # fmt: skip
    # Paused 15 s in the first sprint: it lasts 45 s, and the rest moves on by 15 s.
    paused = timer_laps(
        [(T0, "start", PROGRAM), (T0 + 10, "pause", None), (T0 + 25, "resume", None)]
    )
    assert spans(paused)[:2] == [("Sprint (1/2)", 0, 45, "work"), ("Recover (1/2)", 45, 65, "rest")]
    assert spans(paused)[-1] == ("Recover (2/2)", 95, 115, "rest")
    # Stopped in the second round's sprint: that lap ends at the stop, no more laps.
    stopped = timer_laps([(T0, "start", PROGRAM), (T0 + 60, "stop", None)])
    assert spans(stopped)[-1] == ("Sprint (2/2)", 50, 60, "work") and len(stopped) == 3
    # A new program replaces the running one at its start.
    single = {"rounds": 1, "phases": [{"name": "Hold", "seconds": 40, "kind": "work"}]}
    replaced = timer_laps([(T0, "start", PROGRAM), (T0 + 40, "start", single)])
    assert spans(replaced) == [
        ("Sprint (1/2)", 0, 30, "work"),
        ("Recover (1/2)", 30, 40, "rest"),
        ("Hold", 40, 80, "work"),
    ]
    # The class ended while paused: the phase ends at the pause.
    left = timer_laps([(T0, "start", PROGRAM), (T0 + 70, "pause", None)])
    assert spans(left)[-1] == ("Sprint (2/2)", 50, 70, "work")
    # Events without a running timer change nothing.
    assert timer_laps([(T0, "pause", None), (T0 + 1, "stop", None)]) == []


def test_every_moment_of_the_class_is_in_one_lap() -> None:
    laps = covering(timer_laps([(T0 + 60, "start", PROGRAM)]), T0, T0 + 300)
    assert spans(laps)[0] == ("Warm-up", 0, 60, "free")
    assert spans(laps)[-1] == ("Cool-down", 160, 300, "free")
    assert all(a.end == b.start for a, b in itertools.pairwise(laps))
    # Two timers with a gap; the readings start inside the first one.
    two = timer_laps([(T0, "start", PROGRAM), (T0 + 200, "start", PROGRAM)])
    laps = covering(two, T0 + 10, T0 + 250)
    assert spans(laps)[0] == ("Sprint (1/2)", 10, 30, "work")
    assert spans(laps)[-3:] == [
        ("Between intervals", 100, 200, "free"), ("Sprint (1/2)", 200, 230, "work"),
        ("Recover (1/2)", 230, 250, "rest"),
    ]  # fmt: skip
    # No timer at all: one lap.
    assert spans(covering([], T0, T0 + 90)) == [("Class", 0, 90, "free")]


def _readings(count: int, rr: bool = True) -> list[HeartRateRow]:
    return [
        HeartRateRow(T0 + i, "room", "ann", i, 100 + (i * 7) % 80, (600.0, 612.4) if rr else ())
        for i in range(count)
    ]


def _schema() -> etree.XMLSchema:
    if not XSD.exists():
        pytest.skip(f"{XSD} is missing: scripts/test fetches Garmin's TCX schema")
    return etree.XMLSchema(etree.parse(str(XSD)))


def _check_tcx(body: bytes) -> etree._ElementTree:
    schema = _schema()
    document = etree.ElementTree(etree.fromstring(body))
    assert schema.validate(document), schema.error_log
    return document


def _read_fit(body: bytes) -> dict[str, Any]:
    decoder = Decoder(Stream.from_byte_array(bytearray(body)))
    assert decoder.is_fit() and decoder.check_integrity()
    messages, errors = Decoder(Stream.from_byte_array(bytearray(body))).read()
    assert errors == [], errors
    return dict(messages)


def test_the_files_hold_every_reading_in_its_lap_and_pass_their_checkers() -> None:
    readings = _readings(180)
    laps = covering(timer_laps([(T0 + 30, "start", PROGRAM)]), T0, readings[-1].time)
    figures = lap_figures(laps, readings, Profile(age=40, weight_kg=80, sex="female"))
    assert sum(len(f.readings) for f in figures) == len(readings)
    ns = {"t": "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"}

    document = _check_tcx(tcx(figures, "Morning spin"))
    bpms = [
        int(v)
        for v in document.xpath("//t:Trackpoint/t:HeartRateBpm/t:Value/text()", namespaces=ns)
    ]
    assert bpms == [r.bpm for r in readings]
    names = document.xpath("//t:Lap/t:Notes/text()", namespaces=ns)
    assert names == [
        "Warm-up",
        "Sprint (1/2)",
        "Recover (1/2)",
        "Sprint (2/2)",
        "Recover (2/2)",
        "Cool-down",
    ]
    assert document.xpath("//t:Lap[3]/t:Intensity/text()", namespaces=ns) == ["Resting"]
    starts = document.xpath("//t:Lap/@StartTime", namespaces=ns)
    assert starts[1] == datetime.datetime.fromtimestamp(T0 + 30, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    calories = [int(c) for c in document.xpath("//t:Lap/t:Calories/text()", namespaces=ns)]
    assert all(c > 0 for c in calories) and calories == [f.calories for f in figures]

    messages = _read_fit(fit(figures))
    records = messages["record_mesgs"]
    assert [m["heart_rate"] for m in records] == [r.bpm for r in readings]
    assert records[0]["timestamp"].timestamp() == T0
    assert [m["time"] for m in messages["hrv_mesgs"]][:2] == [
        [0.6, 0.612],
        [0.6, 0.612],
    ]  # ms resolution
    fit_laps = messages["lap_mesgs"]
    assert [round(m["total_elapsed_time"]) for m in fit_laps] == [30, 30, 20, 30, 20, 49]
    assert [m["max_heart_rate"] for m in fit_laps] == [f.max_bpm for f in figures]
    assert [m["intensity"] for m in fit_laps][1:3] == ["active", "rest"]
    session = messages["session_mesgs"][0]
    assert session["num_laps"] == 6 and session["max_heart_rate"] == max(r.bpm for r in readings)
    assert session["total_calories"] == sum(calories)
    assert messages["activity_mesgs"][0]["num_sessions"] == 1


async def test_a_participant_downloads_their_class_with_the_timer_as_laps(tmp_path: Path) -> None:
    async with loopback_server(tmp_path) as server:
        room = await server.create_room("Evening HIIT")
        room_id = str(room["room"]["id"])
        host, ann, ben = Client(server.url), Client(server.url), Client(server.url)
        for client in (host, ann, ben):
            await client.connect()
        try:
            assert (await host.join(str(room["host_link"]), "Coach"))["ok"]
            ann_ack = await ann.join(str(room["join_link"]), "Ann")
            ben_ack = await ben.join(str(room["join_link"]), "Ben")
            program = {"rounds": 1, "phases": [{"name": "Push", "seconds": 2, "kind": "work"}]}
            assert (await host.call("timer", {"v": 1, "action": "start", "program": program}))["ok"]
            raw = await RawChannel(ann).open()
            start = int(time.time() * 1000)
            for i in range(6):
                raw.send({**reading(i, 120 + 5 * i, t=start + i * 1000), "rr": [500.0, 505.0]})
            await until(lambda: len(ann.received["telemetry_ack"]) > 0)
            await raw.close()
            assert (await host.call("end_class", {"v": 1}))["ok"]
        finally:
            for client in (host, ann, ben):
                await client.close()

        def get(extension: str, token: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            url = f"{server.url}/api/rooms/{room_id}/me/activity.{extension}"
            return httpx.get(url, headers=headers, timeout=10)

        got = await asyncio.to_thread(get, "tcx", ann_ack["token"])
        assert got.status_code == 200, got.text
        day = datetime.datetime.fromtimestamp(start / 1000, datetime.UTC).strftime("%Y-%m-%d")
        assert got.headers["Content-Disposition"] == (
            f'attachment; filename="pulseroom-{day}-evening-hiit.tcx"'
        )
        ns = {"t": "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"}
        document = _check_tcx(got.content)
        bpms = document.xpath("//t:HeartRateBpm/t:Value/text()", namespaces=ns)
        assert [int(b) for b in bpms] == [120, 125, 130, 135, 140, 145]
        assert "Push" in document.xpath("//t:Lap/t:Notes/text()", namespaces=ns)
        got = await asyncio.to_thread(get, "fit", ann_ack["token"])
        assert got.status_code == 200 and got.headers["Content-Type"] == "application/vnd.ant.fit"
        messages = _read_fit(got.content)
        assert [m["heart_rate"] for m in messages["record_mesgs"]] == [120, 125, 130, 135, 140, 145]
        assert messages["hrv_mesgs"][0]["time"] == [0.5, 0.505]

        # Only Ann's own token: the instructor's, the class link's, none, or another's.
        other = await server.create_room("Other")
        for token, status in [
            (None, 401),
            (room["host_link"].split("#t=", 1)[1], 403),
            (room["join_link"].split("#t=", 1)[1], 403),
            (ann_ack["device_token"], 403),
            (other["host_link"].split("#t=", 1)[1], 403),
            (ben_ack["token"], 404),  # Ben sent no heart rate: nothing to export
        ]:
            answer = await asyncio.to_thread(get, "tcx", token)
            assert answer.status_code == status, (token, answer.text)
        answer = await asyncio.to_thread(
            httpx.get, f"{server.url}/api/rooms/{room_id}/me/activity.gpx", timeout=10
        )
        assert answer.status_code == 404

        # The summary marks the timer's phases; its CSVs name the people and the class.
        host_token = room["host_link"].split("#t=", 1)[1]

        def host_get(path: str) -> httpx.Response:
            url = f"{server.url}/api/rooms/{room_id}/{path}"
            return httpx.get(url, headers={"Authorization": f"Bearer {host_token}"}, timeout=10)

        data = (await asyncio.to_thread(host_get, "summary")).json()
        (push,) = data["intervals"]
        assert (push["name"], push["kind"]) == ("Push", "work")
        assert push["end"] - push["start"] == pytest.approx(2.0, abs=0.01)
        csv_answer = await asyncio.to_thread(host_get, "summary.csv")
        assert csv_answer.headers["Content-Disposition"] == (
            f'attachment; filename="pulseroom-{day}-evening-hiit-summary.csv"'
        )
        rows = {r.split(",")[1]: r.split(",") for r in csv_answer.text.strip().splitlines()[1:]}
        assert rows["Ann"][3] == "132.5" and set(rows["Ben"][2:]) == {""}, rows
        readings = (await asyncio.to_thread(host_get, "heart-rate.csv")).text.splitlines()
        assert readings[0].startswith("time,time_utc,participant_id,name,seq,bpm"), readings[0]
        first = readings[1].split(",")
        assert first[3] == "Ann" and first[1].startswith(day) and first[1].endswith("Z"), first
