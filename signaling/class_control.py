"""What the instructor controls in a live class: lock, mute, remove, spotlight, timer, clock.

One ``ClassState`` per class on this node, owned by ``ClassControl``, which also holds
the host-only event handlers (registered in signaling/server.py's event table) and the
admission rule ``admit`` that ``join`` applies. Removals and the class's link generation
are stored (storage/store.py), so they hold across reconnects, restarts and nodes; the
rest is the live class's and lives here. Every change is broadcast as one
``class_state`` event carrying the whole state and the server's time; the join ack
carries the same, so a late joiner or a rejoin sees what everyone sees.

Times are absolute, on the server's clock (unix seconds): clients estimate their offset
from it (event ``time``) and count down locally, so every page shows the same second
without the server sending ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import socketio

from sfu.backend import MediaBackend, SfuError
from storage.audit import Actor, AuditLog
from storage.co_instructors import CoInstructors
from storage.sessions import Sessions
from storage.store import RoomRecord, Store
from storage.timer_events import TimerEventRecord, TimerEvents

from .co_instructors import HOST_REVOKED
from .errors import SignalError
from .interval_timer import IntervalTimer, Phase, Program
from .messages import (
    PROTOCOL_VERSION,
    ClassStateOut,
    ClockIn,
    EmptyIn,
    LockIn,
    MuteIn,
    RemoveIn,
    SpotlightIn,
    TimerIn,
    TimerOut,
    TimerPhaseOut,
    TimerProgramIn,
    error_payload,
)
from .presence import Member, Presence
from .tokens import Grant

logger = logging.getLogger(__name__)
TIMER_LOG_TIMEOUT_S = 1.0  # a timer change waits at most this long for the database

RemoveSession = Callable[[str], Awaitable[None]]


@dataclass(slots=True)
class ClassState:
    """The controls of one class."""

    locked: bool = False
    spotlight: str | None = None
    clock_started_at: float | None = None
    clock_ever_started: bool = False  # the class clock starts by itself only once
    timer: IntervalTimer | None = None
    # A scheduled class waits in its lobby until the instructor starts it.
    starts_at: float | None = None
    duration_s: int | None = None
    started_at: float | None = None

    @property
    def started(self) -> bool:
        """Whether the class is under way (an instant class always is)."""
        return self.starts_at is None or self.started_at is not None

    def out(self) -> ClassStateOut:
        """The public view."""
        timer = None
        if self.timer is not None:
            program = self.timer.program
            timer = TimerOut(
                title=program.title,
                phases=[
                    TimerPhaseOut(name=p.name, seconds=p.seconds, kind=p.kind)
                    for p in program.phases
                ],
                rounds=program.rounds,
                total_s=program.total_s,
                started_at=self.timer.started_at,
                paused_at=self.timer.paused_at,
            )
        return ClassStateOut(
            locked=self.locked,
            spotlight=self.spotlight,
            clock_started_at=self.clock_started_at,
            timer=timer,
            started=self.started,
            starts_at=self.starts_at,
            duration_s=self.duration_s,
        )


def _program(msg: TimerProgramIn) -> Program:
    phases = tuple(Phase(p.name, p.seconds, p.kind) for p in msg.phases)
    return Program(phases=phases, rounds=msg.rounds, title=msg.title)


class ClassControl:
    """The instructor's controls for every class on this node, and their events."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        presence: Presence,
        sfu: MediaBackend,
        store: Store,
        remove_session: RemoveSession,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sio = sio
        self._store = store
        self._audit = AuditLog(store.engine)  # what it writes to is the store's database
        self._timer_log = TimerEvents(store.engine)  # the timer's history: laps of exports
        self._sessions = Sessions(store.engine)  # when a scheduled class was started
        self._hosts = CoInstructors(store.engine)  # whose co-instructor links still count
        self._presence = presence
        self._sfu = sfu
        self._remove_session = remove_session  # the server's own leave path for a session
        self._now = clock
        self._rooms: dict[str, ClassState] = {}

    # -- for signaling/server.py --------------------------------------------------------

    def state(self, room_id: str) -> ClassState:
        """The controls of a class (fresh ones on first use)."""
        state = self._rooms.get(room_id)
        if state is None:
            state = self._rooms[room_id] = ClassState()
        return state

    def spotlit(self, room_id: str) -> str | None:
        """Who is spotlighted in a class, for the media side of a join."""
        state = self._rooms.get(room_id)
        return state.spotlight if state is not None else None

    async def admit(self, room: RoomRecord, grant: Grant) -> None:
        """Refuse a join the controls forbid.

        A removed participant stays out (their devices too). A link the instructor
        replaced lets no one in, nor do the rejoin and device tokens it gave, but the
        instructor's own sessions (their bound tokens) keep working. A locked class takes
        no one new, but the instructor, and anyone coming back with the bound token of an
        earlier join (a reload, a network drop), still get in.
        """
        bound = grant.participant_id
        if bound is not None and await self._store.is_removed(room.link_id, bound):
            raise SignalError("removed", "the instructor removed you from this class")
        if not await self._hosts.honours(room.id, grant.user_id):
            raise SignalError("host_revoked", HOST_REVOKED)
        if grant.generation != room.generation and not await self._instructors_own(room, grant):
            raise SignalError(
                "link_replaced",
                "this link was replaced by the instructor: ask them for the new one",
            )
        state = self._rooms.get(room.id)
        if state is not None and state.locked and grant.role == "participant" and bound is None:
            raise SignalError(
                "room_locked", "the instructor has locked this class: no one new can join"
            )

    async def _instructors_own(self, room: RoomRecord, grant: Grant) -> bool:
        """Whether a token is bound to an instructor's session (or its strap bridge)."""
        if grant.participant_id is None or grant.role == "participant":
            return False
        if grant.role == "host":
            return True
        record = await self._store.participant(room.id, grant.participant_id)
        return record is not None and record.role == "host"

    async def joined(self, member: Member, room: RoomRecord) -> dict[str, Any]:
        """A member joined: the class clock starts with the instructor's first arrival
        (in a scheduled class, when they start it).

        Returns what the join ack carries: the controls and the server's time.
        """
        state = self.state(member.room_id)
        state.starts_at, state.duration_s = room.starts_at, room.duration_s
        if state.started_at is None:  # a start this node saw is newer than ``room``
            state.started_at = room.started_at
        if member.role == "host" and not state.clock_ever_started and state.started:
            state.clock_ever_started = True
            state.clock_started_at = self._now()
            await self._broadcast(member.room_id)  # those who came before the instructor
        return {"controls": state.out().model_dump(), "server_time": self._now()}

    async def left(self, member: Member) -> None:
        """A participant left for good (``leave``, not a dropped connection): unspotlight."""
        state = self._rooms.get(member.room_id)
        if state is not None and state.spotlight == member.id:
            await self._unspotlight(member.room_id, state)

    async def _unspotlight(self, room_id: str, state: ClassState) -> None:
        """The spotlighted participant is gone: the stage is the instructor's again."""
        state.spotlight = None
        # Their media left with them: a media side that cannot be told changes nothing.
        with contextlib.suppress(SfuError):
            await self._sfu.set_spotlight(room_id, None)
        await self._broadcast(room_id)

    def check_started(self, member: Member) -> None:
        """Refuse media before the class starts: in the lobby no one sends or receives
        any (a strap bridge's heart rate, no media, may come in)."""
        state = self._rooms.get(member.room_id)
        if member.role != "device" and state is not None and not state.started:
            raise SignalError(
                "not_started", "the class has not started yet: wait for the instructor"
            )

    def forget(self, room_id: str) -> None:
        """The class ended: its controls go."""
        self._rooms.pop(room_id, None)

    async def _broadcast(self, room_id: str) -> None:
        await self._sio.emit(
            "class_state",
            {
                "v": PROTOCOL_VERSION,
                "state": self.state(room_id).out().model_dump(),
                "server_time": self._now(),
            },
            room=room_id,
        )

    def _target(self, room_id: str, participant_id: str) -> Member:
        target = self._presence.by_room.get(room_id, {}).get(participant_id)
        if target is None or target.role in ("device", "board"):
            raise SignalError("not_found", "no one with this id is in the class")
        return target

    # -- events (host only but ``time``) ------------------------------------------------

    async def time(self, _sid: str, _member: Member | None, _msg: EmptyIn) -> dict[str, Any]:
        """``time`` and ``ping``: the server's clock, for the client's offset estimate
        (and, before joining, for measuring the event round trip)."""
        return {"server_time": self._now()}

    async def lock(self, _sid: str, member: Member, msg: LockIn) -> dict[str, Any]:
        """``lock``: no one new may join while locked."""
        self.state(member.room_id).locked = msg.locked
        logger.info("room %s %s", member.room_id, "locked" if msg.locked else "unlocked")
        await self._broadcast(member.room_id)
        return {}

    async def mute(self, _sid: str, member: Member, msg: MuteIn) -> dict[str, Any]:
        """``mute``: one participant or all; they may unmute themselves later.

        Everyone sees the participant muted at once (the server changes their state
        itself); their own page is told to turn its microphone off.
        """
        if msg.participant_id is None:
            # Those whose microphone is on: the already muted and audio-less sessions (a
            # strap bridge joined by class link) are neither told again nor counted.
            targets = [
                m for m in self._presence.people(member.room_id)
                if m.role == "participant" and m.audio
            ]  # fmt: skip
        else:
            target = self._target(member.room_id, msg.participant_id)
            if target.role != "participant":
                raise SignalError("bad_request", "only participants can be muted")
            targets = [target]
        for target in targets:
            await self._sio.emit(
                "muted",
                {"v": PROTOCOL_VERSION, "by": member.id, "all": msg.participant_id is None},
                to=target.sid,
            )
            if target.audio:
                target.audio = False
                await self._sio.emit(
                    "participant_updated",
                    {"v": PROTOCOL_VERSION, "participant": target.out().model_dump()},
                    room=member.room_id,
                )
        return {"muted": [t.id for t in targets]}

    async def remove(self, _sid: str, member: Member, msg: RemoveIn) -> dict[str, Any]:
        """``remove``: disconnect a participant (or another instructor session, say one
        opened from a leaked host link), and refuse their bound tokens for good (stored
        first: if the database refuses, nothing changed)."""
        target = self._target(member.room_id, msg.participant_id)
        if target.id == member.id:
            raise SignalError("bad_request", "you cannot remove yourself: leave instead")
        if target.role not in ("participant", "host"):
            raise SignalError("bad_request", "only participants and instructors can be removed")
        await self._store.remove_participant(member.room_id, target.id, member.id)
        await self._audit.record(
            "participant_removed", Actor(f"host {member.id} of class {member.room_id}"),
            f"{target.role} {target.id} of class {member.room_id}",
        )  # fmt: skip
        state = self.state(member.room_id)
        if state.spotlight == target.id:
            await self._unspotlight(member.room_id, state)
        # Their strap bridges go too: a device link acts for the participant.
        for session in self._presence.acting_for(member.room_id, target.id):
            await self._remove_session(session.sid)
            await self._sio.emit(
                "error",
                error_payload("removed", "the instructor removed you from this class", "join"),
                to=session.sid,
            )
            await self._sio.disconnect(session.sid)
        logger.info("participant %s removed from room %s", target.id, member.room_id)
        return {}

    async def spotlight(self, _sid: str, member: Member, msg: SpotlightIn) -> dict[str, Any]:
        """``spotlight``: everyone sees this participant large (null: the instructor)."""
        if msg.participant_id is not None:
            self._target(member.room_id, msg.participant_id)
        # The media side first: if it refuses, nothing changed.
        await self._sfu.set_spotlight(member.room_id, msg.participant_id)
        self.state(member.room_id).spotlight = msg.participant_id
        await self._broadcast(member.room_id)
        return {}

    async def timer(self, _sid: str, member: Member, msg: TimerIn) -> dict[str, Any]:
        """``timer``: start a program (replacing any), pause, resume or stop it."""
        state = self.state(member.room_id)
        now = self._now()
        running = state.timer
        if msg.action == "start":
            assert msg.program is not None  # the model requires it for start
            state.timer = IntervalTimer(program=_program(msg.program), started_at=now)
        elif running is None:
            raise SignalError("bad_request", "no interval timer is set")
        elif msg.action == "stop":
            state.timer = None
        elif msg.action == "pause":
            if running.paused_at is not None:
                raise SignalError("bad_request", "the timer is already paused")
            if running.finished(now):
                raise SignalError("bad_request", "the timer has finished")
            running.pause(now)
        elif running.paused_at is None:  # resume
            raise SignalError("bad_request", "the timer is not paused")
        else:
            running.resume(now)
        await self._broadcast(member.room_id)
        program = msg.program.model_dump() if msg.program is not None else None
        await self._log_timer(member.room_id, TimerEventRecord(now, msg.action, program))
        return {}

    async def _log_timer(self, room_id: str, event: TimerEventRecord) -> None:
        """Keep the change for the laps of exported activities; the class does not
        wait for a database that is away (the timer runs on, without those laps)."""
        try:
            await asyncio.wait_for(self._timer_log.add(room_id, event), TIMER_LOG_TIMEOUT_S)
        except Exception:
            logger.exception("the timer's %s in class %s was not stored", event.action, room_id)

    async def clock(self, _sid: str, member: Member, msg: ClockIn) -> dict[str, Any]:
        """``clock``: start the class clock from zero, or stop it."""
        state = self.state(member.room_id)
        state.clock_ever_started = True
        state.clock_started_at = self._now() if msg.action == "start" else None
        await self._broadcast(member.room_id)
        return {}

    async def start_class(self, _sid: str, member: Member, _msg: EmptyIn) -> dict[str, Any]:
        """``start_class``: the lobby ends; every page in it enters the class (stored
        first, so the class stays started across restarts and nodes)."""
        state = self.state(member.room_id)
        if state.started:
            return {}
        started_at = await self._sessions.start(member.room_id)
        if started_at is None:
            raise SignalError("room_ended", "this class has ended")
        state.started_at = started_at
        if not state.clock_ever_started:
            state.clock_ever_started = True
            state.clock_started_at = self._now()
        logger.info("room %s started by %s", member.room_id, member.id)
        await self._broadcast(member.room_id)
        return {}
