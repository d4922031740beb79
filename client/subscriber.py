"""The subscribe connection: the SFU's offers, answered one at a time, in order.

The SFU offers one m-line per forwarded track with ``subscribe_offer`` and waits for
the ``subscribe_answer`` before its next offer (docs/protocol.md, "Media"). The first
offer may overtake the join's ack (with relay routing), so each offer waits until the
session it came on has joined; after a drop, ``reset`` starts over for the rejoin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from .connections import CallFn, rtc_configuration
from .protocol import offer_owners

Offer = dict[str, Any]


class Subscriber:
    """One client's subscribe connection and the offers waiting for it.

    The hooks let a client watch the negotiation without repeating it: ``created(pc)``
    once per connection, ``prepare(offer)`` before an offer is applied, ``applied(pc,
    offer)`` after it (new receivers exist then), and ``compact(pc, sdp)`` rewrites the
    answer's SDP before it is sent.
    """

    def __init__(
        self,
        *,
        created: Callable[[RTCPeerConnection], object] | None = None,
        prepare: Callable[[Offer], None] | None = None,
        applied: Callable[[RTCPeerConnection, Offer], None] | None = None,
        compact: Callable[[RTCPeerConnection, str], str] | None = None,
    ) -> None:
        self.pc: RTCPeerConnection | None = None
        # mid -> (publisher id, kind) for every m-line an offer has named.
        self.owners: dict[str, tuple[str, str]] = {}
        self.configuration = rtc_configuration()
        self.answered = 0
        self._created = created
        self._prepare = prepare
        self._applied = applied
        self._compact = compact
        self._queue: asyncio.Queue[tuple[object, Offer]] = asyncio.Queue()
        self._joined = asyncio.Event()
        self._session: object | None = None
        self._generation = 0  # counts resets: an answer under way during one is dropped

    def offered(self, session: object, offer: Offer) -> None:
        """A ``subscribe_offer`` arrived on ``session`` (a Socket.IO client)."""
        self._queue.put_nowait((session, offer))

    def joined(self, session: object, configuration: RTCConfiguration) -> None:
        """``session`` has joined: its offers may be answered, with these ICE servers."""
        self._session = session
        self.configuration = configuration
        self._joined.set()

    def reset(self) -> RTCPeerConnection | None:
        """Start over for a rejoin: drop waiting offers, forget the connection (returned,
        for the caller to close) and what its m-lines carried."""
        self._generation += 1
        self._joined.clear()
        self._session = None
        while not self._queue.empty():
            self._queue.get_nowait()
        pc, self.pc = self.pc, None
        self.owners = {}
        return pc

    async def next_offer(self) -> Offer:
        """The next offer of the session that joined last (others' are skipped)."""
        while True:
            session, offer = await self._queue.get()
            await self._joined.wait()
            if session is self._session:
                return offer

    async def answer(self, offer: Offer, call: CallFn) -> None:
        """Apply ``offer`` to the subscribe connection (made on the first) and answer it."""
        generation = self._generation
        self.owners.update(offer_owners(offer))
        if self.pc is None:
            self.pc = RTCPeerConnection(self.configuration)
            if self._created is not None:
                self._created(self.pc)
        pc = self.pc
        if self._prepare is not None:
            self._prepare(offer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        if self._applied is not None:
            self._applied(pc, offer)
        await pc.setLocalDescription(await pc.createAnswer())
        if generation != self._generation:
            return  # the offer of a session that ended meanwhile
        sdp = pc.localDescription.sdp
        if self._compact is not None:
            sdp = self._compact(pc, sdp)
        await call("subscribe_answer", {"type": "answer", "sdp": sdp})
        self.answered += 1
