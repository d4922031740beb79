"""Effort points: the arithmetic, live and after class, and the settings' validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from signaling.effort import EffortBoard, scheme_of, scheme_out
from signaling.messages import EffortSettingsIn
from signaling.presence import Member, Presence
from storage import migrations
from storage.store import EffortRecord, Store, create_engine
from telemetry.effort import MYZONE_POINTS, EffortMeter, EffortScheme, Target, zone_seconds
from telemetry.summary import summarize
from telemetry.zones import Profile, zone

PROFILE = Profile(max_hr=200)  # zones start at 100, 120, 140, 160 and 180 bpm


def test_myzone_values_by_default() -> None:
    assert EffortScheme().points_per_minute == MYZONE_POINTS == (0, 1, 2, 3, 4, 4)
    # Ten minutes in each zone: 0 + 10 + 20 + 30 + 40 + 40.
    assert EffortScheme().points([600.0] * 6) == 140.0


def test_irregular_readings_count_until_the_next_one() -> None:
    # 170 bpm (zone 4) for 2 s + 3 s, then 185 bpm (zone 5) 0.5 s, then 110 (zone 1):
    # the last reading counts one second.
    readings = [(0.0, 170), (2.0, 170), (5.0, 185), (5.5, 110)]
    seconds = zone_seconds(readings, PROFILE)
    assert seconds == [0.0, 1.0, 0.0, 0.0, 5.0, 0.5]
    expected = (4 * 5.0 + 4 * 0.5 + 1 * 1.0) / 60
    assert EffortScheme().points(seconds) == round(expected, 1)


def test_a_gap_counts_five_seconds_as_in_the_summary() -> None:
    # A strap dropped for ten minutes: the reading before the gap counts 5 s, as the
    # summary's minutes in zone do, not ten minutes of zone 4.
    readings = [(0.0, 170), (1.0, 170), (601.0, 170), (602.0, 170)]
    seconds = zone_seconds(readings, PROFILE)
    assert seconds[4] == pytest.approx(1 + 5 + 1 + 1)
    summary = summarize(readings, PROFILE)
    assert summary.minutes_in_zone[4] == pytest.approx(seconds[4] / 60, abs=0.005)


def test_no_readings_no_points() -> None:
    assert zone_seconds([], PROFILE) == [0.0] * 6
    assert EffortScheme(target=Target("points", 1)).reached([0.0] * 6) is False


def test_per_class_values_and_targets() -> None:
    scheme = EffortScheme((0, 0, 1, 2, 5, 3), Target("zone_minutes", 12, from_zone=4))
    seconds = [0.0, 0.0, 60.0, 0.0, 6 * 60.0, 3 * 60.0]  # 9 minutes in zones 4-5
    assert scheme.points(seconds) == 1 + 30 + 9
    assert scheme.progress(seconds) == 0.75 and scheme.reached(seconds) is False
    seconds[5] += 3 * 60
    assert scheme.progress(seconds) == 1.0 and scheme.reached(seconds) is True
    by_points = EffortScheme(target=Target("points", 30))
    assert by_points.progress([0, 0, 0, 0, 450, 0]) == 1.0  # 7.5 min x 4 = 30
    assert by_points.reached([0, 0, 0, 0, 449, 0]) is False
    assert EffortScheme().progress(seconds) is None and EffortScheme().reached(seconds) is None


def test_the_live_meter_ignores_older_readings() -> None:
    meter = EffortMeter()
    assert meter.add(10.0, 4) and meter.add(12.0, 4)
    assert not meter.add(11.0, 5)  # re-sent after a drop: the summary counts it
    assert meter.totals() == [0.0, 0.0, 0.0, 0.0, 3.0, 0.0]
    assert meter.add(100.0, 5)  # after a gap: 5 s for the reading before it
    assert meter.totals()[4:] == [7.0, 1.0]


@given(
    st.lists(
        st.tuples(st.floats(0.0, 12.0, allow_nan=False), st.integers(60, 210)),
        min_size=1,
        max_size=60,
    )
)
def test_live_points_equal_the_summary_for_readings_in_order(
    steps: list[tuple[float, int]],
) -> None:
    t = 1_700_000_000.0
    readings = []
    for gap, bpm in steps:
        t += round(gap, 2)  # gaps of zero (two readings at one time) included
        readings.append((t, bpm))
    meter = EffortMeter()
    for when, bpm in readings:
        meter.add(when, zone(bpm, PROFILE))
    assert meter.totals() == pytest.approx(zone_seconds(readings, PROFILE))
    scheme = EffortScheme((0, 1, 2, 3, 4, 4), Target("points", 2))
    assert scheme.points(meter.totals()) == scheme.points(zone_seconds(readings, PROFILE))


def settings(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "points_per_minute": [0, 1, 2, 3, 4, 4],
        "target": {"kind": "zone_minutes", "value": 12, "from_zone": 4},
    }
    return {**base, **changes}


def test_settings_are_validated() -> None:
    ok = EffortSettingsIn.model_validate(settings())
    assert ok.target is not None and ok.target.value == 12
    assert EffortSettingsIn.model_validate(settings(target=None)).target is None
    assert EffortSettingsIn.model_validate(settings(points_per_minute=[0] * 6))
    bad = [
        settings(points_per_minute=[0, 1, 2, 3, 4]),  # five zones
        settings(points_per_minute=[0, 1, 2, 3, 4, 4, 4]),
        settings(points_per_minute=[0, 1, 2, 3, 4, -1]),
        settings(points_per_minute=[0, 1, 2, 3, 4, 21]),
        settings(points_per_minute=[0, 1, 2, 3, 4, True]),
        settings(points_per_minute=[0, 1, 2, 3, 4, "4"]),
        settings(points_per_minute=[0, 1, 2, 3, 4, float("inf")]),
        # Points off (allowed), but then a target of points could never be met.
        settings(points_per_minute=[0] * 6, target={"kind": "points", "value": 5}),
        settings(target={"kind": "zone_minutes", "value": 0}),
        settings(target={"kind": "zone_minutes", "value": 241}),
        settings(target={"kind": "zone_minutes", "value": 12, "from_zone": 0}),
        settings(target={"kind": "zone_minutes", "value": 12, "from_zone": 6}),
        settings(target={"kind": "calories", "value": 12}),
        settings(target={"kind": "points", "value": 2001}),
        {k: v for k, v in settings().items() if k != "target"},  # null, not missing
        settings(extra=1),
    ]
    for payload in bad:
        with pytest.raises(ValidationError):
            EffortSettingsIn.model_validate(payload)


def test_stored_settings_round_trip() -> None:
    record = EffortRecord((0, 1, 2, 3, 5, 5), "points", 40.0, None)
    scheme = scheme_of(record)
    assert scheme == EffortScheme((0, 1, 2, 3, 5, 5), Target("points", 40.0))
    assert scheme_out(scheme)["target"] == {"kind": "points", "value": 40.0, "from_zone": 4}
    assert scheme_of(None) == EffortScheme()


@pytest.fixture
async def upgraded(database_url: str) -> AsyncIterator[tuple[Store, str]]:
    engine = create_engine(database_url)
    # As a release before effort points left it, with someone in a class.
    await migrations.migrate(engine, target=4)
    old = Store(engine)
    room = await old.create_room("Before the upgrade")
    await old.add_participant(room.id, "ann", "Ann", "participant")
    await migrations.migrate(engine)
    yield old, room.id
    await engine.dispose()


async def test_settings_and_opt_out_are_stored(upgraded: tuple[Store, str]) -> None:
    store, room_id = upgraded
    assert await store.effort_settings(room_id) is None  # Myzone's, no target
    assert await store.board_opt_out(room_id, "ann") is False  # on the board by default
    record = EffortRecord((0, 1, 2, 3, 4.5, 4.5), "zone_minutes", 12.0, 4)
    await store.set_effort_settings(room_id, record)
    assert await store.effort_settings(room_id) == record
    replaced = EffortRecord((0, 0, 1, 2, 3, 3))
    await store.set_effort_settings(room_id, replaced)
    assert await store.effort_settings(room_id) == replaced
    await store.set_board_opt_out(room_id, "ann", True)
    assert await store.board_opt_out(room_id, "ann") is True
    assert await store.board_opt_out(room_id, "nobody") is False


async def test_a_database_that_fails_at_join_keeps_the_participant_off_the_board(
    tmp_path: Path,
) -> None:
    # A real SQLite file without the schema: every read fails as a broken database would.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    try:
        board = EffortBoard(socketio.AsyncServer(), Presence(), Store(engine))
        ann = Member(id="ann", sid="s1", room_id="r", name="Ann", role="participant")
        ack = (await board.joined(ann))["effort"]
        assert ack["settings"] == scheme_out(EffortScheme())  # Myzone's meanwhile
        assert ack["on_board"] is False and ack["leaderboard"] is None  # never on a guess
    finally:
        await engine.dispose()
