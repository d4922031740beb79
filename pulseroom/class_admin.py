"""``pulseroom class create``: a class for an instructor, from the shell (scripts, bots).

The class is stored and its links signed by ``signaling.classes.create_class``, as
``POST /api/rooms`` does, with the server's secret (``PULSEROOM_SECRET``, else the one
kept in the data directory) and links on ``PULSEROOM_PUBLIC_URL`` (else the listening
address), so they work on the running server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from signaling.accounts_api import valid_email
from signaling.classes import create_class, creator_refusal
from signaling.messages import CreateRoomIn
from signaling.tokens import TokenSigner
from storage import migrations
from storage.accounts import AccountStore
from storage.audit import SHELL, AuditLog
from storage.store import Store

from .settings import Settings


def _payload(args: argparse.Namespace) -> CreateRoomIn | str:
    """The class as ``POST /api/rooms`` would take it, or what is wrong with the arguments."""
    body: dict[str, Any] = {"title": args.title, "description": args.description}
    if args.starts is not None:
        try:
            # No offset: this machine's time zone (astimezone assumes it for naive times).
            body["starts_at"] = datetime.fromisoformat(args.starts).astimezone().timestamp()
        except ValueError:
            return f"--starts: not an ISO 8601 date and time: {args.starts!r}"
    if args.duration is not None:
        body["duration_s"] = args.duration * 60
    if args.weekly:
        body["weekly"] = True
    try:  # the same rules as POST /api/rooms
        return CreateRoomIn.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = {"starts_at": "--starts", "duration_s": "--duration"}.get(
            ".".join(str(p) for p in first["loc"]), ".".join(str(p) for p in first["loc"])
        )
        return f"{where or 'class'}: {first['msg']}"


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    payload = _payload(args)
    if isinstance(payload, str):
        return _fail(payload)
    email = valid_email(args.instructor)
    if email is None:
        return _fail(f"not an email address: {args.instructor!r}")
    async with migrations.migrated(settings.effective_database_url) as engine:
        user = await AccountStore(engine).user_by_email(email)
        if user is None:
            return _fail(f"no account for {email} (pulseroom user add {email} --role instructor)")
        refusal = creator_refusal(user)
        if refusal is not None:
            return _fail(f"{email}: {refusal[2]}")
        signer = TokenSigner(settings.signing_secret(), settings.link_ttl)
        created = await create_class(Store(engine), signer, settings.base_url, payload, user)
        await AuditLog(engine).record(
            "class_created", SHELL, f"class {created['room']['id']}", title=payload.title,
            instructor=email,
        )  # fmt: skip
    if args.json:  # the same two keys as before schedules: scripts read them
        print(json.dumps({"host_link": created["host_link"], "join_link": created["join_link"]}))
    else:
        print(f"class “{payload.title}” for {email}")
        if payload.starts_at is not None:
            when = datetime.fromtimestamp(payload.starts_at).astimezone().isoformat("T", "minutes")
            print(f"starts {when}{', every week' if payload.weekly else ''}")
        print(f"instructor link (keep it private): {created['host_link']}")
        print(f"participant link (share this):     {created['join_link']}")
    return 0


def _fail(message: str) -> int:
    print(f"pulseroom class: {message}", file=sys.stderr)
    return 1


def main(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``pulseroom class create``; 0 on success, 1 with a message on stderr."""
    return asyncio.run(_run(settings, args))
