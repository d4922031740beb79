"""``pulseroom user add|reset|disable|enable|role``: accounts from the shell, no mail server
needed (with PULSEROOM_SMTP_URL set, a printed link is mailed to its person too). Each
change is in the audit log, by "shell".

Same settings and database as ``pulseroom migrate`` (the schema is brought up to date
first, so this works on a fresh data directory before the server ever ran). Links are
printed on a line of their own, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from signaling.accounts_api import page_link, valid_email
from signaling.mail import Mailer, mail_link
from storage import migrations
from storage.accounts import LINK_TTL, AccountError, AccountStore, UserRecord
from storage.audit import SHELL, AuditLog

from .settings import Settings


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    mailer = Mailer.of(settings.smtp_url, settings.mail_sender)
    async with migrations.migrated(settings.effective_database_url) as engine:
        accounts, audit = AccountStore(engine), AuditLog(engine)
        return await _command(accounts, audit, settings.base_url, args, mailer)


async def _mailed(mailer: Mailer | None, email: str, purpose: str, link: str, hours: int) -> None:
    """With PULSEROOM_SMTP_URL set, the link goes to them by mail too: say whether it did."""
    if mailer is None:
        return
    mailed = await mail_link(mailer, email, purpose, link, hours)
    if mailed["emailed"]:
        print(f"mailed the link to {email}", file=sys.stderr)
    else:
        print(f"the link was NOT mailed: {mailed['mail_error']}", file=sys.stderr)


async def _command(
    accounts: AccountStore,
    audit: AuditLog,
    base_url: str,
    args: argparse.Namespace,
    mailer: Mailer | None = None,
) -> int:
    email = valid_email(args.email)
    if email is None:
        return _fail(f"not an email address: {args.email!r}")
    if args.action == "add":
        try:
            user = await accounts.create_user(email, args.role)
        except AccountError as exc:
            return _fail(f"{exc.message} (pulseroom user reset EMAIL gives a new link)")
        token = await accounts.issue_link("invite", user.id)
        await audit.record("user_added", SHELL, user.email, role=user.role)
        days = LINK_TTL["invite"] // 86400
        print(f"added {user.email} ({user.role}); they set a password, once, within {days} days:")
        link = page_link(base_url, "password", token)
        print(link, flush=True)
        await _mailed(mailer, user.email, "invite", link, LINK_TTL["invite"] // 3600)
        return 0
    found = await accounts.user_by_email(email)
    if found is None:
        return _fail(f"no account for {email}")
    if args.action == "reset":
        if found.disabled:
            return _fail(f"{email} is disabled: pulseroom user enable {email} first")
        token = await accounts.issue_link("reset", found.id)
        await audit.record("password_link", SHELL, email)
        hours = LINK_TTL["reset"] // 3600
        print(f"new password link for {email} (once, within {hours} h; earlier links are void):")
        link = page_link(base_url, "password", token)
        print(link, flush=True)
        await _mailed(mailer, email, "reset", link, hours)
        return 0
    if args.action == "role":
        # The shell may take the last admin's role (it can give it back): said, not refused.
        await accounts.set_role(email, args.role, keep_admin=False)
        if args.role != found.role:
            await audit.record("role_changed", SHELL, email, before=found.role, after=args.role)
        print(f"{email} is now {args.role}")
        _warn_without_admin(await accounts.users())
        return 0
    disabled = args.action == "disable"
    await accounts.set_disabled(email, disabled, keep_admin=False)
    if disabled != found.disabled:
        await audit.record("user_disabled" if disabled else "user_enabled", SHELL, email)
    if disabled:
        print(f"disabled {email}: logged out everywhere, their links are void")
    else:
        print(f"enabled {email}")
    _warn_without_admin(await accounts.users())
    return 0


def _warn_without_admin(users: list[UserRecord]) -> None:
    if not any(u.role == "admin" and not u.disabled for u in users):
        print(
            "note: no enabled admin is left, so nobody manages accounts in the browser; "
            "pulseroom user role EMAIL admin (or enable) makes one",
            file=sys.stderr,
        )


def _fail(message: str) -> int:
    print(f"pulseroom user: {message}", file=sys.stderr)
    return 1


def main(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``pulseroom user`` action; 0 on success, 1 with a message on stderr."""
    return asyncio.run(_run(settings, args))
