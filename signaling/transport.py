"""python-socketio's server, with malformed Socket.IO packets answered by a disconnect.

A conforming client never sends a packet that is not JSON, an event packet without a
string event name, or JSON nested thousands deep. python-socketio raises on these and the
exception is logged with a full traceback per packet: a client could fill the log
(and spend the server's CPU) two bytes at a time. Such a session is closed instead,
with one warning line.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from .socketio_compat import check_compatibility

logger = logging.getLogger(__name__)

# What decoding or dispatching a malformed packet raises (RecursionError: deep JSON).
MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


class ProtocolServer(socketio.AsyncServer):  # type: ignore[misc]
    """An ``AsyncServer`` that disconnects a session sending a malformed packet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Its overrides (and fanout's) rest on python-socketio's internals: refuse to
        # start on a release where they are not what they were written against.
        check_compatibility()
        super().__init__(*args, **kwargs)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except MALFORMED as exc:
            logger.warning(
                "malformed Socket.IO packet (%s) from session %s: disconnected",
                type(exc).__name__,
                eio_sid,
            )
            await self.eio.disconnect(eio_sid)

    async def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        # Checked here: python-socketio looks the name up in its dict of handlers in a
        # task of its own, where an unhashable name fails unseen by anyone.
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise ValueError("an event packet starts with the event's name")
        await super()._handle_event(eio_sid, namespace, id, data)
