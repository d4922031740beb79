"""The aiortc adapter fails loudly when aiortc's internals change."""

from __future__ import annotations

import aiortc
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender

from sfu import aiortc_adapter
from sfu.aiortc_adapter import AdapterError, check_compatibility


def test_installed_aiortc_is_the_supported_one() -> None:
    check_compatibility()


def test_other_aiortc_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.99.0")
    with pytest.raises(AdapterError, match=r"1\.99\.0"):
        check_compatibility()


def test_missing_internal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpSender, "_handle_rtcp_packet")
    with pytest.raises(AdapterError, match="_handle_rtcp_packet"):
        check_compatibility()


async def test_sender_internals_used_for_reports_exist() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="sendonly")
        aiortc_adapter.prepare_sender(transceiver, stream_id="publisher-1")
        aiortc_adapter.set_sender_report(
            transceiver.sender, ntp_time=2 << 32, rtp_timestamp=180000, packets=2, octets=1500
        )
        sender = transceiver.sender
        assert sender._RTCRtpSender__ntp_timestamp == 2 << 32
        assert sender._RTCRtpSender__packet_count == 2
        assert sender._RTCRtpSender__octet_count == 1500
        assert sender._RTCRtpSender__rtp_timestamp == 180000
        assert sender._stream_id == "publisher-1"
        await pc.createOffer()
        assert aiortc_adapter.negotiated_payload_type(transceiver) is not None
    finally:
        await pc.close()


def test_the_sfu_refuses_to_relay_its_own_side() -> None:
    from aiortc import RTCIceServer

    from sfu.server import SfuServer

    with pytest.raises(ValueError, match="TURN"):
        SfuServer(ice_servers=[RTCIceServer(urls="turn:turn.example.com:3478")])
    SfuServer(ice_servers=[RTCIceServer(urls="stun:stun.example.com:3478")])
