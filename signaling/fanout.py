"""Socket.IO client managers whose emit to a class costs no task per recipient.

python-socketio's ``AsyncManager.emit`` encodes an event once, then starts one asyncio
task per recipient to hand the same packet to each session's queue, and waits for them
all. Handing a packet over never waits (Engine.IO's queues are unbounded), so for a
chat line in a class of 200 that is 200 tasks created, scheduled and awaited for
nothing: measured as most of python-socketio's own share of a fan-out
(docs/benchmarks.md, "Signaling load"). ``FanoutManager.emit`` hands the packet over
in one loop instead. Emits with an ack callback (each recipient needs its own packet)
keep python-socketio's path.

``FanoutRedisManager`` is the same for several nodes: Redis carries the event between
nodes as before, and each node's local delivery is this loop (it sits between
``AsyncPubSubManager`` and ``AsyncManager`` in the method resolution order).
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet


class FanoutManager(socketio.AsyncManager):  # type: ignore[misc]
    """The in-memory manager, with a task-free emit to rooms."""

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        """Send ``event`` to a session, a room or everyone, as python-socketio does."""
        if callback is not None:
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback,
                to=to, **kwargs,
            )  # fmt: skip
            return
        room = to or room
        if namespace not in self.rooms:
            return
        if isinstance(data, tuple):
            args = list(data)  # a tuple is several arguments
        elif data is not None:
            args = [data]
        else:
            args = []
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        encoded = self.server.packet_class(
            packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        frames = [
            eio_packet.Packet(eio_packet.MESSAGE, part)
            for part in (encoded if isinstance(encoded, list) else [encoded])
        ]
        # get_participants iterates over a copy: a session leaving during an await below
        # (a timed-out client is closed on the spot) cannot upset the loop.
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid not in skip:
                for frame in frames:
                    await self.server._send_eio_packet(eio_sid, frame)


class FanoutRedisManager(socketio.AsyncRedisManager, FanoutManager):  # type: ignore[misc]
    """``AsyncRedisManager`` whose local delivery on each node is ``FanoutManager``'s."""
