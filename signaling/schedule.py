"""Classes on a schedule: which session a series' link leads to, and what comes next.

A class may have a start time (``starts_at``), a duration and a weekly recurrence. A
one-off scheduled class is one ``rooms`` row, like an instant class; a weekly class's
row is the *series*, whose one participant link and host link lead every week to that
week's *session*, a row of its own made by the first join (storage/sessions.py), so its
participants, chat, heart rate and summary stay apart from other weeks'.

The session a join goes to: the latest started, unended session while it may still be
running (its duration and ``OVERRUN_S`` after its start); else the first week whose
window (scheduled start + duration + ``OVERRUN_S``) has not closed, or the week after
it if the instructor already ended that one. A week nobody started is skipped once its
window closes, so a link opened days later waits for the coming week.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.sessions import WEEK_S, Sessions
from storage.store import RoomRecord

from .messages import RoomOut

# A class is found by its link this long past its scheduled (or actual) end: a late
# start or a long cool-down keep everyone in the same session.
OVERRUN_S = 2 * 3600
DEFAULT_DURATION_S = 3600


def duration_of(room: RoomRecord) -> int:
    """The class's duration in seconds (an hour when it has none)."""
    return room.duration_s or DEFAULT_DURATION_S


def open_week(series: RoomRecord, now: float) -> int:
    """The first week of a series whose window has not closed at ``now``."""
    assert series.starts_at is not None
    closes = series.starts_at + duration_of(series) + OVERRUN_S
    return math.floor((now - closes) / WEEK_S) + 1 if now >= closes else 0


def next_start(
    room: RoomRecord, now: float, ended_weeks: frozenset[int] = frozenset()
) -> float | None:
    """When a class (or a series' next session) starts, if that is still to come or
    under way: what the instructor's list sorts upcoming classes by."""
    if room.starts_at is None or room.ended_at is not None or room.series_id is not None:
        return None
    if not room.weekly:
        closes = room.starts_at + duration_of(room) + OVERRUN_S
        return room.starts_at if now < closes else None
    week = open_week(room, now)
    while week in ended_weeks:
        week += 1
    return room.starts_at + week * WEEK_S


def room_out(room: RoomRecord) -> dict[str, Any]:
    """The join ack's ``room``: its ``id`` is what the link names (a series' session
    says which it is: ``session_id``)."""
    return RoomOut(
        id=room.link_id, title=room.title, gallery=room.gallery, description=room.description,
        session_id=room.id if room.series_id is not None else None,
    ).model_dump()  # fmt: skip


class Schedule:
    """Leads a join by a class's link to the session it joins."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.sessions = Sessions(engine)

    async def session_for(self, room: RoomRecord, now: float) -> RoomRecord:
        """The session a join by ``room``'s link enters: ``room`` itself unless it is a
        weekly series. A session carries its series' link generation, which the join's
        token is checked against."""
        if not room.weekly or room.starts_at is None:
            return room
        running = await self.sessions.running(room.id)
        # (``running`` returns only started sessions.)
        if (
            running is not None
            and now < (running.started_at or 0) + duration_of(running) + OVERRUN_S
        ):
            return dataclasses.replace(running, generation=room.generation)
        week = open_week(room, now)
        existing = await self.sessions.existing(room.id, week)
        if existing is not None and existing.ended_at is not None:
            week += 1
        session = await self.sessions.session(room, week)
        return dataclasses.replace(session, generation=room.generation)
