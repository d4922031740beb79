"""``pulseroom audit``: the audit log from the shell, newest first (as admins see it at
``/admin``)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from storage import migrations
from storage.audit import ACTIONS, AuditEntry, AuditLog

from .settings import Settings


def _line(entry: AuditEntry) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.at))
    detail = " ".join(f"{k}={v}" for k, v in entry.detail.items())
    where = f" from {entry.address}" if entry.address else ""
    return f"{when}  {entry.action:<20} {entry.actor_label} → {entry.target}{where}  {detail}"


async def _entries(settings: Settings, limit: int, action: str | None) -> list[AuditEntry]:
    async with migrations.migrated(settings.effective_database_url) as engine:
        return await AuditLog(engine).entries(limit, action=action)


def show(settings: Settings, limit: int, action: str | None, as_json: bool) -> int:
    """Print the newest ``limit`` entries (only ``action``'s if given); 0, or 1 with a
    message on stderr."""
    if action is not None and action not in ACTIONS:
        print(f"pulseroom audit: unknown action {action!r}; one of: {', '.join(ACTIONS)}",
              file=sys.stderr)  # fmt: skip
        return 1
    entries = asyncio.run(_entries(settings, limit, action))
    if as_json:
        print(json.dumps([e.as_json() for e in entries], indent=1))
    else:
        for entry in entries:
            print(_line(entry))
    return 0
