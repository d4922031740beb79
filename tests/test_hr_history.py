"""Stored heart rate read back — readings, minutes, counts, deletion — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import migrations
from storage.store import create_engine
from telemetry.history import HeartRateHistory, MinuteRow
from telemetry.writer import HeartRateRow, HeartRateWriter

BASE_MS = 1_700_000_040_000  # a minute boundary, in device milliseconds
BASE = BASE_MS / 1000


def at(
    room: str,
    participant: str,
    seq: int,
    offset_ms: int,
    bpm: int,
    rr_ms: tuple[float, ...] = (),
    energy_kj: int | None = None,
    contact: bool | None = None,
) -> HeartRateRow:
    """A reading ``offset_ms`` after BASE; seconds are device ms / 1000, as the server does."""
    time = (BASE_MS + offset_ms) / 1000
    return HeartRateRow(time, room, participant, seq, bpm, rr_ms, energy_kj, contact)


ROWS = [
    at("r1", "ann", 0, 0, 100, rr_ms=(600.0, 612.5), energy_kj=12, contact=True),
    at("r1", "ann", 1, 20_000, 110),
    at("r1", "ann", 2, 40_500, 120, rr_ms=(781.25,)),
    at("r1", "ann", 3, 60_000, 130),
    at("r1", "ann", 4, 119_999, 140),
    at("r1", "bob", 0, 5_000, 90),
    at("r1", "bob", 1, 65_000, 95, contact=False),
    at("r2", "ann", 0, 1_000, 150),  # another class, same participant id
]


@pytest.fixture
async def history(database_url: str, tmp_path: Path) -> AsyncIterator[HeartRateHistory]:
    engine = create_engine(database_url)
    await migrations.migrate(engine)
    writer = HeartRateWriter(engine, tmp_path / "spool.jsonl")
    await writer.start()
    for row in reversed(ROWS):  # stored order must not matter
        writer.put(row)
    await writer.close()
    assert writer.stats()["written"] == len(ROWS)
    yield HeartRateHistory(engine)
    await engine.dispose()


async def test_readings_come_back_in_time_order_unchanged(history: HeartRateHistory) -> None:
    r1 = sorted((r for r in ROWS if r.room_id == "r1"), key=lambda r: r.time)
    assert await history.readings("r1") == r1
    assert await history.readings("r1", "bob") == [r for r in r1 if r.participant_id == "bob"]
    assert await history.readings("r2") == [ROWS[-1]]
    assert await history.readings("nowhere") == []


async def test_minutes_aggregate_each_participant(history: HeartRateHistory) -> None:
    assert await history.minutes("r1") == [
        MinuteRow(BASE, "ann", 110.0, 120, 100, 3),
        MinuteRow(BASE, "bob", 90.0, 90, 90, 1),
        MinuteRow(BASE + 60, "ann", 135.0, 140, 130, 2),
        MinuteRow(BASE + 60, "bob", 95.0, 95, 95, 1),
    ]
    assert await history.minutes("r1", "bob") == [
        MinuteRow(BASE, "bob", 90.0, 90, 90, 1),
        MinuteRow(BASE + 60, "bob", 95.0, 95, 95, 1),
    ]
    assert await history.minutes("r2") == [MinuteRow(BASE, "ann", 150.0, 150, 150, 1)]


async def test_count_and_delete_participant(history: HeartRateHistory) -> None:
    assert await history.count("r1") == 7
    assert await history.count("r1", "ann") == 5
    assert await history.delete_participant("r1", "ann") == 5
    assert await history.delete_participant("r1", "ann") == 0
    assert await history.count("r1") == 2 and await history.count("r1", "ann") == 0
    assert await history.count("r2", "ann") == 1  # only that class
    assert [m.participant_id for m in await history.minutes("r1")] == ["bob", "bob"]
    assert await history.readings("r1", "ann") == []
