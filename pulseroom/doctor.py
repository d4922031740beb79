"""``pulseroom doctor [URL]``: check a deployment, one PASS / WARN / FAIL line per check.

Run it on the server host with the server's environment (``docker compose exec app
pulseroom doctor https://classes.example.com``): it reads the same settings, talks to
the same database, Redis and coturn, and then looks at the deployment from outside
through URL (default ``PULSEROOM_PUBLIC_URL``): HTTPS, ``/readyz`` and the WebSocket
upgrade the browser client needs. Every failure comes with its fix.

This module runs the checks; they live by subject in ``doctor_services`` (secret,
database, migrations, Redis), ``doctor_turn`` and ``doctor_web`` (what the URL serves),
with ``Result`` and ``Context`` in ``doctor_context``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from urllib.parse import urlsplit

from signaling.health import url_passwords
from storage.store import create_engine

from .doctor_context import Check, Context, Result, is_local_host, redact_url
from .doctor_services import (
    check_database,
    check_migrations,
    check_redis,
    check_secret,
    check_timescale_jobs,
)
from .doctor_turn import check_turn_config, check_turn_servers
from .doctor_web import check_https, check_public_address, check_readyz, check_websocket
from .settings import ConfigError, Settings, load_settings

# What callers and tests import from here.
__all__ = ["CHECKS", "Result", "diagnose", "format_results", "is_local_host", "main", "redact_url"]


CHECKS: tuple[Check, ...] = (
    check_secret,
    check_database,
    check_migrations,
    check_timescale_jobs,
    check_redis,
    check_turn_config,
    check_turn_servers,
    check_https,
    check_readyz,
    check_websocket,
    check_public_address,
)


def _summary(settings: Settings) -> str:
    return (
        f"database: {'PostgreSQL' if settings.database_url else 'SQLite'}, "
        f"socket.io: {'Redis' if settings.redis_url else 'in-memory'}, "
        f"TURN URLs: {len(settings.turn_urls)}, SFU workers: {settings.sfu_workers}"
    )


async def _guarded(check: Check, ctx: Context) -> list[Result]:
    try:
        outcome = await check(ctx)
    except Exception as exc:  # a bug in a check must not hide the others
        name = getattr(check, "__name__", "check").removeprefix("check_").replace("_", " ")
        return [Result(name, "FAIL", f"the check itself failed: {ctx.error(exc)}", "")]
    return outcome if isinstance(outcome, list) else [outcome]


async def diagnose(url: str | None = None) -> list[Result]:
    """Run every check against the environment's settings and ``url``; results in order."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return [
            Result(
                "configuration",
                "FAIL",
                str(exc),
                "fix the named variables in the environment (.env with docker compose)",
            )
        ]
    target = (url or settings.base_url).rstrip("/")
    if urlsplit(target).scheme not in ("http", "https") or not urlsplit(target).hostname:
        return [
            Result(
                "configuration",
                "FAIL",
                f"{target!r} is not an http:// or https:// URL",
                "give the address people open, e.g. https://classes.example.com",
            )
        ]
    engine = create_engine(settings.effective_database_url)
    secrets = [
        s
        for s in (
            engine.url.password,
            settings.secret,
            settings.turn_secret,
            *url_passwords(settings.redis_url),
        )
        if s
    ]
    ctx = Context(settings, target, engine, secrets)
    try:
        outcomes = await asyncio.gather(*(_guarded(check, ctx) for check in CHECKS))
    finally:
        await engine.dispose()
    results = [Result("configuration", "PASS", _summary(settings))]
    for outcome in outcomes:
        results.extend(outcome)
    return results


def format_results(results: list[Result]) -> str:
    """Aligned lines: status, name, detail, and the fix below each non-PASS."""
    width = max(len(r.name) for r in results)
    lines = []
    for r in results:
        lines.append(f"{r.status}  {r.name:<{width}}  {r.detail}")
        if r.fix and r.status != "PASS":
            lines.append(f"{'':4}  {'':<{width}}  fix: {r.fix}")
    return "\n".join(lines)


def main(url: str | None = None, as_json: bool = False) -> int:
    """Print the results; 1 if any check failed."""
    results = asyncio.run(diagnose(url))
    failed = any(r.status == "FAIL" for r in results)
    if as_json:
        print(json.dumps({"ok": not failed, "results": [asdict(r) for r in results]}, indent=2))
    else:
        print(format_results(results))
    return 1 if failed else 0
