"""Retention and erasure, on SQLite and PostgreSQL: old classes lose their people's data,
newer ones keep everything; `pulseroom erase` does the same by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from pulseroom.retention import expire
from storage import migrations
from storage.store import Store, create_engine
from telemetry.history import HeartRateHistory
from telemetry.writer import HeartRateRow, HeartRateWriter

DAY = 86400.0


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[Store, HeartRateHistory]]:
    engine = create_engine(database_url)
    await migrations.migrate(engine)
    yield Store(engine), HeartRateHistory(engine)
    await engine.dispose()


async def _class(store: Store, writer: HeartRateWriter, title: str, ended_days_ago: float) -> str:
    room = await store.create_room(title)
    for person in ("ann", "bob"):
        await store.add_participant(room.id, person, person.title(), "participant")
        await store.add_chat(room.id, person, person.title(), f"hi from {person}")
        for seq in range(3):
            writer.put(HeartRateRow(1_700_000_000 + seq, room.id, person, seq, 120, (), None, None))
    async with store.engine.begin() as conn:
        await conn.execute(
            text("UPDATE rooms SET ended_at = :t WHERE id = :id"),
            {"t": time.time() - ended_days_ago * DAY, "id": room.id},
        )
    return room.id


async def _held(store: Store, history: HeartRateHistory, room_id: str) -> tuple[int, int, int]:
    chat = len(await store.recent_chat(room_id))
    return len(await store.participants(room_id)), chat, await history.count(room_id)


async def test_classes_past_retention_are_erased_and_newer_ones_kept(
    stores: tuple[Store, HeartRateHistory], tmp_path: Path
) -> None:
    store, history = stores
    writer = HeartRateWriter(store.engine, tmp_path / "spool.jsonl")
    await writer.start()
    old = await _class(store, writer, "Spring", ended_days_ago=40)
    recent = await _class(store, writer, "Autumn", ended_days_ago=5)
    await writer.close()
    assert await _held(store, history, old) == (2, 2, 6)

    assert await expire(store, history, days=30) == [old]
    assert await _held(store, history, old) == (0, 0, 0)
    assert await history.minutes(old) == []
    assert await _held(store, history, recent) == (2, 2, 6)
    assert (await store.get_room(old)) is not None  # the class itself stays, empty
    assert await expire(store, history, days=30) == []  # nothing left to do


def test_erase_command_removes_one_participant_then_a_class(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'pulseroom.db'}"

    async def setup() -> str:
        engine = create_engine(url)
        await migrations.migrate(engine)
        store = Store(engine)
        writer = HeartRateWriter(engine, tmp_path / "spool.jsonl")
        await writer.start()
        room_id = await _class(store, writer, "Tabata", ended_days_ago=1)
        await writer.close()
        await engine.dispose()
        return room_id

    async def held(room_id: str) -> tuple[int, int, int]:
        engine = create_engine(url)
        try:
            return await _held(Store(engine), HeartRateHistory(engine), room_id)
        finally:
            await engine.dispose()

    room_id = asyncio.run(setup())
    env = {**os.environ, "PULSEROOM_DATA_DIR": str(tmp_path / "data")}

    def erase(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pulseroom.cli", "erase", *args],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    done = erase("--class", room_id, "--participant", "ann")
    assert done.returncode == 0, done.stderr
    assert "3 heart-rate readings" in done.stdout
    assert asyncio.run(held(room_id)) == (1, 1, 3)  # Bob's are left
    assert erase("--class", room_id).returncode == 0
    assert asyncio.run(held(room_id)) == (0, 0, 0)
    missing = erase("--class", "no-such-class")
    assert missing.returncode == 1 and "no class" in missing.stderr


async def test_recordings_past_their_retention_are_deleted_and_audited(tmp_path: Path) -> None:
    from pulseroom.retention import expire_recordings
    from storage.audit import AuditLog
    from storage.recordings import RecordingFiles

    files = RecordingFiles(tmp_path / "recordings")
    now = time.time()
    made = {
        "old": ("c1", "20260101T100000Z", ".webm", 40),
        "new": ("c1", "20260301T100000Z", ".mkv", 5),
        "running": ("c2", "20260101T110000Z", ".webm.part", 40),  # still being written
    }
    for room_id, recording_id, suffix, days_ago in made.values():
        directory = files.directory(room_id)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{recording_id}{suffix}"
        path.write_bytes(b"\x1a\x45\xdf\xa3")
        (directory / f"{recording_id}.json").write_text('{"started_at": 1767261600}')
        os.utime(path, (now - days_ago * 86400, now - days_ago * 86400))
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        await migrations.migrate(engine)
        audit = AuditLog(engine)
        assert await expire_recordings(files, 30, audit, now=now) == [("c1", "20260101T100000Z")]
        assert [r.id for r in files.list("c1")] == ["20260301T100000Z"]
        assert not (files.directory("c1") / "20260101T100000Z.json").exists()
        assert [r.complete for r in files.list("c2")] == [False]  # untouched
        [entry] = await audit.entries(action="recording_deleted")
        assert entry.actor_label == "server" and entry.target.endswith("of class c1")
        assert await expire_recordings(files, 30, audit, now=now) == []  # nothing left to do
    finally:
        await engine.dispose()
