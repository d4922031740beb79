"""Stereo Opus negotiation (sfu/opus.py): the SDP rules alone, then through the SFU
with a real aiortc publisher offering music and a subscriber receiving the offer.

The browser side (the instructor's page offering stereo, a participant answering it
and hearing two channels) is tests/test_browser_music.py.
"""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from sfu import opus
from sfu.backend import TrackInfo
from sfu.server import SfuServer

# What Chromium offers for audio, trimmed to the lines that matter here.
CHROMIUM_AUDIO = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9\r\n"
    "a=mid:0\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:63 red/48000/2\r\n"
    "a=fmtp:63 111/111\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "a=mid:1\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
)
MUSIC = "stereo=1;sprop-stereo=1;maxaveragebitrate=128000"


def with_fmtp(sdp: str, payload_type: str, params: str) -> str:
    """``sdp`` with its Opus fmtp replaced (as the browser client does for music)."""
    lines = [
        f"a=fmtp:{payload_type} {params}" if line.startswith(f"a=fmtp:{payload_type} ") else line
        for line in sdp.split("\r\n")
    ]
    return "\r\n".join(lines)


def fmtp_of(sdp: str, mid: str) -> dict[str, str]:
    return opus.offered_parameters(sdp).get(mid, {})


def test_offered_parameters_reads_the_opus_fmtp_of_each_audio_section() -> None:
    music = with_fmtp(CHROMIUM_AUDIO, "111", f"minptime=10; useinbandfec=1; {MUSIC}")
    assert opus.offered_parameters(music) == {
        "0": {
            "minptime": "10",
            "useinbandfec": "1",
            "stereo": "1",
            "sprop-stereo": "1",
            "maxaveragebitrate": "128000",
        }
    }
    assert opus.offered_parameters(CHROMIUM_AUDIO) == {"0": {"minptime": "10", "useinbandfec": "1"}}
    # No Opus in the section: nothing to say about it.
    assert opus.offered_parameters(CHROMIUM_AUDIO.replace("opus/48000/2", "PCMU/8000")) == {}


def test_publish_parameters_answer_stereo_and_cap_the_rate() -> None:
    assert opus.publish_parameters({"minptime": "10", "useinbandfec": "1"}) == {}
    assert opus.publish_parameters({"sprop-stereo": "1"}) == {"stereo": 1, "sprop-stereo": 1}
    assert opus.publish_parameters({"stereo": "1", "maxaveragebitrate": "510000"}) == {
        "stereo": 1,
        "sprop-stereo": 1,
        "maxaveragebitrate": opus.MAX_AVERAGE_BITRATE,
    }
    assert opus.publish_parameters({"maxaveragebitrate": "100"}) == {
        "maxaveragebitrate": opus.MIN_AVERAGE_BITRATE
    }
    assert opus.publish_parameters({"stereo": "0", "maxaveragebitrate": "lots"}) == {}


def test_describe_tracks_adds_or_merges_the_fmtp_of_named_sections_only() -> None:
    stereo = {"0": {"stereo": 1, "sprop-stereo": 1, "maxaveragebitrate": 128000}}
    described = opus.describe_tracks(CHROMIUM_AUDIO, stereo)
    assert f"a=fmtp:111 minptime=10;useinbandfec=1;{MUSIC}\r\n" in described
    assert described.count("a=fmtp:") == CHROMIUM_AUDIO.count("a=fmtp:")
    # aiortc writes no fmtp for its Opus: the line is added after the rtpmap.
    bare = CHROMIUM_AUDIO.replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "")
    assert f"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 {MUSIC}\r\n" in opus.describe_tracks(
        bare, stereo
    )
    # A value already there is replaced, not repeated.
    again = opus.describe_tracks(described, stereo)
    assert again == described
    assert opus.describe_tracks(CHROMIUM_AUDIO, {"0": {}}) == CHROMIUM_AUDIO
    assert opus.describe_tracks(CHROMIUM_AUDIO, {"1": stereo["0"]}) == CHROMIUM_AUDIO


def test_stereo_parameters_describe_only_stereo_producers() -> None:
    assert opus.stereo_parameters({}) == {}
    assert opus.stereo_parameters({"stereo": 1, "maxaveragebitrate": 128000}) == {
        "stereo": 1,
        "sprop-stereo": 1,
        "maxaveragebitrate": 128000,
    }
    assert opus.is_stereo({"sprop-stereo": "1"}) and not opus.is_stereo({"stereo": "0"})


class OfferCatcher:
    """A client that records the subscribe offers it is sent and never answers them."""

    def __init__(self) -> None:
        self.offers: asyncio.Queue[tuple[str, list[TrackInfo]]] = asyncio.Queue()

    async def send_offer(self, sdp: str, tracks: list[TrackInfo]) -> None:
        self.offers.put_nowait((sdp, tracks))

    async def send_layers(self, rids: list[str]) -> None:
        pass


async def publish_audio(sfu: SfuServer, participant_id: str, fmtp: str | None) -> str:
    """Publish an aiortc audio track whose offer says ``fmtp`` for Opus; the answer."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = str(pc.localDescription.sdp)
        if fmtp is not None:
            offer = opus.describe_tracks(offer, {"0": opus.parse_fmtp(fmtp)})
        await sfu.join("music", participant_id, "host", OfferCatcher(), gallery=False)
        answer = await sfu.publish("music", participant_id, offer)
        # The answer is one a real peer accepts.
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return answer
    finally:
        await pc.close()


async def test_the_sfu_answers_music_in_stereo_and_tells_subscribers() -> None:
    sfu = SfuServer()
    try:
        answer = await publish_audio(sfu, "coach", f"{MUSIC.replace('128000', '256000')}")
        assert fmtp_of(answer, "0") == {
            "stereo": "1",
            "sprop-stereo": "1",
            "maxaveragebitrate": "128000",
        }, answer
        (producer,) = sfu.published("music", "coach")
        assert opus.is_stereo(producer.codec.parameters if producer.codec else {})

        listener = OfferCatcher()
        await sfu.join("music", "ben", "participant", listener, gallery=False)
        sdp, tracks = await asyncio.wait_for(listener.offers.get(), 10)
        assert [(t.participant_id, t.kind) for t in tracks] == [("coach", "audio")]
        assert fmtp_of(sdp, tracks[0].mid) == {
            "stereo": "1",
            "sprop-stereo": "1",
            "maxaveragebitrate": "128000",
        }, sdp
    finally:
        await sfu.close()


async def test_a_mono_publisher_stays_mono() -> None:
    sfu = SfuServer()
    try:
        answer = await publish_audio(sfu, "coach", None)
        assert fmtp_of(answer, "0") == {}, answer
        listener = OfferCatcher()
        await sfu.join("music", "ben", "participant", listener, gallery=False)
        sdp, tracks = await asyncio.wait_for(listener.offers.get(), 10)
        assert "stereo" not in sdp and "maxaveragebitrate" not in sdp
        assert tracks[0].kind == "audio"
    finally:
        await sfu.close()
