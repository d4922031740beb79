"""NAT traversal against a real coturn running the repo's turn/coturn.conf.

The credentials the server hands out are accepted, expired or tampered ones are not;
coturn refuses to relay towards loopback or private addresses other than the media
server's; and a participant whose UDP to the SFU is dropped (or who has no UDP at
all) still joins and gets media, through a relay candidate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import TurnClientTcpProtocol, TurnClientUdpProtocol

from signaling.turn import turn_password
from tests.conftest import start_server, stop_server
from tests.coturn import CONF, Coturn, running_coturn
from tests.loopback import loopback_server
from tests.netns import Host, local_address, netns_host
from tests.peers import join, run_bot
from tests.sio_client import Client

TurnClient = TurnClientUdpProtocol | TurnClientTcpProtocol

# The relay range coturn.conf sets: relayed addresses must come from it.
PORTS = tuple(
    int(line.split("=", 1)[1])
    for name in ("min-port=", "max-port=")
    for line in CONF.read_text().splitlines()
    if line.startswith(name)
)


@pytest.fixture(scope="module")
def media_address() -> Iterator[str]:
    """An address of this machine in a denied range: the media server's (allowed-peer-ip)."""
    with local_address() as address:
        yield address


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory, media_address: str) -> Iterator[Coturn]:
    """coturn on loopback (IPv4 and IPv6), relaying towards ``media_address`` only.

    ``keep``: a client that comes over IPv6 gets an IPv6 relay, so that IPv6 peers can
    be tried too (coturn's default, IPv4, answers them 443 family mismatch instead).
    """
    with running_coturn(
        tmp_path_factory.mktemp("coturn"),
        ["127.0.0.1", "::1"],
        allowed_peers=[media_address],
        extra=["--allocation-default-address-family=keep"],
    ) as server:
        yield server


# -- a TURN client: aioice's, as aiortc uses it ------------------------------------------


async def connect(
    server: tuple[str, int], username: str, password: str, transport: str
) -> TurnClient:
    """A TURN client protocol connected (not yet allocated) to ``server``."""
    loop = asyncio.get_running_loop()
    if transport == "tcp":
        _, tcp = await loop.create_connection(
            lambda: TurnClientTcpProtocol(server, username, password, 600, 500),
            host=server[0],
            port=server[1],
        )
        return tcp
    _, udp = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(server, username, password, 600, 500), remote_addr=server
    )
    return udp


@contextlib.asynccontextmanager
async def allocation(
    server: tuple[str, int], username: str, password: str, transport: str = "udp"
) -> AsyncIterator[tuple[TurnClient, tuple[str, int], float]]:
    """An allocation: (client, relayed address, seconds it took); deleted afterwards."""
    protocol = await connect(server, username, password, transport)
    started = time.perf_counter()
    try:
        relayed = await protocol.connect()
    except BaseException:
        protocol.transport.close()
        raise
    try:
        yield protocol, relayed, time.perf_counter() - started
    finally:
        await protocol.delete()


async def refused_with(server: tuple[str, int], username: str, password: str) -> int | None:
    """The error code coturn refuses an Allocate with (None: it allocated)."""
    protocol = await connect(server, username, password, "udp")
    try:
        await protocol.connect()
    except stun.TransactionFailed as exc:
        protocol.transport.close()
        return exc.response.error_code
    await protocol.delete()  # not left to count against the user's quota
    return None


async def permission_error(client: TurnClient, host: str) -> int | None:
    """CreatePermission for ``host``: None when granted, else the error code."""
    request = stun.Message(
        message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST
    )
    request.attributes["XOR-PEER-ADDRESS"] = (host, 9)
    try:
        await client.request_with_retry(request)
    except stun.TransactionFailed as exc:
        return exc.response.error_code
    return None


class Datagrams(asyncio.DatagramProtocol):
    """Collects datagrams; with ``echo``, sends each one back."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: Any = None  # selector datagram transports are not DatagramTransports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, addr))
        if self.echo and self.transport is not None:
            self.transport.sendto(b"echo:" + data, addr)


@contextlib.asynccontextmanager
async def udp_peer(address: str) -> AsyncIterator[tuple[Datagrams, int]]:
    """An echoing UDP socket on ``address``: (protocol, port)."""
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        lambda: Datagrams(echo=True), local_addr=(address, 0)
    )
    try:
        yield peer, int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


# -- the configuration and the credentials ------------------------------------------------


def test_coturn_takes_the_repo_config_without_complaint(coturn: Coturn, media_address: str) -> None:
    assert not coturn.log_lines(r"Bad configuration|CONFIG ERROR|[Uu]nknown option"), coturn.log()
    denied = [line for line in CONF.read_text().splitlines() if line.startswith("denied-peer-ip=")]
    assert len(coturn.log_lines(r"Black listing: ")) == len(denied)
    assert coturn.log_lines(rf"White listing: {media_address}$")
    assert coturn.log_lines(r"Default realm: pulseroom\.local$")
    max_bps = next(
        line.split("=", 1)[1]
        for line in CONF.read_text().splitlines()
        if line.startswith("max-bps=")
    )
    assert coturn.log_lines(rf"{max_bps} bytes per second allowed per session")
    assert coturn.log_lines(r"--no-tcp-relay")
    # No warnings at all (the TLS listener is off, with no-tls/no-dtls, until configured).
    assert not coturn.log_lines(r"WARNING"), coturn.log_lines(r"WARNING")


async def test_credentials_from_the_join_ack_get_relays_over_udp_and_tcp(
    coturn: Coturn, tmp_path: Path
) -> None:
    urls = [coturn.url("udp"), coturn.url("tcp")]
    # The server in this event loop (tests/loopback.py): only its join ack is looked at.
    async with loopback_server(
        tmp_path,
        PULSEROOM_TURN_URLS=urls,
        PULSEROOM_TURN_SECRET=coturn.secret,
        PULSEROOM_TURN_TTL=600,
    ) as server:
        client = Client(server.url)
        try:
            room = await server.create_room("TURN")
            await client.connect()
            ack = await client.join(str(room["join_link"]), "Ann")
        finally:
            await client.close()
    assert ack["ok"], ack
    (entry,) = [s for s in ack["ice_servers"] if s.get("username")]
    assert entry["urls"] == urls
    expiry, participant = entry["username"].split(":")
    assert participant == ack["you"]["id"]
    assert 590 <= int(expiry) - time.time() <= 601
    timings = {}
    for transport in ("udp", "tcp"):
        async with allocation(
            (coturn.address, coturn.port), entry["username"], entry["credential"], transport
        ) as (_, relayed, seconds):
            assert relayed[0] == "127.0.0.1" and PORTS[0] <= relayed[1] <= PORTS[1], relayed
            timings[transport] = round(seconds * 1000, 1)
    print("allocation ms (401 challenge + authenticated Allocate):", timings)
    assert coturn.log_lines(rf"new, realm=<pulseroom\.local>, username=<{entry['username']}>")


def _tampered(password: str) -> str:
    raw = bytearray(base64.b64decode(password))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "case", ["expired", "tampered password", "other participant", "other secret"]
)
async def test_expired_or_tampered_credentials_are_refused(coturn: Coturn, case: str) -> None:
    issuer = coturn.issuer(ttl=600)
    now = time.time()
    good = issuer.issue("ann1234567890", now=now)
    username, password = good["username"], good["credential"]
    if case == "expired":  # correctly signed, but its expiry passed a minute ago
        old = issuer.issue("ann1234567890", now=now - 660)
        username, password = old["username"], old["credential"]
        assert password == turn_password(coturn.secret, username)
    elif case == "tampered password":
        password = _tampered(password)
    elif case == "other participant":  # Ann's password with Bob's name
        username = username.split(":")[0] + ":bob123456789"
    else:
        password = turn_password("not-the-coturn-secret", username)
    server = (coturn.address, coturn.port)
    assert await refused_with(server, username, password) == 401
    # The genuine credentials still work: the refusal is about the change.
    assert await refused_with(server, good["username"], good["credential"]) is None


# -- where coturn may relay to -------------------------------------------------------------


DENIED_IPV4 = [
    "127.0.0.1", "127.0.0.53", "10.1.2.3", "172.16.5.4", "192.168.1.1", "169.254.1.1",
    "100.64.0.1", "0.0.0.0", "192.0.2.2", "198.51.100.7", "224.0.0.251",
]  # fmt: skip
DENIED_IPV6 = ["::1", "fd00::5", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1"]


async def test_relays_go_to_the_media_server_only(coturn: Coturn, media_address: str) -> None:
    credentials = coturn.issuer().issue("ann1234567890")
    user, password = credentials["username"], credentials["credential"]
    async with allocation((coturn.address, coturn.port), user, password) as (client, _, _):
        refused = {host: await permission_error(client, host) for host in DENIED_IPV4}
        assert refused == {host: 403 for host in DENIED_IPV4}
        # allowed-peer-ip is exact: the media server's address, not its neighbours.
        neighbour = media_address.rsplit(".", 1)[0] + f".{int(media_address.rsplit('.', 1)[1]) ^ 1}"
        assert await permission_error(client, neighbour) == 403
        assert await permission_error(client, media_address) is None
        # Public addresses too: in an SFU nobody needs a relay to anyone but the media
        # server, and an open relay is a free proxy on the self-hoster's bandwidth.
        for public in ("1.1.1.1", "8.8.8.8", "93.184.216.34"):
            assert await permission_error(client, public) == 403, public

        # What aiortc does to send (ChannelBind): refused for loopback, nothing arrives.
        receiver = client.receiver = Datagrams()
        async with udp_peer("127.0.0.1") as (loopback, port):
            with pytest.raises(stun.TransactionFailed) as refusal:
                await client.send_data(b"ping", ("127.0.0.1", port))
            assert refusal.value.response.error_code == 403
            await asyncio.sleep(0.2)
            assert loopback.received.empty()
        # ... and relayed both ways to the media server's address.
        async with udp_peer(media_address) as (media, port):
            await client.send_data(b"ping", (media_address, port))
            data, source = await asyncio.wait_for(media.received.get(), 2)
            assert data == b"ping" and source[0] == "127.0.0.1"  # coturn's relay address
            answer, peer = await asyncio.wait_for(receiver.received.get(), 2)
            assert answer == b"echo:ping" and peer == (media_address, port)

    async with allocation(("::1", coturn.port), user, password) as (client, relayed, _):
        assert relayed[0] == "::1"
        refused = {host: await permission_error(client, host) for host in DENIED_IPV6}
        assert refused == {host: 403 for host in DENIED_IPV6}
        assert await permission_error(client, "2606:4700::1111") == 403  # public, refused too
    assert coturn.log_lines(r"A peer IP 10\.1\.2\.3 denied in the range: ")


# -- a class through the relay -------------------------------------------------------------


def link_via(link: str, host: Host) -> str:
    """The same link, addressed to the server as ``host`` sees it."""
    base, rest = link.split("/r/", 1)
    return f"http://{host.gateway}:{base.rsplit(':', 1)[1]}/r/{rest}"


def video_from(report: dict[str, Any], publisher: str) -> dict[str, Any]:
    return next(t for t in report["tracks"] if t["publisher"] == publisher and t["kind"] == "video")


async def class_through_turn(tmp_path: Path, transport: str) -> None:
    """A coach on this machine and a phone whose UDP reaches coturn only (or nothing).

    The SFU runs here and gathers a host candidate on every address of the machine;
    coturn listens and relays on the phone's side and may relay only to
    ``media_address`` (allowed-peer-ip), so that is the pair that must win.
    """
    with (
        local_address() as media_address,
        netns_host() as phone,
        running_coturn(tmp_path / "turn", [phone.gateway], allowed_peers=[media_address]) as turn,
    ):
        phone.block_udp(allow=(phone.gateway, turn.port) if transport == "udp" else None)
        server = start_server(
            tmp_path,
            PULSEROOM_HOST="0.0.0.0",
            PULSEROOM_TURN_URLS=json.dumps([turn.url(transport)]),
            PULSEROOM_TURN_SECRET=turn.secret,
        )
        try:
            room = server.create_room("Behind a firewall")
            coach = await join(str(room["host_link"]), "Coach")
            try:
                link = link_via(str(room["join_link"]), phone)
                report = await run_bot(link, "Phone", 6, prefix=phone.command())
                coach_report = coach.report()
            finally:
                await coach.stop()
        finally:
            stop_server(server)
        dropped = phone.udp_dropped()
        user = rf"\d+:{report['you']['id']}"
        relayed = turn.usage(user, sessions=2)  # the phone's publish and subscribe
        bound = turn.log_lines(rf"user <{user}>: incoming packet CHANNEL_BIND processed, success")
        forbidden = turn.log_lines(rf"user <{user}>: incoming packet CHANNEL_BIND .* 403")
        over_tcp = turn.log_lines(rf"tcp or tls connected to: {phone.address}:")

    at_phone, at_coach = video_from(report, "Coach"), video_from(coach_report, "Phone")
    print(
        f"\nTURN over {transport}: phone's pairs {report['ice']}\n"
        f"  coach's video at the phone: {at_phone['frames']} frames, {at_phone['bytes']} B, "
        f"first after {at_phone['time_to_first_frame_s']} s, loss {at_phone['loss_percent']} %\n"
        f"  phone's video at the coach: {at_coach['frames']} frames, {at_coach['bytes']} B\n"
        f"  coturn: {relayed}, channel binds ok {len(bound)} / refused {len(forbidden)}\n"
        f"  UDP the phone's firewall dropped: {dropped} packets"
    )
    assert not report["errors"], report["errors"]
    for side in ("publish", "subscribe"):
        pair = report["ice"][side]
        assert pair is not None, report["ice"]
        assert pair["local"] == "relay" and pair["relay_protocol"] == transport, pair
        assert pair["remote"] == "host", pair
        assert pair["remote_address"].startswith(f"{media_address}:"), pair
    # Media went both ways: the phone saw the coach, the coach saw the phone ...
    assert at_phone["frames"] >= 30 and at_coach["frames"] >= 15, (at_phone, at_coach)
    # ... and all of it passed through coturn (its byte counts include SRTP and
    # channel headers, the bots count RTP payload).
    assert relayed.sessions == 2, relayed
    assert relayed.to_client >= at_phone["bytes"] and relayed.to_peers >= at_coach["bytes"]
    # The direct path was tried and the firewall dropped it. (Whether the relay pairs
    # towards the SFU's other addresses, all in denied ranges here, were tried before
    # the allowed one won depends on their order: refusals are counted, not required.)
    assert dropped > 0
    assert len(bound) >= 2, turn.log()[-3000:]
    assert bool(over_tcp) == (transport == "tcp")


@pytest.mark.timeout(60)
async def test_participant_without_udp_to_the_sfu_gets_media_through_a_turn_relay(
    tmp_path: Path,
) -> None:
    await class_through_turn(tmp_path, "udp")


@pytest.mark.timeout(60)
async def test_participant_without_any_udp_gets_media_through_turn_over_tcp(
    tmp_path: Path,
) -> None:
    await class_through_turn(tmp_path, "tcp")
