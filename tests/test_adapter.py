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
        aiortc_adapter.note_sent(
            transceiver.sender, ntp_time=1 << 32, rtp_timestamp=90000, octets=1000
        )
        aiortc_adapter.note_sent(
            transceiver.sender, ntp_time=2 << 32, rtp_timestamp=180000, octets=500
        )
        sender = transceiver.sender
        assert sender._RTCRtpSender__packet_count == 2
        assert sender._RTCRtpSender__octet_count == 1500
        assert sender._RTCRtpSender__rtp_timestamp == 180000
        assert sender._stream_id == "publisher-1"
        await pc.createOffer()
        assert aiortc_adapter.negotiated_payload_type(transceiver) is not None
    finally:
        await pc.close()
