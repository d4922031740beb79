"""Shout-outs: the instructor praises a participant ("Great push, Ben!") and their page
shows it for a few seconds, as a studio coach calls a name over the music.

A shout-out goes to the participant it names (every session acting for them), to the
class's instructor sessions and to its TV board (the studio's screen shows it), nobody
else: praise is public in a studio, but a page that
announced every shout-out to everyone would turn it into a feed. The moments worth one
(``milestone`` events: a participant reaching the class's effort target, or zone 5 for
the first time in the class) are suggested to the instructor by ``signaling/effort.py``.
"""

from __future__ import annotations

import time
from typing import Any

import socketio

from .dispatch import Event
from .errors import SignalError
from .messages import PROTOCOL_VERSION, ShoutOutIn
from .presence import Member, Presence
from .ratelimit import RateLimit


class ShoutOuts:
    """The ``shout_out`` event."""

    def __init__(self, sio: socketio.AsyncServer, presence: Presence) -> None:
        self._sio = sio
        self._presence = presence

    def events(self) -> dict[str, Event]:
        """This module's client→server events, for the server's table."""
        return {
            "shout_out": Event(
                # A round of praise after a sprint: several names in a few seconds.
                ShoutOutIn, self.send, joined=True, host_only=True,
                limit=RateLimit(rate=1.0, burst=10),
            ),
        }  # fmt: skip

    async def send(self, _sid: str, member: Member, msg: ShoutOutIn) -> dict[str, Any]:
        """``shout_out``: to the participant named, and the class's instructor sessions."""
        room_id = member.room_id
        target = self._presence.by_room.get(room_id, {}).get(msg.participant_id)
        if target is None or target.role != "participant":
            raise SignalError("not_found", "no participant with this id is in the class")
        shout = {
            "participant_id": target.id,
            "name": target.name,
            "text": msg.text or f"Great push, {target.name}!",
            "from": member.name,
            "at": time.time(),
        }
        payload = {"v": PROTOCOL_VERSION, "shout_out": shout}
        to = {m.sid for m in self._presence.acting_for(room_id, target.id)}
        to |= {m.sid for m in self._presence.watchers(room_id)}  # the instructor, the TV board
        for sid in sorted(to):
            await self._sio.emit("shout_out", payload, to=sid)
        return {"shout_out": shout}
