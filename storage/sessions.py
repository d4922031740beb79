"""The sessions of weekly series: one ``rooms`` row per week, made by the first join.

A weekly class's row is the series: its one link, title, description and schedule. Each
week's session is a row of its own (``series_id``, ``occurrence``: 0 for the first
week), so everything kept per class (participants, chat, heart rate, effort, timer
events, recordings, the summary) is per session without anything else knowing about
series. Which week a join goes to is decided in signaling/schedule.py.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .store import ROOM_COLUMNS, RoomRecord, room_of_row

WEEK_S = 7 * 24 * 3600


class Sessions:
    """Sessions of weekly series, and the start of any scheduled class."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def session(self, series: RoomRecord, occurrence: int) -> RoomRecord:
        """Week ``occurrence`` of ``series`` (made now if no join made it before: two
        nodes or joins racing make one row, the unique index keeps the first)."""
        assert series.starts_at is not None and occurrence >= 0
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO rooms (id, title, created_at, ended_at, gallery, owner_id,"
                    " description, starts_at, duration_s, weekly, series_id, occurrence)"
                    " VALUES (:id, :title, :t, NULL, FALSE, :owner, :description, :starts_at,"
                    " :duration_s, FALSE, :series, :occurrence)"
                    " ON CONFLICT (series_id, occurrence) DO NOTHING"
                ),
                {
                    "id": uuid.uuid4().hex[:12], "title": series.title, "t": time.time(),
                    "owner": series.owner_id, "description": series.description,
                    "starts_at": series.starts_at + occurrence * WEEK_S,
                    "duration_s": series.duration_s, "series": series.id,
                    "occurrence": occurrence,
                },
            )  # fmt: skip
            row = (
                await conn.execute(
                    text(
                        f"SELECT {ROOM_COLUMNS} FROM rooms"
                        " WHERE series_id = :series AND occurrence = :occurrence"
                    ),
                    {"series": series.id, "occurrence": occurrence},
                )
            ).one()
        return room_of_row(row)

    async def existing(self, series_id: str, occurrence: int) -> RoomRecord | None:
        """Week ``occurrence`` of a series if a join made it, without making it."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {ROOM_COLUMNS} FROM rooms"
                        " WHERE series_id = :series AND occurrence = :occurrence"
                    ),
                    {"series": series_id, "occurrence": occurrence},
                )
            ).first()
        return None if row is None else room_of_row(row)

    async def running(self, series_id: str) -> RoomRecord | None:
        """The latest session of a series that was started and has not ended, if any."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {ROOM_COLUMNS} FROM rooms WHERE series_id = :series"
                        " AND started_at IS NOT NULL AND ended_at IS NULL"
                        " ORDER BY occurrence DESC LIMIT 1"
                    ),
                    {"series": series_id},
                )
            ).first()
        return None if row is None else room_of_row(row)

    async def start(self, room_id: str) -> float | None:
        """The instructor started a class: its start time (the first one, if it was
        started before); None when there is no such class or it ended."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE rooms SET started_at = :t"
                    " WHERE id = :id AND started_at IS NULL AND ended_at IS NULL"
                ),
                {"t": time.time(), "id": room_id},
            )
            row = (
                await conn.execute(
                    text("SELECT started_at FROM rooms WHERE id = :id AND ended_at IS NULL"),
                    {"id": room_id},
                )
            ).first()
        return None if row is None or row[0] is None else float(row[0])
