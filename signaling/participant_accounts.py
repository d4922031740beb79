"""A class visit of a logged-in participant, linked to their account as they join.

Joining needs the class link, as always: a login is never a class credential. What the
login adds is read from the session cookie the browser sent with the Socket.IO
connection (same origin; ``SameSite=Lax`` keeps other sites' pages from sending it):
when it is a live session of a *participant* account, the class participant who joins
on that connection is linked to the account (``storage/participant_accounts.py``), and
the account's zone profile is the one the class starts with. Nothing a client sends
can name an account, so nobody can claim someone else's. An anonymous join, an
instructor's, or one relayed from another node (its cookie is there, not here) is
unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from storage.accounts import AccountStore
from storage.participant_accounts import ParticipantAccounts
from storage.store import ParticipantRecord, Store

from .accounts_api import SESSION_COOKIE

logger = logging.getLogger(__name__)


def session_secret(environ: Any) -> str | None:
    """The session cookie of a Socket.IO connection's opening request, if it sent one."""
    request = environ.get("aiohttp.request") if isinstance(environ, dict) else None
    cookies = getattr(request, "cookies", None)
    secret = None if cookies is None else cookies.get(SESSION_COOKIE)
    return secret if isinstance(secret, str) and secret else None


class AccountVisits:
    """The join path's hook: the participant record a join starts from, linked to the
    account of the connection's login when there is one."""

    def __init__(self, sio: socketio.AsyncServer, store: Store) -> None:
        self.sio = sio
        self.store = store
        self.accounts = AccountStore(store.engine)
        self.visits = ParticipantAccounts(store.engine)

    async def _user_id(self, sid: str) -> str | None:
        """The participant account logged in on this connection, if any."""
        # None for a session relayed from another node: its request was made there.
        secret = session_secret(self.sio.get_environ(sid))
        if secret is None:
            return None
        session = await self.accounts.session(secret)
        if session is None or session.user.role != "participant":
            return None
        return session.user.id

    async def joined(
        self, sid: str, room_id: str, participant_id: str, role: str
    ) -> ParticipantRecord | None:
        """The class participant who joined on ``sid`` (stored just before), with the
        profile their class starts from: their account's when they are logged in."""
        user_id = await self._user_id(sid) if role == "participant" else None
        if user_id is not None:
            await self.visits.link(user_id, room_id, participant_id)
            logger.info(
                "participant %s of room %s is linked to their account", participant_id, room_id,
                extra={"class_id": room_id, "participant_id": participant_id},
            )  # fmt: skip
        return await self.store.participant(room_id, participant_id)
