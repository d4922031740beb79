"""Persistence of classes and chat, on SQLite (embedded) or PostgreSQL."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

CHAT_HISTORY = 100


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """A class as stored."""

    id: str
    title: str
    created_at: float
    ended_at: float | None
    gallery: bool
    owner_id: str | None = None  # the account that created it (None before accounts)
    generation: int = 0  # its links' generation: replacing the join link adds one
    description: str = ""
    starts_at: float | None = None  # scheduled start; None: an instant class, no lobby
    duration_s: int | None = None
    weekly: bool = False  # a weekly series: its sessions are rows of their own
    started_at: float | None = None  # when the instructor started it (the lobby ends)
    series_id: str | None = None  # a weekly series' session: the series
    occurrence: int | None = None  # ... and which week of it (0: the first)

    @property
    def link_id(self) -> str:
        """The class its links name: the series for one of its sessions."""
        return self.series_id or self.id

    @property
    def in_session(self) -> bool:
        """Whether it is under way: an instant class always, a scheduled one once started."""
        return self.starts_at is None or self.started_at is not None


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """When a class happens, as its creator set it (all optional)."""

    description: str = ""
    starts_at: float | None = None
    duration_s: int | None = None
    weekly: bool = False


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """One chat message as stored."""

    id: str
    room_id: str
    participant_id: str
    name: str
    text: str
    sent_at: float
    role: str = "participant"  # the sender's: "host" marks the instructor's messages


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """A participant's profile as stored: what their zones and calories are computed from.

    The same fields as ``telemetry.zones.Profile``, which signaling builds from it: the
    storage layer imports nothing of telemetry.
    """

    age: int | None = None
    max_hr: int | None = None
    resting_hr: int | None = None
    weight_kg: float | None = None
    sex: Literal["female", "male"] | None = None
    method: Literal["hrmax", "karvonen"] = "hrmax"
    max_hr_learned: bool = False  # raised by a hold above it in class (migration 0009)


@dataclass(frozen=True, slots=True)
class EffortRecord:
    """A class's effort settings as stored (telemetry.effort.EffortScheme's fields)."""

    points_per_minute: tuple[float, ...]  # zones 0-5
    target_kind: Literal["zone_minutes", "points"] | None = None
    target_value: float | None = None
    target_from_zone: int | None = None


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    """Someone who joined a class, with the profile their zones and calories use."""

    room_id: str
    id: str
    name: str
    role: str
    joined_at: float
    profile: ProfileRecord


def create_engine(url: str) -> AsyncEngine:
    """An async engine; for SQLite the file's folder is created and foreign keys enforced."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


ROOM_COLUMNS = (
    "id, title, created_at, ended_at, gallery, owner_id, generation, description, starts_at,"
    " duration_s, weekly, started_at, series_id, occurrence"
)


async def attended_rooms(
    engine: AsyncEngine, where: str, params: dict[str, Any], limit: int
) -> list[tuple[RoomRecord, int]]:
    """Classes (``rooms r``, filtered by ``where``, which may join more tables before its
    WHERE), newest first, each with how many participants (not instructors) joined it."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {', '.join(f'r.{c.strip()}' for c in ROOM_COLUMNS.split(','))},"
                    " (SELECT COUNT(*) FROM participants p"
                    "  WHERE p.room_id = r.id AND p.role = 'participant')"
                    f" FROM rooms r {where} ORDER BY r.created_at DESC, r.id LIMIT :limit"
                ),
                {**params, "limit": limit},
            )
        ).all()
    return [(room_of_row(r), int(r[14])) for r in rows]


def room_of_row(row: Any) -> RoomRecord:
    """A row of ROOM_COLUMNS (and maybe more after them)."""
    return RoomRecord(
        row[0], row[1], float(row[2]), row[3], bool(row[4]), row[5], int(row[6]),
        description=row[7], starts_at=row[8], duration_s=row[9], weekly=bool(row[10]),
        started_at=row[11], series_id=row[12], occurrence=row[13],
    )  # fmt: skip


_PARTICIPANT_COLUMNS = (
    "room_id, id, name, role, joined_at, age, max_hr, resting_hr, weight_kg, sex, zone_method,"
    " max_hr_learned"
)


def _participant(row: Any) -> ParticipantRecord:
    profile = ProfileRecord(
        age=row[5],
        max_hr=row[6],
        resting_hr=row[7],
        weight_kg=None if row[8] is None else float(row[8]),
        sex=row[9],
        method=row[10],
        max_hr_learned=bool(row[11]),
    )
    return ParticipantRecord(row[0], row[1], row[2], row[3], float(row[4]), profile)


# A profile's columns as an UPDATE sets them, from ``profile_params``.
PROFILE_SET = (
    "age = :age, max_hr = :max_hr, resting_hr = :resting_hr, weight_kg = :weight_kg,"
    " sex = :sex, zone_method = :method, max_hr_learned = :learned"
)


def profile_params(profile: ProfileRecord) -> dict[str, Any]:
    """A profile as the bind parameters of ``PROFILE_SET``."""
    return {
        "age": profile.age, "max_hr": profile.max_hr, "resting_hr": profile.resting_hr,
        "weight_kg": profile.weight_kg, "sex": profile.sex, "method": profile.method,
        "learned": profile.max_hr_learned,
    }  # fmt: skip


_EFFORT_POINTS = ", ".join(f"points_zone_{i}" for i in range(6))


# A message's sender's role comes from the class's participants (a message is stored once).
_CHAT_COLUMNS = (
    "c.id, c.room_id, c.participant_id, c.name, c.text, c.sent_at, COALESCE(p.role, 'participant')"
)
_CHAT_SENDER = "LEFT JOIN participants p ON p.room_id = c.room_id AND p.id = c.participant_id"


def _chat_record(row: Any) -> ChatRecord:
    return ChatRecord(row[0], row[1], row[2], row[3], row[4], float(row[5]), row[6])


class Store:
    """Rooms, their participants and chat messages."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_room(
        self, title: str, owner_id: str | None = None, schedule: ScheduleRecord | None = None
    ) -> RoomRecord:
        """Store a new class (owned by the account ``owner_id``, on ``schedule`` if
        given: else an instant class) and return it."""
        plan = schedule or ScheduleRecord()
        room = RoomRecord(
            id=uuid.uuid4().hex[:12], title=title, created_at=time.time(), ended_at=None,
            gallery=False, owner_id=owner_id, description=plan.description,
            starts_at=plan.starts_at, duration_s=plan.duration_s, weekly=plan.weekly,
        )  # fmt: skip
        # An instant class names only the columns it sets: its INSERT is the same as
        # before schedules (upgrade tests make a class on an older schema with it).
        columns = "id, title, created_at, ended_at, gallery, owner_id"
        values = ":id, :title, :created_at, NULL, FALSE, :owner"
        if schedule is not None:
            columns += ", description, starts_at, duration_s, weekly"
            values += ", :description, :starts_at, :duration_s, :weekly"
        async with self.engine.begin() as conn:
            await conn.execute(
                text(f"INSERT INTO rooms ({columns}) VALUES ({values})"),
                {
                    "id": room.id, "title": room.title, "created_at": room.created_at,
                    "owner": owner_id, "description": room.description,
                    "starts_at": room.starts_at, "duration_s": room.duration_s,
                    "weekly": room.weekly,
                },
            )  # fmt: skip
        return room

    async def get_room(self, room_id: str) -> RoomRecord | None:
        """The class with this id, if any."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {ROOM_COLUMNS} FROM rooms WHERE id = :id"),
                    {"id": room_id},
                )
            ).first()
        if row is None:
            return None
        return room_of_row(row)

    async def rooms_of(self, owner_id: str, limit: int = 100) -> list[tuple[RoomRecord, int]]:
        """The classes ``owner_id`` created, newest first, each with how many
        participants (not instructors) joined it."""
        return await attended_rooms(
            self.engine, "WHERE r.owner_id = :owner", {"owner": owner_id}, limit
        )

    async def end_room(self, room_id: str) -> None:
        """Mark the class ended (idempotent: the first end time stays)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("UPDATE rooms SET ended_at = :t WHERE id = :id AND ended_at IS NULL"),
                {"t": time.time(), "id": room_id},
            )

    async def replace_links(self, room_id: str) -> int | None:
        """Start a new link generation for a class that has not ended: every link and
        token of the earlier ones stops letting anyone in. The new generation, or None
        when there is no such class (unknown, or ended: nothing changes)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text(
                    "UPDATE rooms SET generation = generation + 1"
                    " WHERE id = :id AND ended_at IS NULL"
                ),
                {"id": room_id},
            )
            if result.rowcount != 1:
                return None
            row = (
                await conn.execute(
                    text("SELECT generation FROM rooms WHERE id = :id"), {"id": room_id}
                )
            ).one()
        return int(row[0])

    async def remove_participant(self, room_id: str, participant_id: str, by: str) -> None:
        """The instructor ``by`` removed a participant: they stay out of the class for
        good (idempotent: the first removal is kept)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO removed_participants"
                    " (room_id, participant_id, removed_by, removed_at)"
                    " VALUES (:room, :id, :by, :t) ON CONFLICT (room_id, participant_id) DO NOTHING"
                ),
                {"room": room_id, "id": participant_id, "by": by, "t": time.time()},
            )

    async def is_removed(self, room_id: str, participant_id: str) -> bool:
        """Whether the instructor removed this participant from the class (from any
        session of it, for a weekly series)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT 1 FROM removed_participants WHERE participant_id = :id AND"
                        " (room_id = :room OR room_id IN (SELECT id FROM rooms"
                        " WHERE series_id = :room))"
                    ),
                    {"room": room_id, "id": participant_id},
                )
            ).first()
        return row is not None

    async def set_gallery(self, room_id: str, enabled: bool) -> None:
        """Store the class's gallery mode."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("UPDATE rooms SET gallery = :g WHERE id = :id"), {"g": enabled, "id": room_id}
            )

    async def add_chat(
        self,
        room_id: str,
        participant_id: str,
        name: str,
        body: str,
        role: str = "participant",
        limit: int | None = None,
    ) -> ChatRecord | None:
        """Store a chat message and return it (``role``: the sender's, not stored twice:
        read back from ``participants``); None when the class already holds ``limit``
        messages (a quota: nodes racing may pass it by a message or two)."""
        record = ChatRecord(
            id=uuid.uuid4().hex,
            room_id=room_id,
            participant_id=participant_id,
            name=name,
            text=body,
            sent_at=time.time(),
            role=role,
        )
        quota = (
            ""
            if limit is None
            else " WHERE (SELECT count(*) FROM chat_messages WHERE room_id = :room_id) < :limit"
        )
        async with self.engine.begin() as conn:
            stored = await conn.execute(
                text(
                    "INSERT INTO chat_messages (id, room_id, participant_id, name, text, sent_at)"
                    " SELECT :id, :room_id, :participant_id, :name, :text, :sent_at" + quota
                ),
                {
                    "id": record.id,
                    "room_id": room_id,
                    "participant_id": participant_id,
                    "name": name,
                    "text": body,
                    "sent_at": record.sent_at,
                    "limit": limit,
                },
            )
        return record if stored.rowcount else None

    async def recent_chat(self, room_id: str, limit: int = CHAT_HISTORY) -> list[ChatRecord]:
        """The last ``limit`` messages of a class, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {_CHAT_COLUMNS} FROM chat_messages c {_CHAT_SENDER}"
                        " WHERE c.room_id = :room ORDER BY c.sent_at DESC, c.id DESC LIMIT :limit"
                    ),
                    {"room": room_id, "limit": limit},
                )
            ).all()
        return [_chat_record(r) for r in reversed(rows)]

    async def add_participant(
        self, room_id: str, participant_id: str, name: str, role: str
    ) -> None:
        """Record a join; a rejoin keeps the first join time and profile, updates the name."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO participants (room_id, id, name, role, joined_at)"
                    " VALUES (:room, :id, :name, :role, :t)"
                    " ON CONFLICT (room_id, id) DO UPDATE SET name = excluded.name"
                ),
                {
                    "room": room_id,
                    "id": participant_id,
                    "name": name,
                    "role": role,
                    "t": time.time(),
                },
            )

    async def set_profile(self, room_id: str, participant_id: str, profile: ProfileRecord) -> None:
        """Store a participant's profile (age, maximum and resting HR, weight, sex, method,
        whether the maximum was learned). A visit linked to a participant account
        (migration 0012) writes it back to the account's profile too, in one step."""
        linked = "SELECT user_id FROM account_visits WHERE room_id = :room AND participant_id = :id"
        params = {**profile_params(profile), "room": room_id, "id": participant_id}
        async with self.engine.begin() as conn:
            for statement in (
                f"UPDATE participants SET {PROFILE_SET} WHERE room_id = :room AND id = :id",
                f"UPDATE account_profiles SET {PROFILE_SET}, updated_at = :t"
                f" WHERE user_id IN ({linked})",
            ):
                await conn.execute(text(statement), {**params, "t": time.time()})

    async def participant(self, room_id: str, participant_id: str) -> ParticipantRecord | None:
        """One participant of a class, if they ever joined it."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {_PARTICIPANT_COLUMNS} FROM participants"
                        " WHERE room_id = :room AND id = :id"
                    ),
                    {"room": room_id, "id": participant_id},
                )
            ).first()
        return None if row is None else _participant(row)

    async def participants(self, room_id: str) -> list[ParticipantRecord]:
        """Everyone who joined a class, in join order."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {_PARTICIPANT_COLUMNS} FROM participants"
                        " WHERE room_id = :room ORDER BY joined_at, id"
                    ),
                    {"room": room_id},
                )
            ).all()
        return [_participant(r) for r in rows]

    async def effort_settings(self, room_id: str) -> EffortRecord | None:
        """The effort settings the instructor set for a class, if any."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {_EFFORT_POINTS}, target_kind, target_value, target_from_zone"
                        " FROM effort_settings WHERE room_id = :room"
                    ),
                    {"room": room_id},
                )
            ).first()
        if row is None:
            return None
        return EffortRecord(
            points_per_minute=tuple(float(v) for v in row[:6]),
            target_kind=row[6],
            target_value=None if row[7] is None else float(row[7]),
            target_from_zone=row[8],
        )

    async def set_effort_settings(self, room_id: str, record: EffortRecord) -> None:
        """Store a class's effort settings (replacing earlier ones)."""
        names = [f"points_zone_{i}" for i in range(6)]
        params: dict[str, Any] = dict(zip(names, record.points_per_minute, strict=True))
        params.update(
            room=room_id,
            kind=record.target_kind,
            value=record.target_value,
            from_zone=record.target_from_zone,
            t=time.time(),
        )
        values = ", ".join(f":{n}" for n in names)
        updates = ", ".join(f"{n} = excluded.{n}" for n in names)
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO effort_settings (room_id, {_EFFORT_POINTS}, target_kind,"
                    " target_value, target_from_zone, updated_at)"
                    f" VALUES (:room, {values}, :kind, :value, :from_zone, :t)"
                    f" ON CONFLICT (room_id) DO UPDATE SET {updates},"
                    " target_kind = excluded.target_kind, target_value = excluded.target_value,"
                    " target_from_zone = excluded.target_from_zone,"
                    " updated_at = excluded.updated_at"
                ),
                params,
            )

    async def board_opt_out(self, room_id: str, participant_id: str) -> bool:
        """Whether a participant opted out of the class's leaderboard."""
        async with self.engine.connect() as conn:
            value = (
                await conn.execute(
                    text(
                        "SELECT board_opt_out FROM participants WHERE room_id = :room AND id = :id"
                    ),
                    {"room": room_id, "id": participant_id},
                )
            ).scalar()
        return bool(value)

    async def set_board_opt_out(self, room_id: str, participant_id: str, opt_out: bool) -> None:
        """Store whether a participant stays off the class's leaderboard."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE participants SET board_opt_out = :o WHERE room_id = :room AND id = :id"
                ),
                {"o": opt_out, "room": room_id, "id": participant_id},
            )

    async def forget_class(self, room_id: str) -> int:
        """Delete every participant (profiles) and chat message of a class; returns rows
        deleted. The class itself stays."""
        deleted = 0
        async with self.engine.begin() as conn:
            for table in ("chat_messages", "participants"):
                result = await conn.execute(
                    text(f"DELETE FROM {table} WHERE room_id = :room"), {"room": room_id}
                )
                deleted += result.rowcount
        return deleted

    async def classes_before(self, cutoff: float) -> list[str]:
        """Classes that ended (or, never ended, began) before ``cutoff`` (unix seconds)
        and still hold participants or chat: what retention has left to erase."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id FROM rooms WHERE COALESCE(ended_at, created_at) < :cutoff"
                        " AND (EXISTS (SELECT 1 FROM participants p WHERE p.room_id = rooms.id)"
                        " OR EXISTS (SELECT 1 FROM chat_messages c WHERE c.room_id = rooms.id))"
                        " ORDER BY id"
                    ),
                    {"cutoff": cutoff},
                )
            ).all()
        return [str(r[0]) for r in rows]

    async def forget_participant(self, room_id: str, participant_id: str) -> int:
        """Delete a participant's profile and chat messages; returns rows deleted."""
        deleted = 0
        async with self.engine.begin() as conn:
            for table, column in (("chat_messages", "participant_id"), ("participants", "id")):
                result = await conn.execute(
                    text(f"DELETE FROM {table} WHERE room_id = :room AND {column} = :id"),
                    {"room": room_id, "id": participant_id},
                )
                deleted += result.rowcount
        return deleted

    async def chat_of(self, room_id: str, participant_id: str) -> list[ChatRecord]:
        """Every chat message a participant sent in a class, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {_CHAT_COLUMNS} FROM chat_messages c {_CHAT_SENDER}"
                        " WHERE c.room_id = :room AND c.participant_id = :id"
                        " ORDER BY c.sent_at, c.id"
                    ),
                    {"room": room_id, "id": participant_id},
                )
            ).all()
        return [_chat_record(r) for r in rows]
