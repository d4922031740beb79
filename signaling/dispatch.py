"""From a Socket.IO event to its handler: validate, rate-limit, check who sends it, answer.

Every event is declared once as an ``Event`` (model, handler, who may send it, its rate
limit) in ``SignalingServer``'s table; one wrapper per event validates the payload,
finds the session's member, turns every refusal into an ack plus an ``error`` event, and
never lets an exception reach python-socketio. With relay routing, a session whose class
is held by another node has its events checked here and handled there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import socketio
from pydantic import BaseModel, ValidationError

from runtime.logs import set_log_context
from sfu.backend import SfuError

from .client_address import ConnectionCap
from .cluster import Moved
from .errors import SignalError
from .messages import error_payload
from .presence import Presence
from .ratelimit import RateLimit
from .relay import Relay
from .tokens import TokenError

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0  # a connection that has not joined by then is closed
DEFAULT_CONNECTIONS_PER_ADDRESS = 200  # a gym's whole class may share one NAT address

Handler = Callable[[str, Any, Any], Awaitable[dict[str, Any]]]  # (sid, member, payload)
Gone = Callable[[str], Awaitable[None]]  # a session's client went away


@dataclass(frozen=True, slots=True)
class Event:
    """One client→server event: its payload model, handler, who may send it, how often."""

    model: type[BaseModel]
    handler: Handler
    joined: bool  # the session must have joined first
    host_only: bool = False
    device: bool = False  # a strap bridge's session may send it too
    board: bool = False  # a studio TV's read-only board may send it too (signaling/board.py)
    # Per session: what a person does by hand is far below these; a script is not.
    limit: RateLimit | None = None


class Elsewhere(Exception):
    """Relay routing: the class is held by node ``holder``, so its join goes there."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class Dispatcher:
    """The events of ``events`` on ``sio``: registers a wrapper for each, ``*`` for the
    rest, and ``disconnect`` (a real one goes to ``on_gone``)."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        presence: Presence,
        events: Mapping[str, Event],
        relay: Relay | None,
        on_gone: Gone,
        join_timeout: float = JOIN_TIMEOUT_S,
        connection_cap: ConnectionCap | None = None,
    ) -> None:
        self.sio = sio
        self.presence = presence
        self.relay = relay
        self._on_gone = on_gone
        # Read-only: the whole client→server surface, so tests can cover every event.
        self.events: Mapping[str, Event] = MappingProxyType(dict(events))
        # For /metrics: events handled, and refusals by event and error code.
        self.event_counts: Counter[str] = Counter()
        self.error_counts: Counter[tuple[str, str]] = Counter()
        self._flood = RateLimit(rate=50.0, burst=300)  # every event, trickled ICE included
        # Refusals for rate limits: a person never collects this many. A script that keeps
        # sending regardless is disconnected: answering it would cost more than it does.
        self._strikes = RateLimit(rate=5.0, burst=200)
        self._handlers = {name: self._wrap(name, event) for name, event in events.items()}
        for name, handler in self._handlers.items():
            sio.on(name, handler)
        sio.on("*", self.unknown_event)
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        self._join_timeout = join_timeout
        self.connection_cap = connection_cap or ConnectionCap(DEFAULT_CONNECTIONS_PER_ADDRESS)
        self._join_deadlines: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def forget(self, sid: str) -> None:
        """A session ended: its rate limits go."""
        self._flood.forget(sid)
        self._strikes.forget(sid)
        for event in self.events.values():
            if event.limit is not None:
                event.limit.forget(sid)

    def _wrap(self, name: str, event: Event) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def _handle(sid: str, data: Any = None, *_extra: Any) -> dict[str, Any]:
            # python-socketio runs each event in a task of its own (async_handlers), so
            # the ids set here name this event's log records only.
            known = self.presence.by_sid.get(sid)
            if known is not None:
                set_log_context(known.room_id, known.id)
            holder = self.relay.holder_of(sid) if self.relay is not None else None
            if holder is not None:
                return await self._forward(sid, holder, name, event, data)
            self.event_counts[name] += 1
            try:
                limit = event.limit
                if not self._flood.allow(sid) or (limit is not None and not limit.allow(sid)):
                    raise SignalError("rate_limited", f"too many '{name}' requests: slow down")
                payload = event.model.model_validate(data)
                member = self.presence.by_sid.get(sid)
                if event.joined and member is None:
                    raise SignalError("not_joined", "join a class first")
                if event.host_only and (member is None or member.role != "host"):
                    raise SignalError("forbidden", "only the instructor can do this")
                if member is not None and member.role == "device" and not event.device:
                    raise SignalError("forbidden", "a heart-rate device can only send readings")
                if member is not None and member.role == "board" and not event.board:
                    raise SignalError("forbidden", "the class board only shows the class")
                result = await event.handler(sid, member, payload)
                return {"ok": True, **result}
            except ValidationError as exc:
                code, message = "bad_request", _validation_message(exc)
            except Elsewhere as exc:  # relay routing: the join goes to the class's node
                return await self._join_elsewhere(sid, exc.holder, data)
            except (SignalError, SfuError, TokenError) as exc:
                code, message = exc.code, exc.message
                if isinstance(exc, Moved):  # the client connects there and joins again
                    error = {"code": code, "message": message, "url": exc.url}
                    return {"ok": False, "error": error}
            except Exception:
                logger.exception("event %s failed", name)
                code, message = "internal", "the server could not handle this request"
            self.error_counts[(name, code)] += 1
            return await self._refuse(sid, name, code, message)

        return _handle

    async def _forward(
        self, sid: str, holder: str, name: str, event: Event, data: Any
    ) -> dict[str, Any]:
        """An event of a relayed session: checked here, handled by the class's node."""
        assert self.relay is not None
        try:
            if not self._flood.allow(sid):
                raise SignalError("rate_limited", f"too many '{name}' requests: slow down")
            event.model.model_validate(data)  # malformed input never reaches Redis
            return await self.relay.forward(holder, sid, name, data)
        except ValidationError as exc:
            code, message = "bad_request", _validation_message(exc)
        except SignalError as exc:
            code, message = exc.code, exc.message
        self.error_counts[(name, code)] += 1
        return await self._refuse(sid, name, code, message)

    async def _join_elsewhere(self, sid: str, holder: str, data: Any) -> dict[str, Any]:
        """Join a class held by another node: the session stays here, relayed there."""
        assert self.relay is not None
        if self.relay.edge_of(sid) is not None:
            # Relayed to us, and the class moved on meanwhile: no chains of relays.
            message = "this class is moving to another server: rejoin"
            return await self._refuse(sid, "join", "unavailable", message)
        self.relay.bind(sid, holder)  # before sending: a disconnect meanwhile is relayed too
        try:
            ack = await self.relay.forward(holder, sid, "join", data)
        except SignalError as exc:
            self.relay.unbind(sid)
            return await self._refuse(sid, "join", exc.code, exc.message)
        if not ack.get("ok"):
            self.relay.unbind(sid)  # the holder has sent its own error event
        return ack

    async def serve_relayed(self, sid: str, name: str, data: Any) -> dict[str, Any]:
        """As the class's node: an event of a session connected to another node."""
        handler = self._handlers.get(name)
        if handler is None:
            return {"ok": False, "error": {"code": "bad_request", "message": "unknown event"}}
        return await handler(sid, data)

    async def _refuse(self, sid: str, event: str, code: str, message: str) -> dict[str, Any]:
        """The ``error`` event and the ack of a refusal; a session flooding on is cut off."""
        if code == "rate_limited" and not self._strikes.allow(sid):
            logger.warning("session %s kept flooding (%s): disconnected", sid, event)
            message = "too many requests after being rate limited: disconnected"
            await self.sio.emit("error", error_payload(code, message, event), to=sid)
            await self.sio.disconnect(sid)
        else:
            await self.sio.emit("error", error_payload(code, message, event), to=sid)
        return {"ok": False, "error": {"code": code, "message": message}}

    async def unknown_event(self, *args: Any) -> dict[str, Any]:
        """An event the protocol does not have: refused, not left without an answer."""
        # python-socketio passes (event, sid, data…), but for an event named "*" itself
        # (sid, data…). The ack reaches the sender either way; the side effects (error
        # event, rate limit) need the sender's sid, so an ambiguous call gets none.
        first, second = (*args, None, None)[:2]
        if self._connected(second) and not self._connected(first):
            event, sid = first, str(second)
        elif self._connected(first) and not self._connected(second):
            event, sid = "*", str(first)
        else:
            return {"ok": False, "error": {"code": "bad_request", "message": "unknown event"}}
        name = str(event)[:64]
        if not self._flood.allow(sid):
            return await self._refuse(sid, name, "rate_limited", "too many requests: slow down")
        return await self._refuse(sid, name, "bad_request", f"unknown event {name!r}")

    def _connected(self, sid: Any) -> bool:
        return isinstance(sid, str) and bool(self.sio.manager.is_connected(sid, "/"))

    async def _on_connect(self, sid: str, environ: Any = None, *_args: Any) -> None:
        """A new connection counts against its address's cap (refused past it), and has
        ``join_timeout`` seconds to join a class (here, or relayed to the class's node):
        one that never joins would hold a socket, memory and a place in the rate limits
        for as long as it likes."""
        if sid not in self._join_deadlines:  # a client's own "connect" event changes nothing
            request = environ.get("aiohttp.request") if isinstance(environ, dict) else None
            address = str(getattr(request, "remote", None) or "unknown")
            if not self.connection_cap.admit(sid, address):
                logger.warning(
                    "refused a connection from %s: %d connections from that address already",
                    address, self.connection_cap.limit,
                )  # fmt: skip
                raise socketio.exceptions.ConnectionRefusedError(
                    {"code": "too_many_connections", "message": "too many connections from "
                     "your address: close another tab or device first"}
                )  # fmt: skip
            loop = asyncio.get_running_loop()
            handle = loop.call_later(self._join_timeout, self._join_overdue, sid)
            self._join_deadlines[sid] = handle

    def _join_overdue(self, sid: str) -> None:
        self._join_deadlines.pop(sid, None)
        joined = sid in self.presence.by_sid
        relayed = self.relay is not None and self.relay.holder_of(sid) is not None
        if joined or relayed or not self._connected(sid):
            return
        logger.info("session %s did not join within %g s: disconnected", sid, self._join_timeout)
        task = asyncio.ensure_future(self.sio.disconnect(sid))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _on_disconnect(self, sid: str, *_reason: Any) -> dict[str, Any] | None:
        if self.sio.manager.is_connected(sid, "/"):
            # A client's own event named "disconnect", not the real one: it must neither
            # reset the session's rate limits nor take it out of its class.
            return await self.unknown_event("disconnect", sid)
        deadline = self._join_deadlines.pop(sid, None)
        if deadline is not None:
            deadline.cancel()
        self.connection_cap.release(sid)
        await self._on_gone(sid)
        return None
