"""``pulseroom doctor [URL]``: check a deployment, one PASS / WARN / FAIL line per check.

Run it on the server host with the server's environment (``docker compose exec app
pulseroom doctor https://classes.example.com``): it reads the same settings, talks to
the same database, Redis and coturn, and then looks at the deployment from outside
through URL (default ``PULSEROOM_PUBLIC_URL``): HTTPS, ``/readyz`` and the WebSocket
upgrade the browser client needs. Every failure comes with its fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import httpx
from aioice import stun
from aioice.ice import get_host_addresses
from aioice.turn import TurnClientTcpProtocol, TurnClientUdpProtocol
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from signaling.health import TurnAddress, describe_error, parse_turn_url, url_passwords
from signaling.turn import TurnIssuer

from . import migrations
from .settings import ConfigError, Settings, load_settings
from .store import create_engine

Status = Literal["PASS", "WARN", "FAIL"]

DATABASE_TIMEOUT_S = 5.0
REDIS_TIMEOUT_S = 3.0
TURN_TIMEOUT_S = 3.0
HTTP_TIMEOUT_S = 5.0
CERT_WARN_DAYS = 14
PLACEHOLDER = "change-me"  # what .env.example's secrets start as
SELF_HOSTING = "docs/self-hosting.md"


@dataclass(frozen=True, slots=True)
class Result:
    """One check's outcome; ``fix`` says what to do when it is not a PASS."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Context:
    """What every check gets: the settings, the address people open, one engine."""

    settings: Settings
    url: str
    engine: AsyncEngine
    secrets: list[str]

    @property
    def host(self) -> str:
        """The host name (or address) in the URL."""
        return urlsplit(self.url).hostname or ""

    @property
    def local(self) -> bool:
        """Whether the URL only reaches this machine (where plain HTTP is a secure context)."""
        return is_local_host(self.host)

    def error(self, exc: BaseException, timeout: float = 0) -> str:
        """One line for ``exc``, with every configured password blanked out."""
        return describe_error(exc, self.secrets, timeout)


Check = Callable[[Context], Awaitable[Result | list[Result]]]


def is_local_host(host: str) -> bool:
    """``localhost``, ``*.localhost`` or a loopback address: what browsers trust over HTTP."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# -- the checks ---------------------------------------------------------------------------


async def check_secret(ctx: Context) -> Result:
    """Links are signed with PULSEROOM_SECRET, not a per-host generated file."""
    secret = ctx.settings.secret
    if secret and PLACEHOLDER in secret:
        return Result(
            "signing secret",
            "FAIL",
            "PULSEROOM_SECRET is still the example value from .env.example",
            "set it to a random value: `openssl rand -hex 32`, then restart the server "
            "(links issued so far stop working)",
        )
    if secret:
        return Result("signing secret", "PASS", "PULSEROOM_SECRET is set")
    where = ctx.settings.data_dir / "secret"
    if ctx.local:
        return Result("signing secret", "PASS", f"generated into {where} (fine on localhost)")
    return Result(
        "signing secret",
        "WARN",
        f"PULSEROOM_SECRET is not set: links are signed with a secret generated into {where}; "
        "losing that file (a new volume, another server) invalidates every link",
        "set PULSEROOM_SECRET to a random value (`openssl rand -hex 32`); to keep today's "
        f"links valid, use the contents of {where}",
    )


async def check_database(ctx: Context) -> Result:
    """The database answers ``SELECT 1`` (and says what it is)."""
    where = ctx.engine.url.render_as_string(hide_password=True)
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S), ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            if ctx.engine.dialect.name != "postgresql":
                return Result("database", "PASS", f"SQLite at {where}")
            version = (await conn.execute(text("SHOW server_version"))).scalar()
            timescale = (
                await conn.execute(
                    text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
                )
            ).scalar()
    except Exception as exc:
        if ctx.engine.dialect.name == "postgresql":
            fix = (
                "start PostgreSQL (`docker compose ps db`) and check DATABASE_URL: host, "
                "port, user, password and database name"
            )
        else:
            fix = "check that PULSEROOM_DATA_DIR exists and is writable by the server"
        return Result("database", "FAIL", f"{where}: {ctx.error(exc, DATABASE_TIMEOUT_S)}", fix)
    flavour = f"PostgreSQL {str(version).split()[0]}"
    flavour += f", TimescaleDB {timescale}" if timescale else " (no TimescaleDB extension)"
    return Result("database", "PASS", f"{flavour} at {where}")


async def check_migrations(ctx: Context) -> Result:
    """No migration is waiting."""
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S):
            waiting = await migrations.pending(ctx.engine)
    except Exception as exc:
        return Result(
            "migrations",
            "FAIL",
            f"cannot read schema_migrations: {ctx.error(exc, DATABASE_TIMEOUT_S)}",
            "fix the database connection first (see the database check)",
        )
    if waiting:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in waiting)
        return Result(
            "migrations",
            "FAIL",
            f"{len(waiting)} pending: {names}",
            "run `pulseroom migrate` with this DATABASE_URL (`docker compose exec app "
            "pulseroom migrate`), or restart the server: it applies them at start",
        )
    known = migrations.discover(ctx.engine.dialect.name)
    return Result("migrations", "PASS", f"schema current ({len(known)} applied)")


async def check_redis(ctx: Context) -> Result:
    """Redis answers PING when REDIS_URL is set."""
    url = ctx.settings.redis_url
    if not url:
        return Result("redis", "PASS", "not used (REDIS_URL unset: Socket.IO in memory)")
    client = Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            await client.ping()
            info = await client.info("server")
    except Exception as exc:
        return Result(
            "redis",
            "FAIL",
            f"no PING answer from {redact_url(url)}: {ctx.error(exc, REDIS_TIMEOUT_S)}",
            "start Redis (`docker compose ps redis`) or fix REDIS_URL; the Socket.IO "
            "manager publishes every event through it",
        )
    finally:
        await client.aclose()
    return Result("redis", "PASS", f"Redis {info.get('redis_version', '?')} at {redact_url(url)}")


async def check_turn_config(ctx: Context) -> Result:
    """TURN URLs and the shared secret are set, with a TCP fallback."""
    settings = ctx.settings
    fix_unset = (
        "run coturn (docker-compose.yml does, with turn/coturn.conf) and set "
        "PULSEROOM_TURN_URLS and PULSEROOM_TURN_SECRET (coturn's static-auth-secret)"
    )
    if not settings.turn_urls:
        return Result(
            "turn config",
            "WARN",
            "PULSEROOM_TURN_URLS is not set: participants behind strict NATs or firewalls "
            "that block UDP cannot join",
            fix_unset,
        )
    if settings.turn_secret and PLACEHOLDER in settings.turn_secret:
        return Result(
            "turn config",
            "FAIL",
            "the TURN secret is still the example value from .env.example",
            "set TURN_SECRET in .env (or PULSEROOM_TURN_SECRET and coturn's "
            "static-auth-secret) to `openssl rand -hex 32` and restart the app and coturn",
        )
    addresses = []
    for url in settings.turn_urls:
        try:
            addresses.append(parse_turn_url(url))
        except ValueError as exc:
            return Result(
                "turn config", "FAIL", str(exc), "fix PULSEROOM_TURN_URLS (see the README)"
            )
    kinds = sorted({("tls" if a.secure else a.transport) for a in addresses})
    detail = (
        f"{len(addresses)} URL(s) ({', '.join(kinds)}), "
        f"credentials valid for {settings.turn_ttl // 60} min"
    )
    if kinds == ["udp"]:
        return Result(
            "turn config",
            "WARN",
            f"{detail}: UDP only, so networks that allow only TCP cannot reach the relay",
            "add turn:HOST:3478?transport=tcp (and, with a certificate for the TURN name, "
            "turns:HOST:443?transport=tcp) to PULSEROOM_TURN_URLS",
        )
    return Result("turn config", "PASS", detail)


class _ProbeUdp(TurnClientUdpProtocol):
    """aioice's TURN client over UDP that also notices ICMP "port unreachable"."""

    def __init__(self, server: tuple[str, int], username: str, password: str) -> None:
        super().__init__(
            server, username=username, password=password, lifetime=600, channel_refresh_time=300
        )
        self.refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def error_received(self, exc: Exception) -> None:
        if not self.refused.done():
            self.refused.set_result(exc)


async def turn_allocate(address: TurnAddress, username: str, password: str) -> tuple[str, int]:
    """A real TURN Allocate with these credentials, deleted again; returns the relay address."""
    loop = asyncio.get_running_loop()
    server = (address.host, address.port)
    transport: asyncio.BaseTransport
    protocol: TurnClientUdpProtocol | TurnClientTcpProtocol
    refused: asyncio.Future[Exception] = loop.create_future()
    if address.transport == "udp":
        transport, udp = await loop.create_datagram_endpoint(
            lambda: _ProbeUdp(server, username, password), remote_addr=server
        )
        protocol, refused = udp, udp.refused
    else:
        context = ssl.create_default_context() if address.secure else None
        transport, protocol = await loop.create_connection(
            lambda: TurnClientTcpProtocol(
                server, username=username, password=password, lifetime=600,
                channel_refresh_time=300,
            ),
            host=address.host, port=address.port, ssl=context,
        )  # fmt: skip
    try:
        allocate = asyncio.ensure_future(protocol.connect())
        try:
            racing: set[asyncio.Future[Any]] = {allocate, refused}
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if not allocate.done():
                raise refused.result()
            relayed = allocate.result()
        finally:
            allocate.cancel()
            await asyncio.gather(allocate, return_exceptions=True)
        with contextlib.suppress(stun.TransactionError, TimeoutError):
            async with asyncio.timeout(1.0):
                await protocol.delete()
        return relayed
    finally:
        transport.close()


async def check_turn_servers(ctx: Context) -> list[Result]:
    """Each TURN URL: an Allocate with credentials from TurnIssuer (proves the secret)."""
    settings = ctx.settings
    if not settings.turn_urls or not settings.turn_secret:
        return []
    issuer = TurnIssuer(tuple(settings.turn_urls), settings.turn_secret, settings.turn_ttl)
    credentials = issuer.issue("doctor")
    seen: list[TurnAddress] = []
    for url in settings.turn_urls:
        with contextlib.suppress(ValueError):  # the config check reports bad URLs
            address = parse_turn_url(url)
            if address not in seen:
                seen.append(address)

    async def one(address: TurnAddress) -> Result:
        name = f"turn {address}"
        try:
            async with asyncio.timeout(TURN_TIMEOUT_S):
                relayed = await turn_allocate(
                    address, credentials["username"], credentials["credential"]
                )
        except stun.TransactionFailed as exc:
            return _turn_refusal(name, exc)
        except TimeoutError:
            return Result(
                name,
                "FAIL",
                f"no answer within {TURN_TIMEOUT_S:g} s: port closed / coturn down",
                f"start coturn (`docker compose ps coturn`) and open {address.port}/"
                f"{address.transport} in the firewall (see {SELF_HOSTING})",
            )
        except ConnectionRefusedError:
            return Result(
                name,
                "FAIL",
                f"connection refused on {address.host}:{address.port}/{address.transport}: "
                "coturn down (nothing listens on that port)",
                "start coturn (`docker compose up -d coturn`) and check its listening-port",
            )
        except ssl.SSLError as exc:
            return Result(
                name,
                "FAIL",
                f"TLS to coturn failed: {ctx.error(exc)}",
                "give coturn a certificate for this host name (cert=/pkey= in coturn.conf)",
            )
        except (OSError, stun.TransactionError, ConnectionError) as exc:
            return Result(
                name,
                "FAIL",
                ctx.error(exc, TURN_TIMEOUT_S),
                "check that the TURN host name resolves to this server and coturn runs",
            )
        detail = f"allocated relay {relayed[0]}:{relayed[1]} with issued credentials"
        relay_ip = ipaddress.ip_address(relayed[0])
        if not relay_ip.is_global and not is_local_host(address.host):
            return Result(
                name,
                "WARN",
                f"{detail}, but the relay address is not public: remote participants "
                "cannot reach it",
                "coturn behind NAT: set external-ip=PUBLIC_IP/PRIVATE_IP in coturn.conf",
            )
        return Result(name, "PASS", detail)

    return list(await asyncio.gather(*(one(address) for address in seen)))


def _turn_refusal(name: str, exc: stun.TransactionFailed) -> Result:
    code = exc.response.error_code
    if code == 401:
        return Result(
            name,
            "FAIL",
            "coturn refused the credentials (401): secret differs from coturn's static-auth-secret",
            "give both the same value: PULSEROOM_TURN_SECRET and coturn's "
            "static-auth-secret (both from TURN_SECRET with docker compose), then restart "
            "both; if they match, the two hosts' clocks differ by more than PULSEROOM_TURN_TTL",
        )
    if code in (486, 508):
        return Result(
            name,
            "FAIL",
            f"coturn refused the allocation ({exc}): quota or relay ports exhausted",
            "raise user-quota / total-quota or widen min-port..max-port in coturn.conf",
        )
    return Result(name, "FAIL", f"coturn refused the allocation ({exc})", "see coturn's log")


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def _certificate_expiry(host: str, port: int) -> float:
    """When the certificate ``host:port`` presents expires (unix time), verified."""
    _, writer = await asyncio.open_connection(
        host, port, ssl=ssl.create_default_context(), server_hostname=host
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        return float(ssl.cert_time_to_seconds(cert["notAfter"])) if cert else float("inf")
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def check_https(ctx: Context) -> Result:
    """The URL is https:// with a certificate browsers accept (plain HTTP only on localhost)."""
    parts = urlsplit(ctx.url)
    if parts.scheme == "http":
        if ctx.local:
            return Result(
                "https",
                "PASS",
                f"plain HTTP on {ctx.host}: browsers allow the camera there, on this machine only",
            )
        return Result(
            "https",
            "FAIL",
            f"{ctx.url} is plain HTTP: browsers only allow camera/microphone on HTTPS "
            "(or localhost)",
            "put a TLS proxy (Caddy, nginx) in front and set PULSEROOM_PUBLIC_URL=https://... "
            f"(see {SELF_HOSTING})",
        )
    try:
        async with httpx.AsyncClient(verify=True, timeout=HTTP_TIMEOUT_S) as client:
            await client.get(f"{ctx.url}/healthz")
        expires = await _certificate_expiry(ctx.host, parts.port or 443)
    except Exception as exc:
        cause = _ssl_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Result(
                "https",
                "FAIL",
                f"the certificate of {ctx.host} is not valid: {cause.verify_message}",
                "use a certificate from a public CA for this name (Caddy gets one itself; "
                "or certbot), with the full chain",
            )
        if cause is not None:
            return Result(
                "https", "FAIL", f"TLS failed: {ctx.error(cause)}", "check the proxy's TLS setup"
            )
        return Result(
            "https",
            "FAIL",
            f"cannot fetch {ctx.url}/healthz: {ctx.error(exc, HTTP_TIMEOUT_S)}",
            "check DNS for the name, the firewall (443/tcp) and that the proxy runs",
        )
    days = (expires - time.time()) / 86400
    when = time.strftime("%Y-%m-%d", time.gmtime(expires)) if days < 10**5 else "never"
    if days < CERT_WARN_DAYS:
        return Result(
            "https",
            "WARN",
            f"valid certificate, but it expires in {days:.0f} days ({when})",
            "check that renewal works (Caddy renews itself; certbot: `certbot renew --dry-run`)",
        )
    return Result("https", "PASS", f"valid certificate for {ctx.host}, expires {when}")


async def check_readyz(ctx: Context) -> Result:
    """The URL serves PulseRoom, and it is ready (``GET /readyz``)."""
    try:
        async with httpx.AsyncClient(verify=False, timeout=HTTP_TIMEOUT_S) as client:
            response = await client.get(f"{ctx.url}/readyz")
    except Exception as exc:
        return Result(
            "serves pulseroom",
            "FAIL",
            f"cannot fetch {ctx.url}/readyz: {ctx.error(exc, HTTP_TIMEOUT_S)}",
            "is the server running (`docker compose ps app`) and does the proxy forward to "
            "it (127.0.0.1:8080)?",
        )
    try:
        body: Any = response.json()
        checks: dict[str, dict[str, Any]] = body["checks"]
    except (ValueError, KeyError, TypeError):
        return Result(
            "serves pulseroom",
            "FAIL",
            f"{ctx.url}/readyz answered {response.status_code} without PulseRoom's checks",
            "point the proxy at PulseRoom (127.0.0.1:8080), or upgrade a server that has "
            "no /readyz",
        )
    if response.status_code == 200:
        return Result("serves pulseroom", "PASS", f"ready: {', '.join(sorted(checks))}")
    failing = "; ".join(
        f"{name}: {check.get('error', 'failed')}"
        for name, check in sorted(checks.items())
        if not check.get("ok")
    )
    return Result(
        "serves pulseroom",
        "FAIL",
        f"not ready ({response.status_code}): {failing}",
        "fix what the server reports (its own view of the same services), see its log "
        "(`docker compose logs app`)",
    )


async def check_websocket(ctx: Context) -> Result:
    """The Socket.IO WebSocket upgrade gets through (the browser client uses nothing else)."""
    parts = urlsplit(ctx.url)
    ws_url = urlunsplit(
        parts._replace(
            scheme="wss" if parts.scheme == "https" else "ws",
            path=parts.path + "/socket.io/",
            query="EIO=4&transport=websocket",
        )
    )
    try:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.ws_connect(ws_url, ssl=False) as ws,
        ):
            message = await ws.receive(timeout=HTTP_TIMEOUT_S)
    except aiohttp.WSServerHandshakeError as exc:
        return Result(
            "websocket",
            "FAIL",
            f"the WebSocket upgrade to {ws_url} was refused (HTTP {exc.status})",
            "the proxy must pass the upgrade: nginx needs `proxy_http_version 1.1;` and the "
            f"Upgrade/Connection headers (see {SELF_HOSTING})",
        )
    except Exception as exc:
        return Result(
            "websocket",
            "FAIL",
            f"cannot open {ws_url}: {ctx.error(exc, HTTP_TIMEOUT_S)}",
            "check that the server runs and the proxy forwards /socket.io/",
        )
    if message.type is not aiohttp.WSMsgType.TEXT or not str(message.data).startswith("0"):
        return Result(
            "websocket",
            "FAIL",
            f"{ws_url} opened but did not speak Engine.IO (got {message.type.name})",
            "point the proxy's /socket.io/ location at PulseRoom",
        )
    return Result("websocket", "PASS", "Socket.IO over WebSocket works through this URL")


def _is_global(address: str) -> bool:
    return ipaddress.ip_address(address.split("%")[0]).is_global


async def check_public_address(ctx: Context) -> Result:
    """The URL's host resolves, and the SFU has an address remote participants can reach."""
    port = urlsplit(ctx.url).port or 443
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            ctx.host, port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        return Result(
            "public address",
            "FAIL",
            f"{ctx.host} does not resolve: {ctx.error(exc)}",
            f"add DNS A (and AAAA) records for {ctx.host} pointing at this server",
        )
    resolved = sorted({str(info[4][0]) for info in infos})
    if ctx.local:
        return Result(
            "public address",
            "PASS",
            f"{ctx.host} is local ({', '.join(resolved)}): classes reachable from this machine",
        )
    if not any(_is_global(a) for a in resolved):
        return Result(
            "public address",
            "WARN",
            f"{ctx.host} resolves to {', '.join(resolved)}, no public address: only people "
            "on this network can reach it",
            f"point the DNS A/AAAA records of {ctx.host} at the server's public address "
            "(fine if classes are meant for this network only)",
        )
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=True)
    public = [a for a in addresses if _is_global(a)]
    if public:
        return Result(
            "public address",
            "PASS",
            f"{ctx.host} -> {', '.join(resolved)}; media on {', '.join(public)}",
        )
    if ctx.settings.sfu_stun_urls:
        return Result(
            "public address",
            "PASS",
            f"{ctx.host} -> {', '.join(resolved)}; no public interface address, the SFU asks "
            f"{', '.join(ctx.settings.sfu_stun_urls)} for its public one (1:1 NAT)",
        )
    relay = "" if ctx.settings.turn_urls else " (and TURN is not configured)"
    return Result(
        "public address",
        "WARN",
        f"{ctx.host} -> {', '.join(resolved)}, but this machine has no public interface "
        f"address ({', '.join(addresses) or 'none'}): the SFU offers only these as ICE "
        f"candidates, so remote participants can connect only through TURN{relay}",
        "behind 1:1 NAT (a cloud VM), set PULSEROOM_SFU_STUN_URLS (e.g. "
        '["stun:stun.l.google.com:19302"]) so the SFU learns its public address; or keep '
        "TURN configured and allow coturn to relay to the SFU's private address "
        "(allowed-peer-ip in coturn.conf)",
    )


CHECKS: tuple[Check, ...] = (
    check_secret,
    check_database,
    check_migrations,
    check_redis,
    check_turn_config,
    check_turn_servers,
    check_https,
    check_readyz,
    check_websocket,
    check_public_address,
)


def _summary(settings: Settings) -> str:
    return (
        f"database: {'PostgreSQL' if settings.database_url else 'SQLite'}, "
        f"socket.io: {'Redis' if settings.redis_url else 'in-memory'}, "
        f"TURN URLs: {len(settings.turn_urls)}, SFU workers: {settings.sfu_workers}"
    )


async def _guarded(check: Check, ctx: Context) -> list[Result]:
    try:
        outcome = await check(ctx)
    except Exception as exc:  # a bug in a check must not hide the others
        name = getattr(check, "__name__", "check").removeprefix("check_").replace("_", " ")
        return [Result(name, "FAIL", f"the check itself failed: {ctx.error(exc)}", "")]
    return outcome if isinstance(outcome, list) else [outcome]


async def diagnose(url: str | None = None) -> list[Result]:
    """Run every check against the environment's settings and ``url``; results in order."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return [
            Result(
                "configuration",
                "FAIL",
                str(exc),
                "fix the named variables in the environment (.env with docker compose)",
            )
        ]
    target = (url or settings.base_url).rstrip("/")
    if urlsplit(target).scheme not in ("http", "https") or not urlsplit(target).hostname:
        return [
            Result(
                "configuration",
                "FAIL",
                f"{target!r} is not an http:// or https:// URL",
                "give the address people open, e.g. https://classes.example.com",
            )
        ]
    engine = create_engine(settings.effective_database_url)
    secrets = [
        s
        for s in (
            engine.url.password,
            settings.secret,
            settings.turn_secret,
            *url_passwords(settings.redis_url),
        )
        if s
    ]
    ctx = Context(settings, target, engine, secrets)
    try:
        outcomes = await asyncio.gather(*(_guarded(check, ctx) for check in CHECKS))
    finally:
        await engine.dispose()
    results = [Result("configuration", "PASS", _summary(settings))]
    for outcome in outcomes:
        results.extend(outcome)
    return results


def format_results(results: list[Result]) -> str:
    """Aligned lines: status, name, detail, and the fix below each non-PASS."""
    width = max(len(r.name) for r in results)
    lines = []
    for r in results:
        lines.append(f"{r.status}  {r.name:<{width}}  {r.detail}")
        if r.fix and r.status != "PASS":
            lines.append(f"{'':4}  {'':<{width}}  fix: {r.fix}")
    return "\n".join(lines)


def main(url: str | None = None, as_json: bool = False) -> int:
    """Print the results; 1 if any check failed."""
    results = asyncio.run(diagnose(url))
    failed = any(r.status == "FAIL" for r in results)
    if as_json:
        print(json.dumps({"ok": not failed, "results": [asdict(r) for r in results]}, indent=2))
    else:
        print(format_results(results))
    return 1 if failed else 0
