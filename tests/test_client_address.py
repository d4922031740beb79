"""The client's address behind a trusted proxy, and the cap on connections per address:
the parsing on its own, then a real server (in this process) with real Socket.IO
clients and HTTP requests that carry X-Forwarded-For."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import socketio

from signaling.client_address import ClientAddress, ConnectionCap, parse_networks
from tests.loopback import loopback_server


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    behind = ClientAddress(["127.0.0.1", "10.0.0.0/8"])
    # Not from a proxy: the header is whatever the client wrote.
    assert behind.of("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"
    assert ClientAddress().of("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"
    # From the proxy: the nearest untrusted hop, read from the right; what the client
    # put in front of it proves nothing.
    assert behind.of("127.0.0.1", ["198.51.100.1"]) == "198.51.100.1"
    assert behind.of("127.0.0.1", ["6.6.6.6, 198.51.100.1"]) == "198.51.100.1"
    assert behind.of("127.0.0.1", ["6.6.6.6", "198.51.100.1, 10.1.2.3"]) == "198.51.100.1"
    # Only proxies in the chain: the farthest of them. No header: the proxy itself.
    assert behind.of("127.0.0.1", ["10.9.9.9, 10.1.2.3"]) == "10.9.9.9"
    assert behind.of("127.0.0.1", []) == "127.0.0.1"
    # A malformed hop ends the walk at the last good address.
    assert behind.of("127.0.0.1", ["198.51.100.1, not-an-ip"]) == "127.0.0.1"
    assert behind.of("127.0.0.1", ["garbage, 198.51.100.1"]) == "198.51.100.1"
    assert behind.of("127.0.0.1", [" 2001:db8::1 "]) == "2001:db8::1"
    with pytest.raises(ValueError, match="not an IP address"):
        parse_networks(["127.0.0.1", "localhost"])


def test_the_cap_counts_live_connections_per_address() -> None:
    cap = ConnectionCap(2)
    assert cap.admit("a", "198.51.100.1") and cap.admit("b", "198.51.100.1")
    assert not cap.admit("c", "198.51.100.1")
    assert cap.admit("a", "198.51.100.1")  # already counted: not twice
    assert cap.admit("d", "198.51.100.2")
    cap.release("a")
    cap.release("a")  # idempotent
    assert cap.connections("198.51.100.1") == 1
    assert cap.admit("c", "198.51.100.1")
    assert cap.refused == 1


async def _connect(url: str, forwarded_for: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        url, transports=["websocket"], headers={"X-Forwarded-For": forwarded_for}, wait_timeout=10
    )
    return client


async def _refused(url: str, forwarded_for: str) -> None:
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError) as refused:
        await client.connect(
            url, transports=["websocket"], headers={"X-Forwarded-For": forwarded_for},
            wait_timeout=10,
        )  # fmt: skip
    assert "failed to connect" in str(refused.value)


async def test_connections_per_client_address_are_capped_behind_the_proxy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with loopback_server(
        tmp_path, PULSEROOM_TRUSTED_PROXIES=["127.0.0.1"], PULSEROOM_MAX_CONNECTIONS_PER_ADDRESS=2
    ) as server:
        first = [await _connect(server.url, "198.51.100.1") for _ in range(2)]
        try:
            await _refused(server.url, "198.51.100.1")
            assert "refused a connection from 198.51.100.1: 2 connections" in caplog.text
            # Another client behind the same proxy is another address.
            other = await _connect(server.url, "198.51.100.2")
            await other.disconnect()
            # A connection that ends gives its place back.
            await first[0].disconnect()
            again = await _connect(server.url, "198.51.100.1")
            await again.disconnect()
        finally:
            for client in first:
                await client.disconnect()


async def test_without_a_trusted_proxy_the_header_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with loopback_server(tmp_path, PULSEROOM_MAX_CONNECTIONS_PER_ADDRESS=2) as server:
        first = [await _connect(server.url, f"198.51.100.{n}") for n in (1, 2)]
        try:
            # Every request comes from 127.0.0.1, whatever the header claims.
            await _refused(server.url, "198.51.100.3")
            assert "refused a connection from 127.0.0.1: 2 connections" in caplog.text
        finally:
            for client in first:
                await client.disconnect()


async def test_failed_logins_are_counted_per_forwarded_address(tmp_path: Path) -> None:
    """Behind the proxy, one address's guessing does not lock out everyone else's logins
    (all of them reach the app from the proxy's address)."""
    async with (
        loopback_server(tmp_path, PULSEROOM_TRUSTED_PROXIES=["127.0.0.1"]) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):

        async def login(n: int, address: str) -> int:
            response = await http.post(
                "/api/auth/login",
                json={"email": f"guess{n}@example.com", "password": "wrong password"},
                headers={"X-Forwarded-For": address},
            )
            return response.status_code

        assert [await login(n, "198.51.100.1") for n in range(20)] == [401] * 20
        assert await login(20, "198.51.100.1") == 429
        assert await login(21, "198.51.100.2") == 401
