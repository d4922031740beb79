"""``pulseroom doctor`` from outside: HTTPS, ``/readyz``, the WebSocket upgrade, the address.

These look at the deployment through the URL people open, as a browser would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import httpx
from aioice.ice import get_host_addresses

from .doctor_context import SELF_HOSTING, Context, Result

HTTP_TIMEOUT_S = 5.0
CERT_WARN_DAYS = 14


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
