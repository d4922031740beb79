"""``pulseroom doctor``: the services the server itself uses (secret, database, Redis)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import text

from storage import migrations

from .doctor_context import PLACEHOLDER, Context, Result, redact_url

DATABASE_TIMEOUT_S = 5.0
REDIS_TIMEOUT_S = 3.0


async def check_secret(ctx: Context) -> Result:
    """Links are signed with PULSEROOM_SECRET, not a per-host generated file."""
    secret = ctx.settings.secret
    if secret and PLACEHOLDER in secret:
        return Result(
            "signing secret",
            "FAIL",
            "PULSEROOM_SECRET is still the example value from .env.example",
            "set it to a random value: `openssl rand -hex 32`, then restart the server "
            "(links issued so far stop working)",
        )
    if secret:
        return Result("signing secret", "PASS", "PULSEROOM_SECRET is set")
    where = ctx.settings.data_dir / "secret"
    if ctx.local:
        return Result("signing secret", "PASS", f"generated into {where} (fine on localhost)")
    return Result(
        "signing secret",
        "WARN",
        f"PULSEROOM_SECRET is not set: links are signed with a secret generated into {where}; "
        "losing that file (a new volume, another server) invalidates every link",
        "set PULSEROOM_SECRET to a random value (`openssl rand -hex 32`); to keep today's "
        f"links valid, use the contents of {where}",
    )


async def check_database(ctx: Context) -> Result:
    """The database answers ``SELECT 1`` (and says what it is)."""
    where = ctx.engine.url.render_as_string(hide_password=True)
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S), ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            if ctx.engine.dialect.name != "postgresql":
                return Result("database", "PASS", f"SQLite at {where}")
            version = (await conn.execute(text("SHOW server_version"))).scalar()
            timescale = (
                await conn.execute(
                    text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
                )
            ).scalar()
    except Exception as exc:
        if ctx.engine.dialect.name == "postgresql":
            fix = (
                "start PostgreSQL (`docker compose ps db`) and check DATABASE_URL: host, "
                "port, user, password and database name"
            )
        else:
            fix = "check that PULSEROOM_DATA_DIR exists and is writable by the server"
        return Result("database", "FAIL", f"{where}: {ctx.error(exc, DATABASE_TIMEOUT_S)}", fix)
    flavour = f"PostgreSQL {str(version).split()[0]}"
    flavour += f", TimescaleDB {timescale}" if timescale else " (no TimescaleDB extension)"
    return Result("database", "PASS", f"{flavour} at {where}")


JOB_ERRORS_SQL = """
SELECT count(*), max(finish_time), string_agg(DISTINCT proc_name, ', '),
       (array_agg(err_message ORDER BY finish_time DESC))[1]
FROM timescaledb_information.job_errors
WHERE finish_time > now() - interval '1 day'
"""


async def check_timescale_jobs(ctx: Context) -> list[Result]:
    """TimescaleDB's background jobs (the aggregate's refresh, compression, retention)
    recorded no failures in the last day. Nothing to say without TimescaleDB."""
    if ctx.engine.dialect.name != "postgresql":
        return []
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S), ctx.engine.connect() as conn:
            view = "to_regclass('timescaledb_information.job_errors')"
            if (await conn.execute(text(f"SELECT {view} IS NOT NULL"))).scalar() is not True:
                return []
            failures, last, jobs, message = (await conn.execute(text(JOB_ERRORS_SQL))).one()
    except Exception as exc:
        return [Result("timescaledb jobs", "WARN", f"cannot read job_errors: {ctx.error(exc)}")]
    if not failures:
        return [Result("timescaledb jobs", "PASS", "no job failed in the last day")]
    return [
        Result(
            "timescaledb jobs",
            "WARN",
            f"{failures} job run(s) failed in the last day ({jobs}; last at {last}: {message})",
            "read timescaledb_information.job_errors and job_stats; on some PostgreSQL builds "
            "every policy job is recorded as failed while its work is committed: check that "
            "heart_rate_1m keeps up (SELECT max(bucket) FROM heart_rate_1m) and that old "
            "chunks get compressed (timescaledb_information.chunks)",
        )
    ]


async def check_migrations(ctx: Context) -> Result:
    """No migration is waiting."""
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S):
            waiting = await migrations.pending(ctx.engine)
    except Exception as exc:
        return Result(
            "migrations",
            "FAIL",
            f"cannot read schema_migrations: {ctx.error(exc, DATABASE_TIMEOUT_S)}",
            "fix the database connection first (see the database check)",
        )
    if waiting:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in waiting)
        return Result(
            "migrations",
            "FAIL",
            f"{len(waiting)} pending: {names}",
            "run `pulseroom migrate` with this DATABASE_URL (`docker compose exec app "
            "pulseroom migrate`), or restart the server: it applies them at start",
        )
    known = migrations.discover(ctx.engine.dialect.name)
    return Result("migrations", "PASS", f"schema current ({len(known)} applied)")


async def check_redis(ctx: Context) -> Result:
    """Redis answers PING when REDIS_URL is set."""
    url = ctx.settings.redis_url
    if not url:
        return Result("redis", "PASS", "not used (REDIS_URL unset: Socket.IO in memory)")
    client = Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            await client.ping()
            info = await client.info("server")
    except Exception as exc:
        return Result(
            "redis",
            "FAIL",
            f"no PING answer from {redact_url(url)}: {ctx.error(exc, REDIS_TIMEOUT_S)}",
            "start Redis (`docker compose ps redis`) or fix REDIS_URL; the Socket.IO "
            "manager publishes every event through it",
        )
    finally:
        await client.aclose()
    return Result("redis", "PASS", f"Redis {info.get('redis_version', '?')} at {redact_url(url)}")
