"""Who a request comes from, and how many connections each address may hold.

Behind a reverse proxy (Caddy in the compose kit) every request comes from the proxy's
address, so rate limits keyed by address would count the whole internet as one client.
The proxy says who it forwarded for in ``X-Forwarded-For``; anyone else can write that
header too, so it is believed only from a configured trusted proxy
(``PULSEROOM_TRUSTED_PROXIES``). The middleware puts the address it settles on into
``request.remote`` (aiohttp's ``clone(remote=...)``), so the login throttle, the
class-creation limit, the connection cap and the access log all see the same client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR ranges (``127.0.0.1``, ``10.0.0.0/8``, ``::1``); ValueError
    names the first that is neither."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or range: {value!r}") from None
    return tuple(networks)


class ClientAddress:
    """The client's address from the socket's peer and, when that peer is a trusted
    proxy, from ``X-Forwarded-For``."""

    def __init__(self, trusted: Sequence[str] = ()) -> None:
        self._trusted = parse_networks(trusted)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def of(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str | None:
        """The client: ``peer`` unless it is a trusted proxy; then the nearest address in
        ``X-Forwarded-For`` (read from the right: each proxy appends the one it got the
        request from) that is not a trusted proxy itself. Entries left of that one were
        written by whoever sent the request and prove nothing. A malformed entry stops
        the walk at the last address known good."""
        if peer is None or not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
        client = peer
        for hop in reversed(hops):
            try:
                hop = str(ipaddress.ip_address(hop))
            except ValueError:
                break
            client = hop
            if not self._is_trusted(hop):
                break
        return client

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every request's ``remote`` is its client's address (see ``of``)."""
        if self._trusted:
            client = self.of(request.remote, request.headers.getall("X-Forwarded-For", ()))
            if client is not None and client != request.remote:
                request = request.clone(remote=client)
        return await handler(request)


class ConnectionCap:
    """At most ``limit`` live connections per client address (one household or gym
    behind one NAT address holds many: the default leaves room for a full class)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._address_of: dict[str, str] = {}  # sid -> address
        self._count: dict[str, int] = {}  # address -> live connections
        self.refused = 0  # for /metrics

    def admit(self, sid: str, address: str) -> bool:
        """Count ``sid`` against ``address``; False (and nothing counted) when full."""
        if sid in self._address_of:
            return True
        if self._count.get(address, 0) >= self.limit:
            self.refused += 1
            return False
        self._address_of[sid] = address
        self._count[address] = self._count.get(address, 0) + 1
        return True

    def release(self, sid: str) -> None:
        """``sid`` disconnected; idempotent."""
        address = self._address_of.pop(sid, None)
        if address is None:
            return
        left = self._count[address] - 1
        if left:
            self._count[address] = left
        else:
            del self._count[address]

    def connections(self, address: str) -> int:
        """Live connections counted for ``address``."""
        return self._count.get(address, 0)
