"""Several nodes over one Redis: which nodes are alive, and which node holds which class.

A class's media lives in one node's SFU, so all of a class's sessions must be on that
node: the *holder*. Redis keeps (all keys under ``{prefix}:``)

- ``node:{id}``: a live node's ``NodeInfo`` (its URL and load), written every second with
  a 3 s TTL: a node that dies (or stalls) drops out within 3 s, with nobody to tell;
- the channel ``alive:{id}``, which each node keeps a subscription to: when a node's
  process dies its connections close, Redis counts no subscriber at once, and the node
  is dead right away (the TTL is for a machine that vanished or a process that stalls);
- ``nodes``: the ids of nodes seen, and ``urls``: the URLs of nodes ever seen (the
  Socket.IO origins a page may come from: a page keeps working after its node died);
- ``room:{room_id}``: the id of the node holding the class.

The first ``join`` of a class places it on the least-loaded live node; a ``join`` for a
class whose holder's heartbeat lapsed re-places it. Placing is one Lua script that sets
the holder only when there is none or it is dead, so two survivors never both take a
class. A node that finds one of its classes held by another (it stalled past its TTL and
was taken over) lets that class's sessions go: they rejoin on the holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .errors import SignalError

logger = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
NODE_TTL_S = 3.0
# A held class's placement outlives its last member by this much; the holder renews it.
PLACEMENT_TTL_S = 3600
PLACE_ATTEMPTS = 3

# KEYS[1]: the class's placement key. ARGV: candidate node id, node-key prefix, TTL (s),
# alive-channel prefix. The holder stays while its node key exists and its process still
# listens on its alive channel; otherwise the candidate takes the class.
_PLACE = """
local current = redis.call('GET', KEYS[1])
if current and redis.call('EXISTS', ARGV[2] .. current) == 1 then
  local listening = redis.call('PUBSUB', 'NUMSUB', ARGV[4] .. current)
  if tonumber(listening[2]) > 0 then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return ARGV[1]
"""

LoadFn = Callable[[], tuple[int, int]]  # (sessions, classes) on this node
LostFn = Callable[[str, "NodeInfo | None"], Awaitable[None]]  # (room id, its holder)


class ClusterError(Exception):
    """Redis cannot be used right now, so nobody can say which node holds a class."""


class NodeInfo(BaseModel):
    """What a node's heartbeat says about it (the value of ``node:{id}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    id: str = Field(min_length=1, max_length=64)
    url: str = Field(min_length=1, max_length=2048)
    participants: int = Field(ge=0)
    rooms: int = Field(ge=0)
    started_at: float


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what browsers send as ``Origin``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Cluster:
    """This node's membership in the cluster: heartbeat, placement, takeover."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        node_url: str,
        *,
        public_url: str | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        ttl_s: float = NODE_TTL_S,
    ) -> None:
        self.node_id = uuid.uuid4().hex[:12]  # a restarted node is a new node
        self.url = node_url.rstrip("/")
        self.prefix = prefix
        self.redis_url = redis_url
        self.heartbeat_s = heartbeat_s
        self.ttl_ms = int(ttl_s * 1000)
        self.started_at = time.time()
        # Set by the signaling server: its load, its classes, and what to do with a
        # class another node took over.
        self.load: LoadFn = lambda: (0, 0)
        self.rooms: Callable[[], Iterable[str]] = lambda: ()
        self.on_lost: LostFn | None = None
        # Called after each heartbeat with the ids of the live nodes (signaling/relay.py).
        self.on_beat: Callable[[set[str]], Awaitable[None]] | None = None
        # Channels of this node's own besides its alive channel: name → handler of a message.
        self._channels: dict[str, Callable[[str], None]] = {}
        self._redis: Redis | None = None
        self._pubsub: Any = None
        self._announced = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._place: Any = None
        self._live: list[NodeInfo] = []
        self._origins = {origin_of(self.url)}
        if public_url:
            self._origins.add(origin_of(public_url))
        self.beats = 0

    # -- keys ---------------------------------------------------------------------------

    def _node_key(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    def _room_key(self, room_id: str) -> str:
        return f"{self.prefix}:room:{room_id}"

    def _alive_channel(self, node_id: str) -> str:
        return f"{self.prefix}:alive:{node_id}"

    @property
    def _redis_or_fail(self) -> Redis:
        if self._redis is None:
            raise ClusterError("the cluster is not started")
        return self._redis

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and beat once (so others see this node at once), then keep beating.

        Redis being down at start is not fatal: ``/readyz`` says so, joins are refused
        with ``unavailable``, and the heartbeat keeps trying until Redis is back.
        """
        self._redis = Redis.from_url(
            self.redis_url, socket_connect_timeout=2, socket_timeout=2, decode_responses=True
        )
        self._place = self._redis.register_script(_PLACE)
        self._pubsub = self._redis.pubsub()
        try:
            await self._announce()
        except (RedisError, OSError) as exc:
            logger.warning("cannot use Redis at %s yet (retrying): %s", self._where, exc)
        self._listener = asyncio.create_task(self._listen(), name="cluster-alive")
        self._task = asyncio.create_task(self._run(), name="cluster-heartbeat")
        logger.info("cluster node %s at %s (prefix %r)", self.node_id, self.url, self.prefix)

    @property
    def _where(self) -> str:
        """The Redis URL without its password, for messages."""
        parts = urlsplit(self.redis_url)
        if not parts.password:
            return self.redis_url
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***", 1)))

    async def _announce(self) -> None:
        """Register this node's URL, subscribe to its alive channel, beat once."""
        redis = self._redis_or_fail
        await redis.sadd(f"{self.prefix}:urls", self.url)
        await self._pubsub.subscribe(self._alive_channel(self.node_id), *self._channels)
        await self._beat()
        self._announced = True

    async def close(self) -> None:
        """Stop beating and leave: this node's classes can be taken over at once."""
        # The loops also check this flag: redis-py can turn a cancellation that lands
        # as its read timeout expires into a TimeoutError, which they would survive.
        self._closing = True
        for task in (self._task, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._listener = None
        # Bounded: closing redis-py's connections can wait on a transport for long.
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(self._redis.delete(self._node_key(self.node_id)), 2)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(self._pubsub.aclose(), 2)
            self._pubsub = None
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(self._redis.aclose(), 2)
            self._redis = None

    async def _run(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.heartbeat_s)
            try:
                if not self._announced:
                    await self._announce()
                    continue
                await self._beat()
                await self._check_rooms()
                if self.on_beat is not None:
                    await self.on_beat({n.id for n in self._live})
            except (RedisError, OSError) as exc:
                # Others will think this node is dead after the TTL; it comes back when
                # Redis does, and lets go of any class taken over meanwhile.
                logger.warning("cluster heartbeat failed: %s", exc)
            except Exception:
                logger.exception("cluster heartbeat failed")

    async def _listen(self) -> None:
        """Keep the alive subscription read (redis-py resubscribes after a reconnect)."""
        while not self._closing:
            if not self._announced:  # not subscribed yet: Redis was down at start
                await asyncio.sleep(0.5)
                continue
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except (RedisError, OSError) as exc:
                logger.warning("cluster alive channel: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if message is not None and message.get("type") == "message":
                handler = self._channels.get(str(_text(message["channel"])))
                if handler is not None:
                    handler(str(_text(message["data"])))

    def subscribe(self, channel: str, handler: Callable[[str], None]) -> None:
        """Hand each message published on ``channel`` to ``handler`` (call before start).

        ``handler`` runs in the listener loop: it must not block (start a task instead).
        """
        if self._announced:
            raise RuntimeError("subscribe before the cluster starts")
        self._channels[channel] = handler

    async def publish(self, channel: str, message: str) -> int:
        """Publish ``message``; the number of subscribers that got it (0: nobody listens)."""
        try:
            return int(await self._redis_or_fail.publish(channel, message))
        except (RedisError, OSError) as exc:
            raise ClusterError(f"Redis is not reachable: {exc}") from exc

    async def _beat(self) -> None:
        redis = self._redis_or_fail
        participants, rooms = self.load()
        info = NodeInfo(
            id=self.node_id,
            url=self.url,
            participants=participants,
            rooms=rooms,
            started_at=self.started_at,
        )
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(self._node_key(self.node_id), info.model_dump_json(), px=self.ttl_ms)
            pipe.sadd(f"{self.prefix}:nodes", self.node_id)
            pipe.smembers(f"{self.prefix}:urls")
            results = await pipe.execute()
        self._origins.update(origin_of(str(_text(url))) for url in results[2])
        self._live = await self.live_nodes()
        self.beats += 1

    async def _check_rooms(self) -> None:
        """Renew the placement of this node's classes; let go of those taken over."""
        rooms = list(self.rooms())
        if not rooms:
            return
        redis = self._redis_or_fail
        holders = [_text(h) for h in await redis.mget([self._room_key(r) for r in rooms])]
        for room_id, holder in zip(rooms, holders, strict=True):
            if holder == self.node_id:
                await redis.expire(self._room_key(room_id), PLACEMENT_TTL_S)
            elif holder is None:
                # Expired or flushed while in use: still ours unless someone takes it.
                await redis.set(self._room_key(room_id), self.node_id, ex=PLACEMENT_TTL_S, nx=True)
            else:
                logger.warning("room %s was taken over by node %s", room_id, holder)
                if self.on_lost is not None:
                    await self.on_lost(room_id, await self.node(holder))

    # -- queries ------------------------------------------------------------------------

    async def node(self, node_id: str) -> NodeInfo | None:
        """A live node's info, or None when its heartbeat lapsed or its process is gone."""
        redis = self._redis_or_fail
        ((_channel, count),) = await redis.pubsub_numsub(self._alive_channel(node_id))
        if int(count) == 0:
            return None
        return _parse(_text(await redis.get(self._node_key(node_id))))

    async def live_nodes(self) -> list[NodeInfo]:
        """Every node whose heartbeat is current; forgets the ids of the others."""
        redis = self._redis_or_fail
        ids = sorted(str(_text(i)) for i in await redis.smembers(f"{self.prefix}:nodes"))
        if not ids:
            return []
        raws = await redis.mget([self._node_key(i) for i in ids])
        listening = await redis.pubsub_numsub(*[self._alive_channel(i) for i in ids])
        live = []
        for node_id, raw, (_channel, count) in zip(ids, raws, listening, strict=True):
            info = _parse(_text(raw)) if int(count) > 0 else None
            if info is None:
                # A node re-adds itself on every beat, so dropping a stale id is safe.
                await redis.srem(f"{self.prefix}:nodes", node_id)
            else:
                live.append(info)
        return live

    async def refresh_live(self) -> None:
        """Read the live nodes now (``node_urls`` otherwise says what the last beat saw)."""
        try:
            self._live = await self.live_nodes()
        except (RedisError, OSError) as exc:
            raise ClusterError(f"Redis is not reachable: {exc}") from exc

    async def fresh_node_urls(self) -> list[str]:
        """``node_urls`` after ``refresh_live``, or as of the last beat if Redis is away:
        a node that started a moment ago is on it, so a client that joined meanwhile
        knows another node to rejoin on."""
        with contextlib.suppress(ClusterError):
            await self.refresh_live()
        return self.node_urls()

    def node_urls(self) -> list[str]:
        """The URLs of the live nodes as of the last heartbeat (this node's first)."""
        others = [n.url for n in self._live if n.id != self.node_id]
        return [self.url, *others]

    async def holder(self, room_id: str) -> NodeInfo:
        """The node holding ``room_id``; places the class first if it has no live holder."""
        try:
            return await self._holder(room_id)
        except (RedisError, OSError) as exc:
            raise ClusterError(f"Redis is not reachable: {exc}") from exc

    async def _holder(self, room_id: str) -> NodeInfo:
        redis = self._redis_or_fail
        for _ in range(PLACE_ATTEMPTS):
            current = _text(await redis.get(self._room_key(room_id)))
            if current is not None:
                info = await self.node(current)
                if info is not None:
                    return info
            candidate = self._least_loaded(await self.live_nodes())
            winner = await self._place(
                keys=[self._room_key(room_id)],
                args=[
                    candidate.id,
                    f"{self.prefix}:node:",
                    PLACEMENT_TTL_S,
                    f"{self.prefix}:alive:",
                ],
            )
            if _text(winner) == candidate.id:
                if current is not None:
                    logger.info("room %s re-placed on node %s", room_id, candidate.id)
                return candidate
            info = await self.node(str(_text(winner)))
            if info is not None:
                return info
        raise ClusterError(f"no live node would take class {room_id}")

    def _least_loaded(self, nodes: list[NodeInfo]) -> NodeInfo:
        """Fewest participants, then fewest classes; on a tie, this node (no redirect)."""
        if not nodes:
            raise ClusterError("no live node (not even this one: is Redis keeping up?)")
        return min(nodes, key=lambda n: (n.participants, n.rooms, n.id != self.node_id, n.id))

    def allows_origin(self, origin: str | None, environ: dict[str, Any] | None = None) -> bool:
        """Socket.IO's origin check: this node's own host, or any node of the cluster."""
        if origin is None or origin in self._origins:
            return True
        if environ is None:
            return False
        # Like python-engineio's default: the host the request came to, or behind a
        # proxy the one it forwarded for.
        scheme = environ.get("wsgi.url_scheme", "http")
        hosts = {environ.get("HTTP_HOST"), environ.get("HTTP_X_FORWARDED_HOST")}
        return any(h and origin == f"{scheme}://{h.split(',')[0].strip()}" for h in hosts)


def _text(value: bytes | str | None) -> str | None:
    """A Redis reply as text (the client decodes replies; its types say it may not)."""
    return value.decode() if isinstance(value, bytes) else value


def _parse(raw: str | None) -> NodeInfo | None:
    if raw is None:
        return None
    try:
        return NodeInfo.model_validate_json(raw)
    except ValidationError:
        logger.warning("ignoring a malformed node record: %.200s", raw)
        return None


class Moved(SignalError):
    """``join`` reached a node that does not hold the class: go to ``url`` instead."""

    def __init__(self, url: str) -> None:
        super().__init__("moved", f"this class is held by another node: connect to {url}")
        self.url = url
