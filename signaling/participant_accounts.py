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

Knowing the account's earlier classes, the instructor is told of two moments no single
class shows: a participant's first class, and a class in which they pass the effort
points of their best earlier one (worked out beside the join, not in its way).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio

from storage.accounts import AccountStore
from storage.participant_accounts import ParticipantAccounts, Visit
from storage.store import ParticipantRecord, Store
from telemetry.effort import zone_seconds
from telemetry.history import HeartRateHistory

from .accounts_api import SESSION_COOKIE
from .effort import EffortBoard, scheme_of
from .profiles import profile_of

logger = logging.getLogger(__name__)

BEST_OF_LAST = 52  # earlier classes a personal best is measured against: a year of weeks


def session_secret(environ: Any) -> str | None:
    """The session cookie of a Socket.IO connection's opening request, if it sent one."""
    request = environ.get("aiohttp.request") if isinstance(environ, dict) else None
    cookies = getattr(request, "cookies", None)
    secret = None if cookies is None else cookies.get(SESSION_COOKIE)
    return secret if isinstance(secret, str) and secret else None


class AccountVisits:
    """The join path's hook: the participant record a join starts from, linked to the
    account of the connection's login when there is one."""

    def __init__(self, sio: socketio.AsyncServer, store: Store, effort: EffortBoard) -> None:
        self.sio = sio
        self.store = store
        self.effort = effort
        self.accounts = AccountStore(store.engine)
        self.visits = ParticipantAccounts(store.engine)
        self.history = HeartRateHistory(store.engine)
        self._tasks: set[asyncio.Task[None]] = set()

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
            task = asyncio.create_task(self._milestones(user_id, room_id, participant_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await self.store.participant(room_id, participant_id)

    async def _milestones(self, user_id: str, room_id: str, participant_id: str) -> None:
        """A first class is a milestone now; a best earlier class one to beat."""
        try:
            earlier = [
                v for v in await self.visits.visits(user_id)
                if (v.room.id, v.participant_id) != (room_id, participant_id)
            ]  # fmt: skip
            if not earlier:
                self.effort.milestone(room_id, participant_id, "first_class")
                return
            best = max([await self._points(v) for v in earlier[:BEST_OF_LAST]])
            self.effort.set_best(room_id, participant_id, best)
        except Exception:  # a milestone less, never a join less
            logger.exception("milestones of %s in %s not worked out", participant_id, room_id)

    async def _points(self, visit: Visit) -> float:
        """The effort points the participant earned in an earlier class, as its summary
        counts them (its scheme, their profile there)."""
        room_id = visit.room.id
        record = await self.store.participant(room_id, visit.participant_id)
        profile = profile_of(record.profile if record is not None else None)
        rows = await self.history.readings(room_id, visit.participant_id)
        seconds = zone_seconds([(r.time, r.bpm) for r in rows], profile)
        scheme = scheme_of(await self.store.effort_settings(room_id))
        return float(scheme.points(seconds))

    async def close(self) -> None:
        """Stop the milestone work still under way (idempotent)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
