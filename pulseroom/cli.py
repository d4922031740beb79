"""The ``pulseroom`` command: serve, migrate, erase, user, class, audit, bot, hr-bridge, doctor."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from runtime.collector import tune_for_latency
from runtime.shutdown import Watchdog

from .settings import ConfigError, Settings, load_settings


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"pulseroom: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# SIGTERM to exit: every step of the shutdown is bounded (the heart-rate writer spools
# what the database does not take within 3 s, the SFU workers are killed after 5 s);
# past this the watchdog ends the process anyway. Under the 10 s `docker compose stop`
# and most service managers wait before they kill.
SHUTDOWN_DEADLINE_S = 9.0
# How long HTTP requests in flight at SIGTERM may take to finish before aiohttp cancels
# them (and as long again to end): its default is 60 s. The sessions' WebSockets are
# closed first (pulseroom/app.py: _end_sessions), but a client that does not answer the
# close held one for the whole wait (measured: 4 s with 2 s here).
REQUEST_GRACE_S = 1.0


def _serve(_args: argparse.Namespace) -> int:
    from aiohttp import web

    from runtime.logs import configure_logging

    from .app import StartupError, create_app

    settings = _settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    settings.prepare_data_dir()
    tune_for_latency()  # GC pauses were the whole p99 of a chat line (runtime/collector.py)
    banner = (
        f"PulseRoom on {settings.base_url}  (data: {settings.data_dir.resolve()}, "
        f"database: {'PostgreSQL' if settings.database_url else 'SQLite'}, "
        f"socket.io: {'Redis' if settings.redis_url else 'in-memory'})"
    )
    if settings.log_format == "json":
        # A log collector reads every line as JSON: the banner is a record too.
        logging.getLogger("pulseroom").info(banner)
    else:
        print(banner, flush=True)
    app = create_app(settings)
    watchdog = Watchdog(SHUTDOWN_DEADLINE_S)

    async def arm_watchdog(_app: web.Application) -> None:
        watchdog.arm()

    app.on_shutdown.insert(0, arm_watchdog)  # first: whatever hangs after it is bounded
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=None,
            shutdown_timeout=REQUEST_GRACE_S,
        )
    except StartupError as exc:
        failure = f"pulseroom: {exc}"
    except OSError as exc:
        failure = f"pulseroom: cannot listen on {settings.host}:{settings.port}: {exc}"
    else:
        return 0
    if settings.log_format == "json":
        logging.getLogger("pulseroom").critical(failure)
    else:
        print(failure, file=sys.stderr)
    return 1


def _migrate(_args: argparse.Namespace) -> int:
    from storage import migrations
    from storage.store import create_engine

    settings = _settings_or_exit()

    async def run() -> list[str]:
        engine = create_engine(settings.effective_database_url)
        try:
            return [f"{m.version:04d}_{m.name}" for m in await migrations.migrate(engine)]
        finally:
            await engine.dispose()

    applied = asyncio.run(run())
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))
    return 0


def _erase(args: argparse.Namespace) -> int:
    from .retention import erase_in

    settings = _settings_or_exit()
    erased = asyncio.run(erase_in(settings.effective_database_url, args.klass, args.participant))
    if erased is None:
        print(f"pulseroom erase: no class {args.klass!r}", file=sys.stderr)
        return 1
    who = f"participant {args.participant}" if args.participant else "everyone"
    print(f"erased {who} in class {args.klass}: {erased.readings} heart-rate readings, "
          f"{erased.rows} chat and participant rows")  # fmt: skip
    return 0


def _user(args: argparse.Namespace) -> int:
    from . import user_admin

    return user_admin.main(_settings_or_exit(), args)


def _class(args: argparse.Namespace) -> int:
    from . import class_admin

    return class_admin.main(_settings_or_exit(), args)


def _bot(args: argparse.Namespace) -> int:
    from client.protocol import ClientError

    from .bot import run_bot

    try:
        report = asyncio.run(
            run_bot(
                args.join_link,
                seconds=args.seconds,
                video=args.video,
                name=args.name,
                gallery=args.gallery,
                codec=args.codec,
            )
        )
    except ClientError as exc:
        print(f"pulseroom bot: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"joined as {report['you']['name']} ({report['you']['role']}) for {args.seconds}s")
        for track in report["tracks"]:
            first = track["time_to_first_frame_s"]
            print(
                f"  {track['kind']:5} from {track['publisher']:<20} packets={track['packets']:<6}"
                f" bytes={track['bytes']:<9} frames={track['frames']:<5}"
                f" first_frame={'-' if first is None else f'{first:.2f}s'}"
            )
    return 0


def _audit(args: argparse.Namespace) -> int:
    from .audit_admin import show

    return show(_settings_or_exit(), args.limit, args.action, as_json=args.json)


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor

    return doctor.main(args.url, as_json=args.json)


def _hr_bridge(args: argparse.Namespace) -> int:
    from . import hr_bridge

    return hr_bridge.main(args)


def _add_user_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pulseroom user add|reset|disable|enable|role``."""
    user = commands.add_parser(
        "user",
        help="add users, print password links, disable or enable users",
        description="Accounts from the shell, with the server's settings and database: "
        "no mail server needed, the one-time links are printed (send them yourself).",
    )
    user.set_defaults(func=_user)
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create a user and print their set-password link")
    add.add_argument("email")
    add.add_argument("--role", choices=["admin", "instructor"], required=True)
    for name, help_text in (
        ("reset", "print a new one-time password link (earlier ones stop working)"),
        ("disable", "refuse the user's logins and end their sessions"),
        ("enable", "let a disabled user log in again"),
    ):
        actions.add_parser(name, help=help_text).add_argument("email")
    role = actions.add_parser("role", help="give a user another role")
    role.add_argument("email")
    role.add_argument("role", choices=["admin", "instructor", "participant"])


def _add_class_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pulseroom class create``."""
    klass = commands.add_parser(
        "class",
        help="create a class for an instructor and print its links",
        description="Classes from the shell, with the server's settings, database and "
        "secret: the links work on the running server.",
    )
    klass.set_defaults(func=_class)
    actions = klass.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a class and print its two links")
    create.add_argument("title", help="the class title (1-120 characters)")
    create.add_argument(
        "--instructor",
        required=True,
        metavar="EMAIL",
        help="the account that owns it (an enabled instructor or admin)",
    )
    create.add_argument(
        "--starts",
        metavar="ISO8601",
        help="when it starts, e.g. 2027-01-05T18:30+01:00 (no offset: this machine's time "
        "zone); participants wait in a lobby until the instructor starts it",
    )
    create.add_argument(
        "--duration", type=int, metavar="MINUTES", help="how long it lasts (default 60)"
    )
    create.add_argument("--weekly", action="store_true", help="repeat it every week, one link")
    create.add_argument("--description", default="", help="what the class is about")
    create.add_argument(
        "--json",
        action="store_true",
        help='print {"host_link": ..., "join_link": ...}',
    )


def _add_bot_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pulseroom bot LINK``."""
    bot = commands.add_parser("bot", help="join a class as a participant and report what arrives")
    bot.add_argument("join_link", help="a class link (…/r/ROOM#t=TOKEN)")
    bot.add_argument("--seconds", type=float, default=10.0, help="how long to stay (default 10)")
    bot.add_argument(
        "--video",
        default="synthetic",
        help="'synthetic' (default) or a media file to publish "
        "(VP8/Opus is sent without re-encoding)",
    )
    bot.add_argument("--name", default="bot", help="display name (default 'bot')")
    bot.add_argument("--json", action="store_true", help="print the report as JSON")
    bot.add_argument(
        "--codec", choices=["vp8", "h264"], default="vp8", help="video codec to offer (default vp8)"
    )
    bot.add_argument(
        "--gallery",
        action="store_true",
        help="with a host link: turn gallery mode on after joining",
    )
    bot.set_defaults(func=_bot)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests)."""
    parser = argparse.ArgumentParser(
        prog="pulseroom", description="Live in-browser fitness classes."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (settings from the environment)")
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(func=_migrate)

    erase = commands.add_parser(
        "erase",
        help="erase a class's (or one participant's) heart rate, chat and profile",
        description="Deletes without a live token, e.g. on a participant's request by mail. "
        "The class itself (title, times) stays. PULSEROOM_RETENTION_DAYS does this for every "
        "class past its time.",
    )
    erase.add_argument("--class", dest="klass", required=True, help="the class id (…/r/ID)")
    erase.add_argument("--participant", help="only this participant's data (their id)")
    erase.set_defaults(func=_erase)

    _add_user_parser(commands)
    _add_class_parser(commands)

    audit = commands.add_parser(
        "audit",
        help="print the audit log: logins, account changes, classes, removals, erasures",
        description="Newest first, from the server's database (as admins see it at /admin).",
    )
    audit.add_argument("--limit", type=int, default=50, help="how many entries (default 50)")
    audit.add_argument("--action", help="only this kind, e.g. login_failed")
    audit.add_argument("--json", action="store_true", help="print the entries as JSON")
    audit.set_defaults(func=_audit)

    _add_bot_parser(commands)

    bridge = commands.add_parser(
        "hr-bridge",
        help="send a Bluetooth heart-rate strap's readings into a class",
        description="Finds a strap (Heart Rate Service 0x180D) with bleak and sends its "
        "readings into the class. Give your device link (shown on your class page) for "
        "the readings to appear on your tile, or the class link to join on its own.",
    )
    bridge.add_argument("join_link", help="your device link, or a class link (…/r/ROOM#t=…)")
    which = bridge.add_mutually_exclusive_group()
    which.add_argument("--address", help="the strap's Bluetooth address (UUID on macOS)")
    which.add_argument("--name", help="part of the strap's advertised name, e.g. 'polar'")
    which.add_argument(
        "--simulate", action="store_true", help="no strap: send a simulated interval class"
    )
    bridge.add_argument(
        "--display-name",
        help="your name, when joining with a class link (needed then: the class sees it)",
    )
    bridge.add_argument("--seconds", type=float, help="stop after this long (default: run on)")
    bridge.add_argument("--seed", type=int, help="random seed of the simulated strap")
    bridge.set_defaults(func=_hr_bridge)

    doctor = commands.add_parser(
        "doctor",
        help="check a deployment: configuration, database, Redis, TURN, HTTPS",
        description="Run on the server host with the server's environment. Prints one "
        "PASS/WARN/FAIL line per check with the fix for each problem; exits 1 on any FAIL.",
    )
    doctor.add_argument(
        "url", nargs="?", help="the address people open (default: PULSEROOM_PUBLIC_URL)"
    )
    doctor.add_argument("--json", action="store_true", help="print the results as JSON")
    doctor.set_defaults(func=_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pulseroom`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "video", "synthetic") not in ("synthetic",) and not Path(args.video).exists():
        print(f"pulseroom bot: no such file: {args.video}", file=sys.stderr)
        return 2
    # Whatever a command writes (the data directory, SQLite's database and WAL, the
    # heart-rate spool, the secret) is its user's alone: health data and the key to
    # every link must not be readable by other accounts on the host.
    os.umask(0o077)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
