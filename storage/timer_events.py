"""The interval timer's history per class: what a participant's exported activity takes
its laps from (``telemetry/laps.py``)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TimerAction = Literal["start", "pause", "resume", "stop"]


@dataclass(frozen=True, slots=True)
class TimerEventRecord:
    """One change of the timer: when, what, and for a start its program (as sent:
    ``{"title", "rounds", "phases": [{"name", "seconds", "kind"}]}``)."""

    at: float
    action: TimerAction
    program: dict[str, Any] | None = None


class TimerEvents:
    """Appends and reads a class's timer changes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, room_id: str, event: TimerEventRecord) -> None:
        """Store one change."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO timer_events (id, room_id, at, action, program)"
                    " VALUES (:id, :room, :at, :action, :program)"
                ),
                {
                    "id": uuid.uuid4().hex, "room": room_id, "at": event.at,
                    "action": event.action,
                    "program": None if event.program is None else json.dumps(event.program),
                },
            )  # fmt: skip

    async def of(self, room_id: str) -> list[TimerEventRecord]:
        """A class's changes in time order."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT at, action, program FROM timer_events"
                        " WHERE room_id = :room ORDER BY at, id"
                    ),
                    {"room": room_id},
                )
            ).all()
        return [
            TimerEventRecord(float(r[0]), r[1], None if r[2] is None else json.loads(r[2]))
            for r in rows
        ]
