"""The audit log: who did what, when and from where, on SQLite or PostgreSQL.

Written by whoever acts (the accounts and admin endpoints, class creation, removals,
data exports and deletions, ``pulseroom user``); read by admins in the browser
(``GET /api/admin/audit``) and with ``pulseroom audit``. An entry is never a secret's
carrier: no passwords, tokens or links, only who, what, which and from where.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

Action = Literal[
    "login",
    "login_failed",
    "logout",
    "setup",
    "user_added",
    "user_disabled",
    "user_enabled",
    "role_changed",
    "password_link",
    "password_set",
    "class_created",
    "participant_removed",
    "link_rotated",
    "co_instructor_added",
    "co_instructor_removed",
    "data_exported",
    "data_deleted",
    "data_erased",
    "recording_deleted",
    "signup",
    "visit_claimed",
    "account_deleted",
]
ACTIONS: tuple[str, ...] = get_args(Action)
MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an account (``id`` set), or someone without one, by a label
    ("shell", "host of class …", "participant … by link")."""

    label: str
    id: str | None = None


SHELL = Actor("shell")
SERVER = Actor("server")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry as stored."""

    id: str
    at: float
    action: str
    actor_id: str | None
    actor_label: str
    target: str
    address: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The entry as the API and ``pulseroom audit --json`` give it."""
        return {
            "id": self.id,
            "at": self.at,
            "action": self.action,
            "actor": {"id": self.actor_id, "label": self.actor_label},
            "target": self.target,
            "address": self.address,
            "detail": self.detail,
        }


class AuditLog:
    """Appends entries and reads them back, newest first."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(
        self,
        action: Action,
        actor: Actor,
        target: str = "",
        address: str | None = None,
        **detail: str | int | float | bool | None,
    ) -> AuditEntry:
        """Store one entry (``detail``: a few plain values, never a secret)."""
        entry = AuditEntry(
            uuid.uuid4().hex, time.time(), action, actor.id, actor.label[:200],
            target[:200], (address or "")[:100], dict(detail),
        )  # fmt: skip
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO audit_log"
                    " (id, at, action, actor_id, actor_label, target, address, detail)"
                    " VALUES (:id, :at, :action, :actor_id, :label, :target, :address, :detail)"
                ),
                {
                    "id": entry.id, "at": entry.at, "action": action, "actor_id": entry.actor_id,
                    "label": entry.actor_label, "target": entry.target,
                    "address": entry.address, "detail": json.dumps(entry.detail),
                },
            )  # fmt: skip
        logger.info("audit: %s by %s on %r from %s", action, entry.actor_label, target, address)
        return entry

    async def entries(
        self, limit: int = 100, before: float | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """Up to ``limit`` entries older than ``before`` (all if None), newest first,
        only of ``action`` if given."""
        where: list[str] = []
        params: dict[str, Any] = {"limit": max(1, min(limit, MAX_PAGE))}
        if before is not None:
            where.append("at < :before")
            params["before"] = before
        if action is not None:
            where.append("action = :action")
            params["action"] = action
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, at, action, actor_id, actor_label, target, address, detail"
                        f" FROM audit_log{clause} ORDER BY at DESC, id DESC LIMIT :limit"
                    ),
                    params,
                )
            ).all()
        return [
            AuditEntry(r[0], float(r[1]), r[2], r[3], r[4], r[5], r[6], json.loads(r[7] or "{}"))
            for r in rows
        ]
