"""Apply the numbered SQL files in ``migrations/`` to the configured database."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .store import create_engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(postgresql|sqlite))?\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema version: its number, name and the SQL for one backend."""

    version: int
    name: str
    path: Path


def discover(dialect: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations for ``dialect``, in order; a dialect-specific file wins."""
    chosen: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file name not understood: {path.name}")
        version, name, only = int(match[1]), match[2], match[3]
        if only is not None and only != dialect:
            continue
        if only is None and version in chosen:
            continue
        chosen[version] = Migration(version, name, path)
    return [chosen[v] for v in sorted(chosen)]


def split_statements(sql: str) -> list[str]:
    """Split a script on ``;`` at line ends, keeping ``$$ ... $$`` bodies whole."""
    statements: list[str] = []
    current: list[str] = []
    in_dollar = False
    for line in sql.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        if line.count("$$") % 2 == 1:
            in_dollar = not in_dollar
        if not in_dollar and stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements


async def _applied(conn: AsyncConnection) -> set[int]:
    await conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at DOUBLE PRECISION NOT NULL)"
        )
    )
    rows = await conn.execute(text("SELECT version FROM schema_migrations"))
    return {int(row[0]) for row in rows}


async def pending(
    engine: AsyncEngine, target: int | None = None, directory: Path = MIGRATIONS_DIR
) -> list[Migration]:
    """Migrations not yet applied (up to version ``target`` when given)."""
    async with engine.begin() as conn:
        done = await _applied(conn)
    return [
        m
        for m in discover(engine.dialect.name, directory)
        if m.version not in done and (target is None or m.version <= target)
    ]


def _log_server_message(_conn: object, message: Any) -> None:
    logger.warning("database: %s", getattr(message, "message", message))


@asynccontextmanager
async def _server_warnings(conn: AsyncConnection) -> AsyncIterator[None]:
    """Log what PostgreSQL says while a migration runs (RAISE WARNING: which path the
    schema took, e.g. no TimescaleDB): asyncpg drops such messages without a listener."""
    raw = None
    if conn.dialect.name == "postgresql":
        raw = (await conn.get_raw_connection()).driver_connection
    if raw is None or not hasattr(raw, "add_log_listener"):
        yield
        return
    raw.add_log_listener(_log_server_message)
    try:
        yield
    finally:
        raw.remove_log_listener(_log_server_message)


async def migrate(
    engine: AsyncEngine, target: int | None = None, directory: Path = MIGRATIONS_DIR
) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; returns those applied.

    ``target`` stops after that version: the upgrade tests build a database as an
    older release left it.
    """
    applied: list[Migration] = []
    for migration in await pending(engine, target, directory):
        async with engine.begin() as conn, _server_warnings(conn):
            if engine.dialect.name == "postgresql":
                # Two servers starting at once must not both apply the same version.
                await conn.execute(text("SELECT pg_advisory_xact_lock(7461707)"))
                if migration.version in await _applied(conn):
                    continue
            for statement in split_statements(migration.path.read_text()):
                await conn.exec_driver_sql(statement)
            await conn.execute(
                text(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)"
                ),
                {"v": migration.version, "n": migration.name, "t": time.time()},
            )
        applied.append(migration)
    return applied


@asynccontextmanager
async def migrated(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on ``database_url`` with the schema brought up to date, disposed after:
    what a shell command (``pulseroom user``, ``class``, ``erase``) works on, so it also
    works on a fresh data directory before the server ever ran."""
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        yield engine
    finally:
        await engine.dispose()
