"""Effort points live: per participant, per class, and the class's leaderboard.

``HeartRateRelay`` hands each live reading's zone to ``record``, which adds it to the
participant's ``EffortMeter`` (telemetry/effort.py) and returns the points and the
progress towards the class's target that go into the ``hr`` event: so points reach
exactly who heart rate reaches, the class's instructor and the participant themselves.

The rest of the class sees the ``leaderboard``: names and points of the participants
present who did not opt out (``leaderboard_opt_out``), nothing else; it goes only to
participants who did not opt out either, at most every ``BOARD_INTERVAL_S`` and only
when it changed. The instructor's page builds its own board from the ``hr`` events,
opted-out participants included.

Settings (points per zone, target) are the instructor's (``effort_settings``), stored
(migration 0006) and broadcast to the class. Meters live in memory: a class that moves
to another node starts counting again there, while its summary, computed from the
stored readings, loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

import socketio
from sqlalchemy.exc import SQLAlchemyError

from storage.store import EffortRecord, Store
from telemetry.effort import EffortMeter, EffortScheme, Target

from .dispatch import Event
from .errors import SignalError
from .messages import PROTOCOL_VERSION, EffortSettingsIn, LeaderboardOptOutIn
from .presence import Member, Presence
from .ratelimit import RateLimit

logger = logging.getLogger(__name__)

BOARD_INTERVAL_S = 2.0
BOARD_SIZE = 10  # the top of the class; everyone sees their own points on their page
MILESTONES = {
    "target_reached": "{name} reached the class target",
    "zone_5": "{name} is in zone 5 for the first time today",
    # Across classes: known for participants who keep an account (participant_accounts.py).
    "first_class": "{name}'s first class: welcome them",
    "personal_best": "{name} beat their best: more effort points than in any earlier class",
}


def scheme_of(record: EffortRecord | None) -> EffortScheme:
    """Telemetry's scheme from the stored settings (none stored: Myzone's, no target)."""
    if record is None:
        return EffortScheme()
    target = None
    if record.target_kind is not None and record.target_value is not None:
        target = Target(record.target_kind, record.target_value, record.target_from_zone or 4)
    return EffortScheme(tuple(record.points_per_minute), target)


def scheme_out(scheme: EffortScheme) -> dict[str, Any]:
    """A scheme as the protocol's EffortSettings."""
    target = scheme.target
    return {
        "points_per_minute": list(scheme.points_per_minute),
        "target": None
        if target is None
        else {"kind": target.kind, "value": target.value, "from_zone": target.from_zone},
    }


class EffortBoard:
    """Effort meters, settings and leaderboards of every class on this node."""

    def __init__(self, sio: socketio.AsyncServer, presence: Presence, store: Store) -> None:
        self._sio = sio
        self._presence = presence
        self._store = store
        self._schemes: dict[str, EffortScheme] = {}
        self._meters: dict[str, dict[str, EffortMeter]] = {}  # room → participant → meter
        self._opted_out: dict[str, set[str]] = {}  # room → participant ids
        self._known: dict[str, set[str]] = {}  # room → participants whose choice is loaded
        self._sent: dict[str, list[dict[str, Any]]] = {}  # room → the board last sent
        # Moments worth a shout-out, suggested to the instructor at the next round: once
        # per participant and kind in a class ((participant, kind) seen; still to send).
        self._milestones_seen: dict[str, set[tuple[str, str]]] = {}
        self._milestones: dict[str, list[tuple[str, str]]] = {}
        # Effort points of a participant's best earlier class (accounts only): beating it
        # is a milestone. room → participant → points.
        self._best: dict[str, dict[str, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the owned leaderboard task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="effort-leaderboard")

    async def close(self) -> None:
        """Stop the leaderboard task (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def events(self) -> dict[str, Event]:
        """This module's client→server events, for the server's table."""
        return {
            "effort_settings": Event(
                EffortSettingsIn, self.set_settings, joined=True, host_only=True,
                limit=RateLimit(rate=1.0, burst=5),
            ),
            "leaderboard_opt_out": Event(
                LeaderboardOptOutIn, self.opt_out, joined=True, limit=RateLimit(rate=1.0, burst=5)
            ),
        }  # fmt: skip

    # -- live (HeartRateRelay's hot path) -----------------------------------------------

    def scheme(self, room_id: str) -> EffortScheme:
        """A class's scheme (Myzone's until its settings are loaded or set)."""
        return self._schemes.get(room_id) or EffortScheme()

    def record(self, room_id: str, participant_id: str, t: float, zone: int) -> dict[str, Any]:
        """A live reading at ``t`` (unix s) in ``zone``: the fields ``hr`` shows with it."""
        meters = self._meters.get(room_id)
        if meters is None:
            meters = self._meters[room_id] = {}
        meter = meters.get(participant_id)
        if meter is None:
            meter = meters[participant_id] = EffortMeter()
        meter.add(t, zone)
        shown = self._shown(self.scheme(room_id), meter)
        if zone == 5:
            self._milestone(room_id, participant_id, "zone_5")
        progress = shown["target_progress"]
        if progress is not None and progress >= 1.0:
            self._milestone(room_id, participant_id, "target_reached")
        best = self._best.get(room_id)
        if best is not None and shown["effort_points"] > best.get(participant_id, math.inf):
            self._milestone(room_id, participant_id, "personal_best")
        return shown

    def set_best(self, room_id: str, participant_id: str, points: float) -> None:
        """The effort points of the participant's best earlier class (more than 0): this
        class passing them is a ``personal_best`` milestone."""
        if points <= 0:
            return
        self._best.setdefault(room_id, {})[participant_id] = points
        meter = self._meters.get(room_id, {}).get(participant_id)  # passed it already?
        if meter is not None and self._shown(self.scheme(room_id), meter)["effort_points"] > points:
            self._milestone(room_id, participant_id, "personal_best")

    def milestone(self, room_id: str, participant_id: str, kind: str) -> None:
        """A moment worth a shout-out (a key of MILESTONES), suggested to the instructor
        at the next round, once per participant and kind in a class."""
        self._milestone(room_id, participant_id, kind)

    def _milestone(self, room_id: str, participant_id: str, kind: str) -> None:
        seen = self._milestones_seen.setdefault(room_id, set())
        if (participant_id, kind) not in seen:
            seen.add((participant_id, kind))
            self._milestones.setdefault(room_id, []).append((participant_id, kind))

    @staticmethod
    def _shown(scheme: EffortScheme, meter: EffortMeter) -> dict[str, Any]:
        seconds = meter.totals()
        return {
            "effort_points": scheme.points(seconds),
            "target_progress": scheme.progress(seconds),
        }

    def forget_room(self, room_id: str) -> None:
        """The class ended (or moved): its meters, settings and boards go."""
        for table in (
            self._schemes, self._meters, self._opted_out, self._known, self._sent,
            self._milestones_seen, self._milestones, self._best,
        ):  # fmt: skip
            table.pop(room_id, None)

    # -- joins and events ---------------------------------------------------------------

    async def joined(self, member: Member) -> dict[str, Any]:
        """A member joined: what its join ack says of effort points.

        The member is in the class already: a database that fails here must not fail
        the join. The class then has Myzone's values until the next join reads them,
        and a participant whose choice cannot be read is kept off the board (their
        points never go out on a guess) until it can be.
        """
        room_id = member.room_id
        opted_out = self._opted_out.setdefault(room_id, set())
        known = self._known.setdefault(room_id, set())
        try:
            if room_id not in self._schemes:
                self._schemes[room_id] = scheme_of(await self._store.effort_settings(room_id))
            if member.role == "participant" and member.id not in known:
                opted_out.discard(member.id)
                if await self._store.board_opt_out(room_id, member.id):
                    opted_out.add(member.id)
                known.add(member.id)
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("room %s: effort settings not read (%s); defaults for now", room_id, exc)
            if member.role == "participant" and member.id not in known:
                opted_out.add(member.id)
        effort: dict[str, Any] = {"settings": scheme_out(self.scheme(room_id))}
        if member.role == "participant":
            on_board = member.id not in opted_out
            effort["on_board"] = on_board
            effort["leaderboard"] = self.board(room_id) if on_board else None
        return {"effort": effort}

    async def set_settings(
        self, _sid: str, member: Member, msg: EffortSettingsIn
    ) -> dict[str, Any]:
        """``effort_settings``: the instructor sets points per zone and the target."""
        target = msg.target
        record = EffortRecord(
            points_per_minute=tuple(msg.points_per_minute),
            target_kind=None if target is None else target.kind,
            target_value=None if target is None else target.value,
            target_from_zone=None if target is None or target.kind != "zone_minutes"
            else target.from_zone,
        )  # fmt: skip
        # Stored first: if the database refuses, nothing changed anywhere.
        await self._store.set_effort_settings(member.room_id, record)
        scheme = self._schemes[member.room_id] = scheme_of(record)
        settings = scheme_out(scheme)
        await self._sio.emit(
            "effort_settings", {"v": PROTOCOL_VERSION, "settings": settings}, room=member.room_id
        )
        # Points are per class: everyone's live figures follow the new values.
        self._sent.pop(member.room_id, None)
        logger.info("room %s effort settings: %s", member.room_id, settings)
        return {"settings": settings}

    async def opt_out(self, _sid: str, member: Member, msg: LeaderboardOptOutIn) -> dict[str, Any]:
        """``leaderboard_opt_out``: a participant leaves the class's board, or comes back."""
        if member.role != "participant":
            raise SignalError("bad_request", "only participants appear on the leaderboard")
        await self._store.set_board_opt_out(member.room_id, member.id, msg.opt_out)
        self._known.setdefault(member.room_id, set()).add(member.id)
        opted_out = self._opted_out.setdefault(member.room_id, set())
        if msg.opt_out:
            opted_out.add(member.id)
        else:
            opted_out.discard(member.id)
        # Everyone else's board changes at the next round; theirs now.
        self._sent.pop(member.room_id, None)
        board = None if msg.opt_out else self.board(member.room_id)
        return {"on_board": not msg.opt_out, "leaderboard": board}

    # -- the leaderboard ----------------------------------------------------------------

    def board(self, room_id: str) -> list[dict[str, Any]]:
        """The top of the class: names and points of present participants who did not
        opt out, highest first."""
        meters = self._meters.get(room_id, {})
        opted_out = self._opted_out.get(room_id, set())
        scheme = self.scheme(room_id)
        ranked = sorted(
            (
                (-scheme.points(meters[m.id].totals()), m.name.casefold(), m)
                for m in self._presence.people(room_id)
                if m.role == "participant" and m.id in meters and m.id not in opted_out
            ),
            key=lambda row: row[:2],
        )
        return [
            {"participant_id": m.id, "name": m.name, "points": -negative}
            for negative, _name, m in ranked[:BOARD_SIZE]
        ]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(BOARD_INTERVAL_S)
            try:
                await self.send_boards()
            except Exception:
                logger.exception("leaderboard round failed")

    async def send_boards(self) -> None:
        """Send each class's board to its participants who are on it, if it changed, and
        the milestones since the last round to its instructor."""
        for room_id, moments in list(self._milestones.items()):
            self._milestones.pop(room_id, None)
            await self._suggest(room_id, moments)
        for room_id in list(self._meters):
            board = self.board(room_id)
            if self._sent.get(room_id) == board:
                continue
            self._sent[room_id] = board
            opted_out = self._opted_out.get(room_id, set())
            payload = {"v": PROTOCOL_VERSION, "entries": board}
            for member in self._presence.people(room_id):
                if member.role == "participant" and member.id not in opted_out:
                    await self._sio.emit("leaderboard", payload, to=member.sid)

    async def _suggest(self, room_id: str, moments: list[tuple[str, str]]) -> None:
        """``milestone`` to the instructor's sessions: a moment worth a shout-out."""
        present = {m.id: m for m in self._presence.people(room_id)}
        hosts = self._presence.hosts(room_id)
        for participant_id, kind in moments:
            member = present.get(participant_id)
            if member is None:
                continue
            what = MILESTONES[kind].format(name=member.name)
            payload = {
                "v": PROTOCOL_VERSION, "participant_id": participant_id, "name": member.name,
                "kind": kind, "text": what,
            }  # fmt: skip
            for host in hosts:
                await self._sio.emit("milestone", payload, to=host.sid)
