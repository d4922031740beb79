"""Accounts: users, login sessions and one-time links, on SQLite or PostgreSQL.

Secrets handed out (a session cookie, a link's token) are 256 random bits; only their
SHA-256 is stored, so a copy of the database logs nobody in. Passwords are argon2
hashes (``storage/passwords.py``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .passwords import Passwords

Role = Literal["admin", "instructor", "participant"]
LinkPurpose = Literal["setup", "invite", "reset"]
# How an SSO login found its account (``AccountStore.sso_user``).
SsoMatch = Literal["known", "linked", "created"]
ROLES: tuple[Role, ...] = ("admin", "instructor", "participant")

SESSION_TTL = 14 * 86400
# A setup link is printed at every start while there is no admin, so a day is plenty;
# an invitation waits for someone to read their messages.
LINK_TTL: dict[LinkPurpose, int] = {"setup": 86400, "invite": 7 * 86400, "reset": 86400}
_SETUP_LOCK = 7461708  # pg_advisory_xact_lock key: one first admin, however many nodes


class AccountError(Exception):
    """A refusal: ``reason`` says which (the HTTP layer turns it into a status)."""

    def __init__(
        self,
        reason: Literal[
            "email_taken",
            "invalid_link",
            "setup_done",
            "bad_credentials",
            "account_disabled",
            "last_admin",
            "sso_conflict",
        ],
        message: str,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as stored (never with the password hash)."""

    id: str
    email: str
    role: Role
    disabled: bool
    created_at: float
    has_password: bool


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A login session: whose, its CSRF token and when it ends."""

    user: UserRecord
    csrf_token: str
    expires_at: float


def normalize_email(email: str) -> str:
    """The form an address is stored and looked up in: trimmed, lower case."""
    return email.strip().lower()


def secret_hash(secret: str) -> str:
    """What is stored of a session secret or link token."""
    return hashlib.sha256(secret.encode()).hexdigest()


_USER_COLUMNS = "id, email, role, disabled, created_at, password_hash IS NOT NULL"


def _user(row: Any) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], bool(row[3]), float(row[4]), bool(row[5]))


class AccountStore:
    """Users, their sessions and one-time links."""

    def __init__(self, engine: AsyncEngine, passwords: Passwords | None = None) -> None:
        self.engine = engine
        self.passwords = passwords or Passwords()

    async def create_user(self, email: str, role: Role, password: str | None = None) -> UserRecord:
        """Store a new user (without a password unless given); ``email_taken`` if one exists."""
        hashed = None if password is None else await self.passwords.hash(password)
        async with self.engine.begin() as conn:
            return await self._insert_user(conn, email, role, hashed)

    async def _insert_user(
        self, conn: AsyncConnection, email: str, role: Role, hashed: str | None
    ) -> UserRecord:
        """Insert in the caller's transaction, which a refusal (raised) rolls back whole."""
        user = UserRecord(
            uuid.uuid4().hex, normalize_email(email), role, False, time.time(), hashed is not None
        )
        try:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, role, password_hash, disabled, created_at)"
                    " VALUES (:id, :email, :role, :hash, FALSE, :t)"
                ),
                {
                    "id": user.id,
                    "email": user.email,
                    "role": role,
                    "hash": hashed,
                    "t": user.created_at,
                },
            )
        except IntegrityError:
            raise AccountError("email_taken", f"{user.email} already has an account") from None
        return user

    async def user_by_email(self, email: str) -> UserRecord | None:
        """The user with this address (any case), if any."""
        async with self.engine.connect() as conn:
            return await _find_user(conn, email)

    async def user_by_id(self, user_id: str) -> UserRecord | None:
        """The user with this id, if any."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_USER_COLUMNS} FROM users WHERE id = :id"), {"id": user_id}
                )
            ).first()
        return None if row is None else _user(row)

    async def users(self) -> list[UserRecord]:
        """Every user, admins first, then by address."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {_USER_COLUMNS} FROM users"
                        " ORDER BY CASE role WHEN 'admin' THEN 0 WHEN 'instructor' THEN 1"
                        " ELSE 2 END, email"
                    )
                )
            ).all()
        return [_user(r) for r in rows]

    async def set_role(self, email: str, role: Role, keep_admin: bool = True) -> UserRecord | None:
        """Give a user another role (None: no such user). ``last_admin`` if that would
        leave no enabled admin (nobody could then manage accounts from the browser),
        unless ``keep_admin`` is off (the shell, which can always undo it)."""
        async with self.engine.begin() as conn:
            user = await _locked_user(conn, email)
            if user is None:
                return None
            if keep_admin and user.role == "admin" and role != "admin" and not user.disabled:
                await _keep_an_admin(conn, user.id)
            await conn.execute(
                text("UPDATE users SET role = :role WHERE id = :id"), {"role": role, "id": user.id}
            )
        return UserRecord(
            user.id, user.email, role, user.disabled, user.created_at, user.has_password
        )

    async def has_admin(self) -> bool:
        """Whether any admin exists (disabled or not): then setup links are refused."""
        async with self.engine.connect() as conn:
            return await _has_admin(conn)

    async def set_disabled(
        self, email: str, disabled: bool = True, keep_admin: bool = True
    ) -> UserRecord | None:
        """Disable (or enable) a user; disabling ends their sessions and voids their links.
        ``last_admin`` as for ``set_role``."""
        async with self.engine.begin() as conn:
            user = await _locked_user(conn, email)
            if user is None:
                return None
            if keep_admin and disabled and user.role == "admin" and not user.disabled:
                await _keep_an_admin(conn, user.id)
            await conn.execute(
                text("UPDATE users SET disabled = :d WHERE id = :id"),
                {"d": disabled, "id": user.id},
            )
            if disabled:
                await _end_everything(conn, user.id)
        return UserRecord(
            user.id, user.email, user.role, disabled, user.created_at, user.has_password
        )

    async def issue_link(
        self, purpose: LinkPurpose, user_id: str | None = None, ttl: float | None = None
    ) -> str:
        """A new one-time link's token; a user's earlier unused links stop working."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        async with self.engine.begin() as conn:
            if user_id is not None:
                await _void_links(conn, user_id, now)
            await conn.execute(
                text(
                    "INSERT INTO one_time_links"
                    " (token_hash, purpose, user_id, created_at, expires_at, used_at)"
                    " VALUES (:h, :purpose, :user, :now, :expires, NULL)"
                ),
                {
                    "h": secret_hash(token),
                    "purpose": purpose,
                    "user": user_id,
                    "now": now,
                    "expires": now + (LINK_TTL[purpose] if ttl is None else ttl),
                },
            )
        return token

    async def setup_admin(self, token: str, email: str, password: str) -> UserRecord:
        """Use a setup link: the first admin, with this password. Refused once one exists."""
        hashed = await self.passwords.hash(password)  # before the transaction: it is slow
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({_SETUP_LOCK})"))
            # The write comes first: on SQLite it takes the database's write lock, so
            # the admin check below sees every other writer's work.
            if await _use_link(conn, token, setup=True) is None:
                raise AccountError("invalid_link", "this setup link is unknown, used or expired")
            if await _has_admin(conn):
                raise AccountError("setup_done", "an admin exists already: log in instead")
            return await self._insert_user(conn, email, "admin", hashed)

    async def set_password(self, token: str, password: str) -> UserRecord:
        """Use an invitation or reset link: set the user's password, end their sessions."""
        hashed = await self.passwords.hash(password)
        async with self.engine.begin() as conn:
            user_id = await _use_link(conn, token, setup=False)
            row = None
            if user_id is not None:
                row = (
                    await conn.execute(
                        text(f"SELECT {_USER_COLUMNS} FROM users WHERE id = :id AND NOT disabled"),
                        {"id": user_id},
                    )
                ).first()
            if row is None:
                raise AccountError("invalid_link", "this link is unknown, used or expired")
            await conn.execute(
                text("UPDATE users SET password_hash = :hash WHERE id = :id"),
                {"hash": hashed, "id": user_id},
            )
            await conn.execute(
                text("DELETE FROM login_sessions WHERE user_id = :id"), {"id": user_id}
            )
        user = _user(row)
        return UserRecord(user.id, user.email, user.role, user.disabled, user.created_at, True)

    async def authenticate(self, email: str, password: str) -> UserRecord:
        """The user these credentials belong to; ``bad_credentials`` or ``account_disabled``."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE email = :email"),
                    {"email": normalize_email(email)},
                )
            ).first()
        stored: str | None = None if row is None else row[6]
        if not await self.passwords.verify(stored, password):
            raise AccountError("bad_credentials", "wrong email or password")
        assert row is not None and stored is not None  # verify() is False without a hash
        user = _user(row)
        if user.disabled:
            raise AccountError("account_disabled", "this account is disabled")
        if self.passwords.needs_rehash(stored):
            async with self.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE users SET password_hash = :hash WHERE id = :id"),
                    {"hash": await self.passwords.hash(password), "id": user.id},
                )
        return user

    async def sso_user(
        self, issuer: str, subject: str, email: str, new_role: Role
    ) -> tuple[UserRecord, SsoMatch]:
        """The account a provider's user (``issuer``, ``subject``: the ID token's
        ``iss`` and ``sub``) logs into, and how it was found: by an identity stored at an
        earlier SSO login (``known``), else by the verified ``email`` (``linked``: the
        identity is stored now), else made now with ``new_role`` and no password
        (``created``). ``account_disabled`` for a disabled account, changing nothing."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {_USER_COLUMNS} FROM users WHERE id ="
                        " (SELECT user_id FROM user_identities"
                        " WHERE issuer = :issuer AND subject = :subject)"
                    ),
                    {"issuer": issuer, "subject": subject},
                )
            ).first()
            how: SsoMatch = "known"
            user = None if row is None else _user(row)
            if user is None:
                how = "linked"
                user = await _find_user(conn, email)
            if user is not None and user.disabled:
                raise AccountError("account_disabled", "this account is disabled")
            if user is None:
                how = "created"
                user = await self._insert_user(conn, email, new_role, None)
            if how != "known":
                try:
                    await conn.execute(
                        text(
                            "INSERT INTO user_identities (issuer, subject, user_id, created_at)"
                            " VALUES (:issuer, :subject, :user, :t)"
                        ),
                        {"issuer": issuer, "subject": subject, "user": user.id, "t": time.time()},
                    )
                except IntegrityError:  # the same first login twice at once: one wins
                    raise AccountError(
                        "sso_conflict", "this sign-in was just used: try again"
                    ) from None
        return user, how

    async def create_session(self, user: UserRecord) -> tuple[str, SessionRecord]:
        """A new login session: its secret (for the cookie, not stored) and the session."""
        secret = secrets.token_urlsafe(32)
        now = time.time()
        session = SessionRecord(user, secrets.token_urlsafe(32), now + SESSION_TTL)
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO login_sessions"
                    " (secret_hash, user_id, csrf_token, created_at, expires_at)"
                    " VALUES (:h, :user, :csrf, :now, :expires)"
                ),
                {
                    "h": secret_hash(secret),
                    "user": user.id,
                    "csrf": session.csrf_token,
                    "now": now,
                    "expires": session.expires_at,
                },
            )
        return secret, session

    async def session(self, secret: str) -> SessionRecord | None:
        """The live session of this secret: not expired, its user not disabled."""
        columns = ", ".join(f"u.{c}" for c in _USER_COLUMNS.split(", "))
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {columns}, s.csrf_token, s.expires_at"
                        " FROM login_sessions s JOIN users u ON u.id = s.user_id"
                        " WHERE s.secret_hash = :h AND s.expires_at > :now AND NOT u.disabled"
                    ),
                    {"h": secret_hash(secret), "now": time.time()},
                )
            ).first()
        return None if row is None else SessionRecord(_user(row), row[6], float(row[7]))

    async def end_session(self, secret: str) -> None:
        """Log a session out (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM login_sessions WHERE secret_hash = :h"),
                {"h": secret_hash(secret)},
            )

    async def prune(self) -> int:
        """Delete expired sessions and links that can no longer be used; returns rows."""
        now = time.time()
        async with self.engine.begin() as conn:
            sessions = await conn.execute(
                text("DELETE FROM login_sessions WHERE expires_at <= :now"), {"now": now}
            )
            links = await conn.execute(
                text("DELETE FROM one_time_links WHERE expires_at <= :now"), {"now": now}
            )
        return int(sessions.rowcount) + int(links.rowcount)


async def _locked_user(conn: AsyncConnection, email: str) -> UserRecord | None:
    """The user by address, inside a transaction that changes users: on PostgreSQL the
    advisory lock makes two admins demoting each other at once run one after the other
    (on SQLite the transaction's first write does; see ``_keep_an_admin``)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({_SETUP_LOCK})"))
    return await _find_user(conn, email)


async def _find_user(conn: AsyncConnection, email: str) -> UserRecord | None:
    row = (
        await conn.execute(
            text(f"SELECT {_USER_COLUMNS} FROM users WHERE email = :email"),
            {"email": normalize_email(email)},
        )
    ).first()
    return None if row is None else _user(row)


async def _keep_an_admin(conn: AsyncConnection, leaving: str) -> None:
    """Refuse (``last_admin``) unless an enabled admin other than ``leaving`` remains."""
    # A no-op write first: on SQLite it takes the database's write lock before the read.
    await conn.execute(text("UPDATE users SET role = role WHERE id = :id"), {"id": leaving})
    row = (
        await conn.execute(
            text("SELECT 1 FROM users WHERE role = 'admin' AND NOT disabled AND id <> :id LIMIT 1"),
            {"id": leaving},
        )
    ).first()
    if row is None:
        raise AccountError("last_admin", "this is the only enabled admin: make another admin first")


async def _has_admin(conn: AsyncConnection) -> bool:
    row = (await conn.execute(text("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1"))).first()
    return row is not None


async def _use_link(conn: AsyncConnection, token: str, *, setup: bool) -> str | None:
    """Mark a live link used; its user id (or "" for a setup link), None if not usable."""
    purpose = "purpose = 'setup'" if setup else "purpose <> 'setup'"
    row = (
        await conn.execute(
            text(
                "UPDATE one_time_links SET used_at = :now"
                f" WHERE token_hash = :h AND {purpose} AND used_at IS NULL AND expires_at > :now"
                " RETURNING user_id"
            ),
            {"h": secret_hash(token), "now": time.time()},
        )
    ).first()
    return None if row is None else (row[0] or "")


async def _void_links(conn: AsyncConnection, user_id: str, now: float) -> None:
    await conn.execute(
        text("UPDATE one_time_links SET used_at = :now WHERE user_id = :id AND used_at IS NULL"),
        {"now": now, "id": user_id},
    )


async def _end_everything(conn: AsyncConnection, user_id: str) -> None:
    await conn.execute(text("DELETE FROM login_sessions WHERE user_id = :id"), {"id": user_id})
    await _void_links(conn, user_id, time.time())
