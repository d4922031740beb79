"""The class board: a read-only session for the studio's TV (``/r/{id}/board``).

The board is the instructor's screen turned to the room: it receives every participant's
video and everyone's heart rate, as the instructor does, and does nothing else. It sends
no media, no chat and no control (``Event.board`` in the server's table says which events
it may send: media negotiation, ``visibility``, ``time``, ``leave``); it is not a
participant: no one is told it joined or left, it has no tile, it is not stored (so it is
in no summary and no class list) and it counts towards no class limit but its own.

Only the class's owner gets a board link (``GET /api/classes``): whoever sees the screen
sees the class's heart rates, which is the instructor's choice to make.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from sfu.backend import MediaBackend
from storage.store import RoomRecord

from .class_control import ClassControl
from .effort import EffortBoard
from .errors import SignalError
from .heart_rate import HeartRateRelay
from .messages import PROTOCOL_VERSION, JoinIn
from .outbound import SocketSignal
from .presence import Member, Presence
from .schedule import room_out

# A studio with a TV on each wall; a leaked board link must not let in any number.
MAX_BOARD_SESSIONS = 3


class Boards:
    """Joins of board sessions; their leaving is a member's like any other."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        presence: Presence,
        sfu: MediaBackend,
        heart_rate: HeartRateRelay,
        effort: EffortBoard,
        controls: ClassControl,
        ice_servers: Callable[[str], list[dict[str, Any]]],
        nodes: Callable[[], Awaitable[dict[str, Any]]],
        recording: Callable[[str], bool],
    ) -> None:
        self._sio = sio
        self._presence = presence
        self._sfu = sfu
        self._heart_rate = heart_rate
        self._effort = effort
        self._controls = controls
        self._ice_servers = ice_servers
        self._nodes = nodes
        self._recording = recording

    async def join(
        self, sid: str, msg: JoinIn, room: RoomRecord, joined: Callable[[str], None]
    ) -> dict[str, Any]:
        """A board joins ``room``: receive-only media, everyone's heart rate. ``joined``
        is told the class is in use (signaling/idle.py)."""
        if sid in self._presence.by_sid:
            raise SignalError("already_joined", "this connection has already joined a class")
        if len(self._presence.boards(room.id)) >= MAX_BOARD_SESSIONS:
            raise SignalError("room_full", f"this class has its {MAX_BOARD_SESSIONS} boards")
        member = Member(
            id=f"board-{uuid.uuid4().hex[:8]}",
            sid=sid,
            room_id=room.id,
            name=msg.name,
            role="board",
            audio=False,
            video=False,
        )
        self._presence.add(member)
        joined(room.id)
        try:
            await self._sfu.join(
                room.id,
                member.id,
                "board",
                SocketSignal(self._sio, sid),
                room.gallery,
                self._controls.spotlit(room.id),
            )
        except BaseException:
            self._presence.remove(sid)
            raise
        if self._presence.by_sid.get(sid) is not member:
            await self._sfu.leave(room.id, member.id)
            raise SignalError("not_joined", "the connection closed while joining")
        # In the class's socket.io room: it hears who comes and goes, the class's state,
        # the leaderboard and chat, as the instructor's screen does.
        await self._sio.enter_room(sid, room.id)
        late = {**(await self._controls.joined(member, room)), **(await self._nodes())}
        late.update(await self._effort.joined(member))
        return {
            "v": PROTOCOL_VERSION,
            "you": member.out().model_dump(),
            "room": room_out(room),  # a weekly series: the id its link names
            "participants": [m.out().model_dump() for m in self._presence.people(room.id)],
            "chat": [],
            "ice_servers": self._ice_servers(member.id),
            "recording": self._recording(room.id),
            "heart_rates": self._heart_rate.latest(room.id),
            **late,
        }
