"""The SFU never tries remote candidates on loopback, link-local or multicast addresses,
nor, when told so, in private ranges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from pulseroom.app import SFU, create_app
from pulseroom.settings import load_settings
from sfu.candidates import CandidatePolicy, refused, strip_refused
from sfu.server import SfuServer


@pytest.mark.parametrize(
    ("address", "is_refused"),
    [
        ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("169.254.169.254", True),
        ("fe80::1", True), ("224.0.0.251", True), ("ff02::1", True), ("0.0.0.0", True),
        ("::ffff:127.0.0.1", True), ("10.0.0.5", False), ("192.168.1.20", False),
        ("203.0.113.7", False), ("2001:db8::7", False), ("host-1234.local", False),
    ],
)  # fmt: skip
def test_which_addresses_are_refused(address: str, is_refused: bool) -> None:
    assert refused(address) is is_refused


def test_an_offer_loses_only_its_refused_candidates() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host",
            "a=candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host",
            "a=candidate:3 1 udp 2122260223 169.254.169.254 80 typ host",
            "a=candidate:4 1 udp 1686052607 203.0.113.7 50002 typ srflx raddr 0.0.0.0 rport 0",
            "",
        ]
    )
    kept = strip_refused(sdp)
    assert "192.168.1.20" in kept and "203.0.113.7" in kept
    assert "127.0.0.1" not in kept and "169.254.169.254" not in kept
    assert kept.count("\r\n") == sdp.count("\r\n") - 2


class _Quiet:
    """A participant's signaling that nobody reads (this one only publishes)."""

    async def send_offer(self, sdp: str, tracks: Any) -> None:
        pass

    async def send_layers(self, rids: list[str]) -> None:
        pass


async def test_the_sfu_tries_only_the_candidates_it_may() -> None:
    """A real aiortc offer with a loopback and a link-local candidate written in beside a
    LAN one, then a loopback candidate trickled: the SFU's ICE transport holds the LAN
    candidate only (else it would probe its own host's port 6379, or the metadata
    service at 169.254.169.254)."""
    sfu = SfuServer()
    client = RTCPeerConnection()
    try:
        client.addTransceiver("audio", direction="sendonly")
        await client.setLocalDescription(await client.createOffer())
        lines = [
            line
            for line in client.localDescription.sdp.split("\r\n")
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        ]
        at = next(i for i, line in enumerate(lines) if line.startswith("a=mid:")) + 1
        lines[at:at] = [
            "a=candidate:1 1 udp 2122260223 10.9.8.7 50000 typ host",
            "a=candidate:2 1 udp 2122260223 127.0.0.1 6379 typ host",
            "a=candidate:3 1 udp 2122260223 169.254.169.254 80 typ host",
        ]
        await sfu.join("room", "ann", "participant", _Quiet(), False)
        await sfu.publish("room", "ann", "\r\n".join(lines))
        await sfu.add_ice_candidate(
            "room", "ann", "publish", "candidate:4 1 udp 2122260223 127.0.0.1 5432 typ host",
            "0", 0,
        )  # fmt: skip
        peer = sfu.rooms["room"].participants["ann"]
        assert peer._publish_pc is not None
        transport = peer._publish_pc.getTransceivers()[0].receiver.transport.transport
        assert {c.ip for c in transport.getRemoteCandidates()} == {"10.9.8.7"}
    finally:
        await client.close()
        await sfu.close()


@pytest.mark.parametrize(
    ("address", "is_refused"),
    [
        ("10.0.0.5", True), ("172.16.3.4", True), ("192.168.1.20", True), ("fd00::5", True),
        ("100.64.1.1", True), ("::ffff:192.168.1.20", True), ("127.0.0.1", True),
        ("203.0.113.7", False), ("2001:db8::7", False), ("172.32.0.1", False),
        ("host-1234.local", False),
    ],
)  # fmt: skip
def test_an_internet_facing_server_refuses_private_ranges_too(
    address: str, is_refused: bool
) -> None:
    assert refused(address, private=False) is is_refused
    assert (
        CandidatePolicy(private=False).refuses(
            f"candidate:1 1 udp 2122260223 {address} 50000 typ host"
        )
        is is_refused
    )


async def test_the_setting_reaches_the_sfus_peers(tmp_path: Path) -> None:
    """PULSEROOM_SFU_PRIVATE_CANDIDATES=false: the server's SFU drops a trickled private
    candidate and keeps a public one."""
    app = create_app(
        load_settings(
            PULSEROOM_DATA_DIR=str(tmp_path), PULSEROOM_SFU_WORKERS=0,
            PULSEROOM_SFU_PRIVATE_CANDIDATES="false",
        )
    )  # fmt: skip
    sfu = app[SFU]
    assert sfu.candidate_policy == CandidatePolicy(private=False)
    client = RTCPeerConnection()
    try:
        client.addTransceiver("audio", direction="sendonly")
        await client.setLocalDescription(await client.createOffer())
        offer = "\r\n".join(
            line
            for line in client.localDescription.sdp.split("\r\n")
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )  # trickled below instead
        await sfu.join("room", "ann", "participant", _Quiet(), False)
        await sfu.publish("room", "ann", offer)
        for address in ("192.168.1.20", "203.0.113.7"):
            await sfu.add_ice_candidate(
                "room", "ann", "publish", f"candidate:9 1 udp 2122260223 {address} 50000 typ host",
                "0", 0,
            )  # fmt: skip
        peer = sfu.rooms["room"].participants["ann"]
        assert peer._publish_pc is not None
        transport = peer._publish_pc.getTransceivers()[0].receiver.transport.transport
        remote = {c.ip for c in transport.getRemoteCandidates()}
        assert "203.0.113.7" in remote and "192.168.1.20" not in remote, remote
    finally:
        await client.close()
        await sfu.close()
