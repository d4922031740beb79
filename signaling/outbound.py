"""What the signaling server sends that is more than one line: offers, chat messages."""

from __future__ import annotations

from typing import Any

import socketio

from sfu.backend import TrackInfo
from storage.store import ChatRecord

from .messages import PROTOCOL_VERSION, ChatMessageOut


class SocketSignal:
    """The SFU's way to reach one client: emits ``subscribe_offer`` to its session."""

    def __init__(self, sio: socketio.AsyncServer, sid: str) -> None:
        self._sio = sio
        self._sid = sid

    async def send_offer(self, sdp: str, tracks: list[TrackInfo]) -> None:
        """Send a subscribe offer with its m-line → publisher map."""
        await self._sio.emit(
            "subscribe_offer",
            {
                "v": PROTOCOL_VERSION,
                "type": "offer",
                "sdp": sdp,
                "tracks": [
                    {"mid": t.mid, "participant_id": t.participant_id, "kind": t.kind}
                    for t in tracks
                ],
            },
            to=self._sid,
        )

    async def send_layers(self, rids: list[str]) -> None:
        """Tell the client which of its simulcast layers to send (``layers``)."""
        await self._sio.emit("layers", {"v": PROTOCOL_VERSION, "active": rids}, to=self._sid)


def chat_out(record: ChatRecord) -> dict[str, Any]:
    """A stored chat message as the protocol's ChatMessage."""
    return ChatMessageOut(
        id=record.id,
        participant_id=record.participant_id,
        name=record.name,
        text=record.text,
        sent_at=record.sent_at,
        role="host" if record.role == "host" else "participant",
    ).model_dump()
