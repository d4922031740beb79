"""The aiortc adapter fails loudly when aiortc's internals change."""

from __future__ import annotations

import aiortc
import pylibsrtp
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


def _srtp_pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    key = bytes(range(30))
    profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    send = pylibsrtp.Session(
        pylibsrtp.Policy(
            key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
        )
    )
    receive = pylibsrtp.Session(
        pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    )
    return send, receive


def _rtp(seq: int, size: int = 900) -> bytes:
    return bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(8) + bytes(range(256)) * (size // 256)


def test_direct_srtp_is_pylibsrtp_without_its_python() -> None:
    """What the direct protect makes, pylibsrtp unprotects, and the other way round; the
    errors are pylibsrtp's (a forged packet, a replayed one, one too long)."""
    send, receive = _srtp_pair()
    protect, unprotect = aiortc_adapter.srtp_protect(send), aiortc_adapter.srtp_unprotect(receive)
    for seq in range(1, 4):
        sealed = protect(_rtp(seq))
        assert sealed != _rtp(seq) and len(sealed) == len(_rtp(seq)) + 10
        assert receive.unprotect(sealed) == _rtp(seq)
    for seq in range(4, 7):
        assert unprotect(send.protect(_rtp(seq))) == _rtp(seq)
    sealed = protect(_rtp(7))
    forged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(pylibsrtp.Error, match="authentication failure"):
        unprotect(forged)
    assert unprotect(sealed) == _rtp(7)  # the forgery changed nothing
    with pytest.raises(pylibsrtp.Error, match="replay check failed"):
        unprotect(sealed)
    with pytest.raises(ValueError, match="too long"):
        protect(_rtp(8, size=1536))


def test_other_pylibsrtp_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pylibsrtp, "__version__", "9.0.0")
    with pytest.raises(AdapterError, match=r"pylibsrtp 1\.0\.0, found 9\.0\.0"):
        check_compatibility()
