"""``pulseroom doctor``: the TURN configuration, and a real Allocate on every TURN server."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from typing import Any

from aioice import stun
from aioice.turn import TurnClientTcpProtocol, TurnClientUdpProtocol

from signaling.health import TurnAddress, parse_turn_url
from signaling.turn import TurnIssuer

from .doctor_context import PLACEHOLDER, SELF_HOSTING, Context, Result, is_local_host

TURN_TIMEOUT_S = 3.0


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
