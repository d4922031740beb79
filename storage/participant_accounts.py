"""Participant accounts: the zone profile an account keeps, and its class visits.

A participant joins a class by its link with no account; one who is logged in has that
class participant linked to their account (``account_visits``, migration 0012), so the
account's profile is where the class starts from and the classes show as their history.
``Store.set_profile`` writes a linked visit's profile changes back to the account.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .store import PROFILE_SET, ROOM_COLUMNS, ProfileRecord, RoomRecord, profile_params, room_of_row

_PROFILE_COLUMNS = "age, max_hr, resting_hr, weight_kg, sex, zone_method, max_hr_learned"


@dataclass(frozen=True, slots=True)
class Visit:
    """One class a participant account took part in: the class and who they were in it."""

    room: RoomRecord
    participant_id: str
    name: str
    joined_at: float


def _profile(row: Any) -> ProfileRecord:
    return ProfileRecord(
        age=row[0], max_hr=row[1], resting_hr=row[2],
        weight_kg=None if row[3] is None else float(row[3]), sex=row[4], method=row[5],
        max_hr_learned=bool(row[6]),
    )  # fmt: skip


def _is_blank(profile: ProfileRecord) -> bool:
    """Nothing entered (the defaults): a class profile like this takes the account's."""
    return profile == ProfileRecord()


class ParticipantAccounts:
    """Account profiles and the class visits linked to accounts."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def profile(self, user_id: str) -> ProfileRecord:
        """The account's profile (the defaults until one is saved)."""
        async with self.engine.connect() as conn:
            return await _read_profile(conn, user_id) or ProfileRecord()

    async def set_profile(self, user_id: str, profile: ProfileRecord) -> None:
        """Store the account's profile (it applies from the next class joined)."""
        async with self.engine.begin() as conn:
            await _write_profile(conn, user_id, profile)

    async def link(self, user_id: str, room_id: str, participant_id: str) -> ProfileRecord:
        """Link a class participant (who joined just now) to the account; the profile
        the class starts with. The account's wins when it has one; a class profile
        entered before the account had any becomes the account's. A participant linked
        to another account stays theirs (the link is made once)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO account_visits (room_id, participant_id, user_id, linked_at)"
                    " VALUES (:room, :id, :user, :t) ON CONFLICT (room_id, participant_id)"
                    " DO NOTHING"
                ),
                {"room": room_id, "id": participant_id, "user": user_id, "t": time.time()},
            )
            owner = await _owner(conn, room_id, participant_id)
            in_class = (
                await conn.execute(
                    text(
                        f"SELECT {_PROFILE_COLUMNS} FROM participants"
                        " WHERE room_id = :room AND id = :id"
                    ),
                    {"room": room_id, "id": participant_id},
                )
            ).first()
            current = ProfileRecord() if in_class is None else _profile(in_class)
            if owner != user_id:
                return current
            kept = await _read_profile(conn, user_id)
            if kept is None or _is_blank(kept):
                await _write_profile(conn, user_id, current)
                return current
            await conn.execute(
                text(f"UPDATE participants SET {PROFILE_SET} WHERE room_id = :room AND id = :id"),
                {**profile_params(kept), "room": room_id, "id": participant_id},
            )
            return kept

    async def owner(self, room_id: str, participant_id: str) -> str | None:
        """The account a class participant is linked to, if any."""
        async with self.engine.connect() as conn:
            return await _owner(conn, room_id, participant_id)

    async def visits(self, user_id: str) -> list[Visit]:
        """The account's classes, newest first."""
        columns = ", ".join(f"r.{c.strip()}" for c in ROOM_COLUMNS.split(","))
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {columns}, v.participant_id, p.name, p.joined_at"
                        " FROM account_visits v"
                        " JOIN participants p ON p.room_id = v.room_id AND p.id = v.participant_id"
                        " JOIN rooms r ON r.id = v.room_id"
                        " WHERE v.user_id = :user ORDER BY p.joined_at DESC, r.id"
                    ),
                    {"user": user_id},
                )
            ).all()
        return [Visit(room_of_row(r), r[14], r[15], float(r[16])) for r in rows]

    async def delete_user(self, user_id: str) -> bool:
        """Delete the account: its sessions, links, profile and visit links go with it
        (cascades). The classes' data must be erased first (``visits`` names it)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
        return bool(result.rowcount)


async def _read_profile(conn: AsyncConnection, user_id: str) -> ProfileRecord | None:
    row = (
        await conn.execute(
            text(f"SELECT {_PROFILE_COLUMNS} FROM account_profiles WHERE user_id = :user"),
            {"user": user_id},
        )
    ).first()
    return None if row is None else _profile(row)


async def _write_profile(conn: AsyncConnection, user_id: str, profile: ProfileRecord) -> None:
    await conn.execute(
        text(
            f"INSERT INTO account_profiles (user_id, {_PROFILE_COLUMNS}, updated_at)"
            " VALUES (:user, :age, :max_hr, :resting_hr, :weight_kg, :sex, :method, :learned, :t)"
            " ON CONFLICT (user_id) DO UPDATE SET age = excluded.age,"
            " max_hr = excluded.max_hr, resting_hr = excluded.resting_hr,"
            " weight_kg = excluded.weight_kg, sex = excluded.sex,"
            " zone_method = excluded.zone_method, max_hr_learned = excluded.max_hr_learned,"
            " updated_at = excluded.updated_at"
        ),
        {**profile_params(profile), "user": user_id, "t": time.time()},
    )  # fmt: skip


async def _owner(conn: AsyncConnection, room_id: str, participant_id: str) -> str | None:
    value = (
        await conn.execute(
            text(
                "SELECT user_id FROM account_visits WHERE room_id = :room AND participant_id = :id"
            ),
            {"room": room_id, "id": participant_id},
        )
    ).scalar()
    return None if value is None else str(value)
