"""``GET /healthz`` (the process serves HTTP) and ``GET /readyz`` (it can run a class).

``/readyz`` answers 200 only when every dependency answers within a short timeout: the
database (``SELECT 1``) with no migration pending, Redis (``PING``) when ``REDIS_URL`` is
set, coturn (a STUN Binding request to the first TURN URL) when TURN is configured, and
every SFU worker. Otherwise 503, naming what failed. Errors are shortened to one line
and any password from the configured URLs is blanked out of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import web
from aioice import stun
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sfu.backend import MediaBackend
from storage import migrations

CHECK_TIMEOUT_S = 2.0
TURN_TIMEOUT_S = 1.0
# /readyz is public: requests within this long of a finished run share its result, so a
# flood of them costs the database at most one round of checks per second.
CACHE_S = 1.0

Check = dict[str, Any]  # {"ok": bool, "detail": str} or {"ok": false, "error": str}


@dataclass(frozen=True, slots=True)
class TurnAddress:
    """Where a ``turn:`` / ``turns:`` URL points (RFC 7065)."""

    secure: bool
    host: str
    port: int
    transport: str  # "udp" or "tcp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'turns' if self.secure else 'turn'}:{host}:{self.port}/{self.transport}"


def parse_turn_url(url: str) -> TurnAddress:
    """``turn:host[:port][?transport=udp|tcp]``; ``turns:`` means TLS over TCP, port 5349."""
    scheme, _, rest = url.partition(":")
    if scheme not in ("turn", "turns"):
        raise ValueError(f"{url!r} is not a turn: or turns: URL")
    secure = scheme == "turns"
    where, _, query = rest.partition("?")
    if where.startswith("["):
        host, _, port_text = where[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = where.partition(":")
    if not host:
        raise ValueError(f"{url!r} has no host")
    try:
        port = int(port_text) if port_text else (5349 if secure else 3478)
    except ValueError:
        raise ValueError(f"{url!r} has a bad port") from None
    transport = parse_qs(query).get("transport", ["tcp" if secure else "udp"])[0].lower()
    if transport not in ("udp", "tcp") or (secure and transport == "udp"):
        raise ValueError(f"{url!r}: transport must be udp or tcp (turns: is tcp)")
    return TurnAddress(secure, host, port, transport)


class _StunClient(asyncio.DatagramProtocol):
    """One STUN transaction over a connected UDP socket; ICMP "port unreachable" ends it."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.transactions: dict[bytes, stun.Transaction] = {}
        self.refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        transaction = self.transactions.get(message.transaction_id)
        if transaction is not None:
            transaction.response_received(message, addr)

    def error_received(self, exc: Exception) -> None:
        if not self.refused.done():
            self.refused.set_result(exc)

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(message))

    async def request(self, message: stun.Message, addr: tuple[str, int]) -> stun.Message:
        transaction = stun.Transaction(message, addr, self)
        self.transactions[message.transaction_id] = transaction
        run = asyncio.ensure_future(transaction.run())
        try:
            racing: set[asyncio.Future[Any]] = {run, self.refused}
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                raise self.refused.result()
            response, _ = run.result()
            return response
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            del self.transactions[message.transaction_id]


async def stun_binding(host: str, port: int, timeout: float = TURN_TIMEOUT_S) -> tuple[str, int]:
    """Send a STUN Binding request over UDP; returns the address the server saw us from.

    Raises ``TimeoutError`` without an answer in ``timeout`` seconds, ``OSError`` when the
    host does not resolve or the port is closed (ICMP port unreachable).
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        transport, protocol = await loop.create_datagram_endpoint(
            _StunClient, remote_addr=(host, port)
        )
        try:
            request = stun.Message(
                message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST
            )
            response = await protocol.request(request, (host, port))
        finally:
            transport.close()
    mapped: tuple[str, int] = response.attributes["XOR-MAPPED-ADDRESS"]
    return mapped


def url_passwords(*urls: str | None) -> list[str]:
    """The passwords in ``scheme://user:password@host/...`` URLs (to blank out of errors)."""
    found: list[str] = []
    for url in urls:
        if not url:
            continue
        with contextlib.suppress(ValueError):
            password = urlsplit(url).password
            if password:
                found.extend({password, unquote(password)})
    return found


def describe_error(exc: BaseException, secrets: Sequence[str] = (), timeout: float = 0) -> str:
    """One line for an exception, with every secret in ``secrets`` replaced by ``***``."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s" if timeout else "timed out"
    lines = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message[:300]


class HealthApi:
    """The liveness and readiness endpoints of one server."""

    def __init__(
        self,
        engine: AsyncEngine,
        media: MediaBackend,
        redis_url: str | None = None,
        turn_urls: Sequence[str] = (),
    ) -> None:
        self.engine = engine
        self.media = media
        self.redis_url = redis_url
        self.redis: Redis | None = None
        self.turn: TurnAddress | None = None
        self.turn_error = ""
        if turn_urls:
            # STUN Binding over UDP where a URL allows it; coturn serves UDP and TCP alike.
            ordered = sorted(turn_urls, key=lambda url: "transport=tcp" in url or "turns:" in url)
            try:
                self.turn = parse_turn_url(ordered[0])
            except ValueError as exc:
                self.turn_error = str(exc)
        self._secrets = [p for p in (engine.url.password, *url_passwords(redis_url)) if p]
        self._lock = asyncio.Lock()
        self._last: tuple[float, dict[str, Check]] | None = None

    async def healthz(self, _request: web.Request) -> web.Response:
        """200 whenever the process serves HTTP (liveness: never restarts for a dependency)."""
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        """200 when every dependency answers; else 503 with the failing checks."""
        checks = await self.run_checks()
        ready = all(check["ok"] for check in checks.values())
        return web.json_response(
            {"status": "ready" if ready else "unready", "checks": checks},
            status=200 if ready else 503,
        )

    async def run_checks(self) -> dict[str, Check]:
        """Every check, concurrently, each bounded by its timeout (cached for CACHE_S)."""
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < CACHE_S:
                return self._last[1]
            checks = await self._run_checks()
            self._last = (time.monotonic(), checks)
            return checks

    async def _run_checks(self) -> dict[str, Check]:
        names_checks: list[tuple[str, Callable[[], Awaitable[Check]], float]] = [
            ("database", self.check_database, CHECK_TIMEOUT_S),
            ("redis", self.check_redis, CHECK_TIMEOUT_S),
            ("turn", self.check_turn, TURN_TIMEOUT_S),
            ("sfu", self.check_sfu, CHECK_TIMEOUT_S),
        ]
        results = await asyncio.gather(
            *(self._bounded(check, timeout) for _, check, timeout in names_checks)
        )
        checks = {name: result for (name, _, _), result in zip(names_checks, results, strict=True)}
        # The migrations check rides on the database check (one connection, one timeout).
        later = checks["database"].pop(
            "migrations", {"ok": False, "error": "not checked: the database did not answer"}
        )
        return {"database": checks.pop("database"), "migrations": later, **checks}

    async def _bounded(self, check: Callable[[], Awaitable[Check]], timeout: float) -> Check:
        try:
            async with asyncio.timeout(timeout):
                return await check()
        except Exception as exc:
            return {"ok": False, "error": describe_error(exc, self._secrets, timeout)}

    async def check_database(self) -> Check:
        """``SELECT 1``, then the pending migrations (nested under ``migrations``)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        waiting = await migrations.pending(self.engine)
        if waiting:
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in waiting)
            later: Check = {"ok": False, "error": f"pending: {names} (run `pulseroom migrate`)"}
        else:
            later = {"ok": True}
        return {"ok": True, "migrations": later}

    async def check_redis(self) -> Check:
        """``PING`` when REDIS_URL is set."""
        if self.redis is None:
            return {"ok": True, "detail": "not configured"}
        await self.redis.ping()
        return {"ok": True}

    async def check_turn(self) -> Check:
        """A STUN Binding request to the first TURN URL (coturn answers them unauthenticated).

        ``turns:`` and ``?transport=tcp`` URLs get a TCP connect instead.
        """
        if self.turn_error:
            return {"ok": False, "error": self.turn_error}
        if self.turn is None:
            return {"ok": True, "detail": "not configured"}
        if self.turn.transport == "udp":
            await stun_binding(self.turn.host, self.turn.port, TURN_TIMEOUT_S)
        else:
            _, writer = await asyncio.open_connection(self.turn.host, self.turn.port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return {"ok": True, "detail": str(self.turn)}

    async def check_sfu(self) -> Check:
        """Every SFU worker alive and answering (the in-process SFU always is)."""
        stats = await self.media.stats()
        workers = stats.get("workers")
        if workers is None:
            return {"ok": True, "detail": "in-process"}
        alive = sum(1 for worker in workers if worker.get("alive"))
        detail = f"{alive}/{len(workers)} workers alive"
        if alive < len(workers) or not workers:
            return {"ok": False, "error": detail}
        return {"ok": True, "detail": detail}

    def add_routes(self, app: web.Application) -> None:
        """Register ``/healthz`` and ``/readyz``, and the Redis client's cleanup context."""
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)

        async def redis_client(_app: web.Application) -> AsyncIterator[None]:
            if self.redis_url:
                self.redis = Redis.from_url(
                    self.redis_url,
                    socket_connect_timeout=CHECK_TIMEOUT_S,
                    socket_timeout=CHECK_TIMEOUT_S,
                    retry=Retry(NoBackoff(), 0),
                )
            yield
            if self.redis is not None:
                await self.redis.aclose()
                self.redis = None

        app.cleanup_ctx.append(redis_client)
