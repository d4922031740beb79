"""The class chat: a message stored, then sent to everyone in the class; a class holds at
most ``limit`` messages (PULSEROOM_MAX_CHAT_PER_CLASS), so a client that sends without
end fills its class's quota, not the disk."""

from __future__ import annotations

from typing import Any

import socketio

from storage.store import ChatRecord, Store

from .errors import SignalError
from .messages import PROTOCOL_VERSION, ChatIn
from .outbound import chat_out
from .presence import Member

MAX_CHAT = 10_000


class Chat:
    """The ``chat`` event, and the history a join ack carries."""

    def __init__(self, sio: socketio.AsyncServer, store: Store, limit: int = MAX_CHAT) -> None:
        self._sio = sio
        self._store = store
        self.limit = limit

    async def history(self, room_id: str) -> list[ChatRecord]:
        """The class's latest messages, for a join ack."""
        return await self._store.recent_chat(room_id)

    async def send(self, _sid: str, member: Member, msg: ChatIn) -> dict[str, Any]:
        """``chat``: store the message and send it to the class; refused past the quota."""
        if not msg.text:
            raise SignalError("bad_request", "text: must not be empty")
        record = await self._store.add_chat(
            member.room_id, member.id, member.name, msg.text, member.role, self.limit
        )
        if record is None:
            raise SignalError(
                "quota_exceeded", f"this class holds its limit of {self.limit} chat messages"
            )
        message = chat_out(record)
        await self._sio.emit(
            "chat", {"v": PROTOCOL_VERSION, "message": message}, room=member.room_id
        )
        return {"message": message}
