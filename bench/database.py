"""A throwaway PostgreSQL database per benchmark run, made and dropped by name."""

from __future__ import annotations

import uuid

import asyncpg

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"


async def fresh_database(admin_dsn: str) -> tuple[str, str]:
    """Create an empty database next to ``admin_dsn``'s; returns (name, its DSN)."""
    name = f"pulseroom_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop a database made by ``fresh_database``, closing its remaining connections."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
