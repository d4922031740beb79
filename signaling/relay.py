"""Sessions connected to one node, in a class held by another: events relayed via Redis.

With ``PULSEROOM_CLUSTER_ROUTING=relay`` a client stays on whichever node its
connection reached (a load balancer in front of the nodes, one public address), as in
LiveKit's signal relay: that node is the session's *edge*; the class's media and state
stay on its *holder*. The edge forwards each event of the session to the holder's
channel ``{prefix}:relay:{holder}``, and the holder handles it as one of its own, under
the same session id. Everything the holder sends back other than the ack already
crosses nodes through python-socketio's Redis manager (an emit to the session, entering
and leaving the class's room, a disconnect); the ack comes back on the edge's channel.

A session's events are handled on the holder in the order they were sent: the edge
publishes them in order on one channel, and the holder handles one session's events
one after another (as a client waits for each ack, this costs it nothing).

When the client goes away the edge says ``gone``; when either node dies the other
notices at its next heartbeat: the holder takes the edge's sessions out of their
classes, the edge disconnects the sessions of a dead holder (their clients rejoin, and
the class is placed again).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .cluster import Cluster, ClusterError
from .errors import SignalError

logger = logging.getLogger(__name__)

TIMEOUT_S = 20.0  # an ack later than this is given up on (the holder is stuck or gone)
GONE_MEMORY_S = 60.0  # a session gone before its join was handled is removed after it

Handle = Callable[[str, str, Any], Awaitable[dict[str, Any]]]  # (sid, event, data) → ack
Gone = Callable[[str], Awaitable[None]]  # a relayed session's client went away
Drop = Callable[[str], Awaitable[None]]  # disconnect a session whose holder died


class Envelope(BaseModel):
    """One relayed message on a node's relay channel."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    kind: Literal["event", "ack", "gone"]
    node: str = Field(min_length=1, max_length=64)  # the node that sent it
    sid: str = Field(min_length=1, max_length=64)
    id: int = 0  # an event's number on its edge; its ack carries it back
    event: str = ""
    data: Any = None


class Relay:
    """This node's side of relayed sessions: as their edge and as their holder."""

    def __init__(
        self, cluster: Cluster, handle: Handle, gone: Gone, drop: Drop, timeout_s: float = TIMEOUT_S
    ) -> None:
        self._cluster = cluster
        self._handle = handle
        self._gone = gone
        self._drop = drop
        self._timeout = timeout_s
        # As the edge: session id → its class's holder node.
        self.holders: dict[str, str] = {}
        # As the holder: session id → its edge node.
        self.edges: dict[str, str] = {}
        self._pending: dict[int, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._numbers = itertools.count(1)
        self._queues: dict[str, asyncio.Queue[Envelope]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._gone_at: dict[str, float] = {}
        self.forwarded = 0  # events this node relayed to holders
        self.served = 0  # relayed events this node handled as the holder
        cluster.subscribe(self.channel(cluster.node_id), self._receive)
        cluster.on_beat = self.check

    def channel(self, node_id: str) -> str:
        """The Redis channel a node receives relayed messages on."""
        return f"{self._cluster.prefix}:relay:{node_id}"

    # -- as the edge ----------------------------------------------------------------------

    def holder_of(self, sid: str) -> str | None:
        """The node whose class this session is in, if it is relayed."""
        return self.holders.get(sid)

    def bind(self, sid: str, holder: str) -> None:
        """From now on, this session's events go to ``holder``."""
        self.holders[sid] = holder

    def unbind(self, sid: str) -> None:
        """The session's join was refused: it is nobody's now."""
        self.holders.pop(sid, None)

    async def forward(self, holder: str, sid: str, event: str, data: Any) -> dict[str, Any]:
        """Send one event of ``sid`` to its holder and return the holder's ack."""
        number = next(self._numbers)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[number] = (holder, future)
        try:
            envelope = Envelope(
                kind="event", node=self._cluster.node_id, sid=sid, id=number, event=event, data=data
            )
            if not await self._send(holder, envelope):
                raise SignalError("unavailable", "the node holding this class is gone: rejoin")
            self.forwarded += 1
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise SignalError(
                "unavailable", "the node holding this class did not answer: try again"
            ) from None
        finally:
            self._pending.pop(number, None)

    async def left(self, sid: str) -> None:
        """The client of a relayed session went away: tell its holder."""
        holder = self.holders.pop(sid, None)
        if holder is not None:
            try:
                await self._send(holder, Envelope(kind="gone", node=self._cluster.node_id, sid=sid))
            except SignalError:
                # The holder takes this edge's sessions out when its heartbeat lapses.
                logger.warning("could not tell node %s that session %s left", holder, sid)

    # -- as the holder ----------------------------------------------------------------------

    def edge_of(self, sid: str) -> str | None:
        """The node a remote session's client is connected to."""
        return self.edges.get(sid)

    def _serve(self, envelope: Envelope) -> None:
        """Queue a relayed event: one session's events are handled in order."""
        queue = self._queues.get(envelope.sid)
        if queue is None:
            queue = self._queues[envelope.sid] = asyncio.Queue()
            self._workers[envelope.sid] = asyncio.create_task(
                self._work(envelope.sid, queue), name=f"relay-{envelope.sid}"
            )
        queue.put_nowait(envelope)

    async def _work(self, sid: str, queue: asyncio.Queue[Envelope]) -> None:
        try:
            while True:
                envelope = await queue.get()
                if envelope.kind == "gone":
                    await self._session_gone(sid)
                    return
                self.edges[sid] = envelope.node
                self.served += 1
                try:
                    ack = await self._handle(sid, envelope.event, envelope.data)
                except Exception:
                    logger.exception("relayed event %s failed", envelope.event)
                    ack = _refusal("internal", "the server could not handle this request")
                reply = Envelope(
                    kind="ack", node=self._cluster.node_id, sid=sid, id=envelope.id, data=ack
                )
                try:
                    await self._send(envelope.node, reply)
                except SignalError:
                    logger.warning("could not answer node %s for session %s", envelope.node, sid)
                if queue.empty():
                    return
        finally:
            if self._workers.get(sid) is asyncio.current_task():
                del self._workers[sid]
                self._queues.pop(sid, None)

    async def _session_gone(self, sid: str) -> None:
        self.edges.pop(sid, None)
        self._gone_at[sid] = time.monotonic()
        await self._gone(sid)

    # -- both -----------------------------------------------------------------------------

    def _receive(self, raw: str) -> None:
        """A message on this node's relay channel (called from the cluster's listener)."""
        try:
            envelope = Envelope.model_validate_json(raw)
        except ValidationError:
            logger.warning("ignoring a malformed relay message: %.200s", raw)
            return
        if envelope.kind == "ack":
            pending = self._pending.get(envelope.id)
            if pending is not None and not pending[1].done():
                ack = (
                    envelope.data
                    if isinstance(envelope.data, dict)
                    else _refusal("internal", "the node holding this class gave a malformed answer")
                )
                pending[1].set_result(ack)
            return
        if envelope.kind == "event" and envelope.sid in self._gone_at:
            return  # its client left before this was handled
        self._serve(envelope)

    async def _send(self, node: str, envelope: Envelope) -> bool:
        try:
            text = envelope.model_dump_json()
        except ValueError:  # pydantic's serialization error
            raise SignalError("bad_request", "payload: not representable as JSON") from None
        try:
            return await self._cluster.publish(self.channel(node), text) > 0
        except ClusterError as exc:
            raise SignalError("unavailable", "the server cannot reach its cluster") from exc

    async def check(self, live: set[str]) -> None:
        """After a heartbeat: drop what was relayed through, or to, nodes now dead."""
        now = time.monotonic()
        for sid, at in list(self._gone_at.items()):
            if now - at > GONE_MEMORY_S:
                del self._gone_at[sid]
        for sid, edge in list(self.edges.items()):
            if edge not in live and sid not in self._queues:
                logger.warning("node %s is gone: its session %s leaves its class", edge, sid)
                await self._session_gone(sid)
        dead = {holder for holder in self.holders.values() if holder not in live}
        for holder, future in list(self._pending.values()):
            if holder in dead and not future.done():
                future.set_exception(
                    SignalError("unavailable", "the node holding this class is gone: rejoin")
                )
        for sid, holder in list(self.holders.items()):
            if holder in dead:
                logger.warning("node %s is gone: session %s is let go to rejoin", holder, sid)
                del self.holders[sid]
                await self._drop(sid)

    def stats(self) -> dict[str, int]:
        """Counters for /metrics."""
        return {
            "sessions_out": len(self.holders),
            "sessions_in": len(self.edges),
            "forwarded": self.forwarded,
            "served": self.served,
        }

    async def close(self) -> None:
        """Stop handling relayed events (the sessions themselves are closed by the server)."""
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
        for _holder, future in self._pending.values():
            if not future.done():
                future.cancel()


def _refusal(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}
