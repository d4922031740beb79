"""Reading stored heart-rate data back: raw readings, per-minute figures, deletion.

Times come back as unix seconds on every backend: PostgreSQL stores ``timestamptz``
(converted with ``extract(epoch ...)``, exact to the microsecond), SQLite the seconds
themselves. ``rr_ms`` is ``real[]`` on PostgreSQL, so intervals come back at float32
precision there (exact for the 1/1024 s steps of a BLE strap); SQLite keeps JSON text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .rows import HeartRateRow


@dataclass(frozen=True, slots=True)
class MinuteRow:
    """One participant's readings in one minute (``bucket``: its start, unix seconds)."""

    bucket: float
    participant_id: str
    avg_bpm: float
    max_bpm: int
    min_bpm: int
    readings: int


def _where(room_id: str, participant_id: str | None) -> tuple[str, dict[str, Any]]:
    if participant_id is None:
        return "room_id = :room_id", {"room_id": room_id}
    return (
        "room_id = :room_id AND participant_id = :participant_id",
        {"room_id": room_id, "participant_id": participant_id},
    )


class HeartRateHistory:
    """Queries over ``heart_rate`` and ``heart_rate_1m``, on PostgreSQL or SQLite."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._continuous: bool | None = None  # heart_rate_1m is a TimescaleDB aggregate

    async def readings(self, room_id: str, participant_id: str | None = None) -> list[HeartRateRow]:
        """A class's readings (one participant's if given), in time order."""
        where, params = _where(room_id, participant_id)
        time_column = "CAST(extract(epoch FROM time) AS float8)" if self._postgres else "time"
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {time_column}, room_id, participant_id, seq, bpm, rr_ms,"
                        f" energy_kj, contact FROM heart_rate WHERE {where}"
                        " ORDER BY time, participant_id, seq"
                    ),
                    params,
                )
            ).all()
        return [
            HeartRateRow(
                time=float(r[0]),
                room_id=r[1],
                participant_id=r[2],
                seq=int(r[3]),
                bpm=int(r[4]),
                rr_ms=tuple(float(x) for x in (r[5] if self._postgres else json.loads(r[5]))),
                energy_kj=None if r[6] is None else int(r[6]),
                contact=None if r[7] is None else bool(r[7]),
            )
            for r in rows
        ]

    async def minutes(self, room_id: str, participant_id: str | None = None) -> list[MinuteRow]:
        """Per-minute average, maximum, minimum and count, by minute then participant."""
        where, params = _where(room_id, participant_id)
        bucket = "CAST(extract(epoch FROM bucket) AS float8)" if self._postgres else "bucket"
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {bucket}, participant_id, CAST(avg_bpm AS DOUBLE PRECISION),"
                        f" max_bpm, min_bpm, readings FROM heart_rate_1m WHERE {where}"
                        " ORDER BY bucket, participant_id"
                    ),
                    params,
                )
            ).all()
        return [
            MinuteRow(float(r[0]), r[1], float(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows
        ]

    async def count(self, room_id: str, participant_id: str | None = None) -> int:
        """How many readings are stored for a class (or one participant in it)."""
        where, params = _where(room_id, participant_id)
        async with self.engine.connect() as conn:
            value = (
                await conn.execute(text(f"SELECT count(*) FROM heart_rate WHERE {where}"), params)
            ).scalar_one()
        return int(value)

    async def delete_participant(self, room_id: str, participant_id: str | None) -> int:
        """Delete one participant's readings in a class (None: everyone's); returns how
        many were deleted. On TimescaleDB the per-minute aggregate follows."""
        where, params = _where(room_id, participant_id)
        if not self._postgres:
            async with self.engine.begin() as conn:
                result = await conn.execute(text(f"DELETE FROM heart_rate WHERE {where}"), params)
            return int(result.rowcount)
        async with self.engine.begin() as conn:
            deleted, first, last = (
                await conn.execute(
                    text(
                        f"WITH gone AS (DELETE FROM heart_rate WHERE {where} RETURNING time)"
                        " SELECT count(*), CAST(extract(epoch FROM min(time)) AS float8),"
                        " CAST(extract(epoch FROM max(time)) AS float8) FROM gone"
                    ),
                    params,
                )
            ).one()
            continuous = await self._is_continuous(conn)
        if deleted and continuous:
            await self._refresh_minutes(float(first), float(last))
        return int(deleted)

    async def _is_continuous(self, conn: AsyncConnection) -> bool:
        if self._continuous is None:
            catalog = "timescaledb_information.continuous_aggregates"
            installed = await conn.execute(text(f"SELECT to_regclass('{catalog}')"))
            if installed.scalar() is None:
                self._continuous = False
            else:
                view = await conn.execute(
                    text(f"SELECT 1 FROM {catalog} WHERE view_name = 'heart_rate_1m'")
                )
                self._continuous = view.first() is not None
        return self._continuous

    async def _refresh_minutes(self, first: float, last: float) -> None:
        """Re-materialize the minutes a deletion touched (TimescaleDB only).

        The continuous aggregate keeps what it materialized until refreshed, and its
        policy only looks back a week: without this the deleted participant's minutes
        would stay. A refresh cannot run in a transaction, hence AUTOCOMMIT.
        """
        start = math.floor(first / 60) * 60
        end = math.floor(last / 60) * 60 + 60
        async with self.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(
                text(
                    "CALL refresh_continuous_aggregate('heart_rate_1m',"
                    " to_timestamp(CAST(:start AS float8)), to_timestamp(CAST(:end AS float8)))"
                ),
                {"start": start, "end": end},
            )
