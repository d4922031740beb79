"""Co-instructors: other instructors with host rights in a class, on SQLite or PostgreSQL.

A row names the class its links name: a single class, or a weekly series (then it covers
every week's session). Only the class's creator adds and removes co-instructors
(``signaling/co_instructors.py``); the host links a co-instructor is given carry their
account, and ``may_host`` is what the join and the summary ask before honouring them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from .store import RoomRecord, attended_rooms


@dataclass(frozen=True, slots=True)
class CoInstructor:
    """A co-instructor of a class as its creator sees them."""

    user_id: str
    email: str
    added_at: float
    disabled: bool


class CoInstructors:
    """The ``co_instructors`` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, room_id: str, user_id: str) -> bool:
        """Make ``user_id`` a co-instructor of ``room_id``; False if they already were."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO co_instructors (room_id, user_id, added_at)"
                        " VALUES (:room, :user, :t)"
                    ),
                    {"room": room_id, "user": user_id, "t": time.time()},
                )
        except IntegrityError:  # the primary key: already one (or the class just went)
            return False
        return True

    async def remove(self, room_id: str, user_id: str) -> bool:
        """Take ``user_id``'s host rights in ``room_id`` away; False if they had none."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text("DELETE FROM co_instructors WHERE room_id = :room AND user_id = :user"),
                {"room": room_id, "user": user_id},
            )
        return bool(result.rowcount)

    async def of_class(self, room_id: str) -> list[CoInstructor]:
        """A class's co-instructors, in the order they were added."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT u.id, u.email, c.added_at, u.disabled FROM co_instructors c"
                        " JOIN users u ON u.id = c.user_id WHERE c.room_id = :room"
                        " ORDER BY c.added_at, u.email"
                    ),
                    {"room": room_id},
                )
            ).all()
        return [CoInstructor(r[0], r[1], float(r[2]), bool(r[3])) for r in rows]

    async def may_host(self, room_id: str, user_id: str) -> bool:
        """Whether the enabled account ``user_id`` hosts ``room_id`` (or the series it is a
        week of): its creator or a co-instructor."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT 1 FROM rooms r JOIN users u ON u.id = :user"
                        " WHERE r.id = :room AND NOT u.disabled AND ("
                        "  COALESCE(r.owner_id, '') = :user OR EXISTS (SELECT 1 FROM"
                        "  co_instructors c WHERE c.user_id = :user"
                        "  AND c.room_id = COALESCE(r.series_id, r.id)))"
                    ),
                    {"room": room_id, "user": user_id},
                )
            ).first()
        return row is not None

    async def honours(self, room_id: str, user_id: str | None) -> bool:
        """Whether a token naming the account ``user_id`` (None: a token naming none, which
        this check leaves to the others) still counts in ``room_id``: ``may_host``."""
        return user_id is None or await self.may_host(room_id, user_id)

    async def rooms_of(self, user_id: str, limit: int = 100) -> list[tuple[RoomRecord, int]]:
        """The classes ``user_id`` co-instructs (a series' weeks with it), newest first,
        each with how many participants (not instructors) joined it."""
        return await attended_rooms(
            self.engine,
            "JOIN co_instructors c ON c.room_id = COALESCE(r.series_id, r.id)"
            " WHERE c.user_id = :user",
            {"user": user_id},
            limit,
        )
