"""Simulcast's pure parts: SDP negotiation, the VP8 descriptor, layer allocation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu import layers as layers_module
from sfu import packet as rtp
from sfu import simulcast, vp8
from sfu.layers import UP_MARGIN, Demand, allocate, preferred_layer, shortfall
from sfu.stats import ForwardingStats

OFFER = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendonly", "a=rtpmap:111 opus/48000/2",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:1",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendonly", "a=rtpmap:96 VP8/90000",
    "a=rid:q send", "a=rid:h send", "a=rid:f send max-width=1280", "a=simulcast:send q;~h;f,x",
    "",
])  # fmt: skip
ANSWER = "\r\n".join([
    "v=0", "o=- 3 4 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=recvonly", "a=mid:0",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=recvonly",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "a=mid:1",
    "a=rtpmap:96 VP8/90000", "",
])  # fmt: skip


def test_the_offered_layers_are_read_low_to_high() -> None:
    (layers,) = simulcast.offered_layers(OFFER).values()
    assert layers == simulcast.OfferedLayers("1", ("q", "h", "f"), 10, 11)


def test_the_answer_accepts_them_in_the_same_section_only() -> None:
    answer = simulcast.answer_layers(ANSWER, simulcast.offered_layers(OFFER))
    audio, video = answer.split("m=video")
    assert "a=rid" not in audio and "a=simulcast" not in audio
    for line in (
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "a=rid:q recv", "a=rid:h recv", "a=rid:f recv", "a=simulcast:recv q;h;f",
    ):  # fmt: skip
        assert f"\r\n{line}\r\n" in video, line
    assert answer.endswith("\r\n") and "\n\n" not in answer.replace("\r\n", "\n")


def test_no_simulcast_without_the_stream_id_extension_or_with_one_layer() -> None:
    no_rid = OFFER.replace("a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n", "")
    assert simulcast.offered_layers(no_rid) == {}
    one = OFFER.replace("a=simulcast:send q;~h;f,x", "a=simulcast:send q")
    assert simulcast.offered_layers(one) == {}
    undeclared = OFFER.replace("a=rid:h send\r\n", "").replace(
        "a=rid:f send max-width=1280\r\n", ""
    )
    assert simulcast.offered_layers(undeclared) == {}
    assert simulcast.answer_layers(ANSWER, {}) == ANSWER


@given(st.text(max_size=400))
def test_any_offer_text_is_read_without_error(text: str) -> None:
    simulcast.offered_layers(text)
    simulcast.answer_layers(text, simulcast.offered_layers(OFFER))


def test_a_packets_rid_is_read_from_its_extensions() -> None:
    block = rtp.one_byte_block([(2, b"\x01\x02\x03"), (10, b"h")])
    data = rtp.write(0, 0, 96, 1, 2, 3, b"", block, b"\x90")
    _m, _pt, _s, _t, _ssrc, profile, start, end = rtp.read(data)
    assert simulcast.rid_of(data, profile, start, end, 10) == "h"
    assert simulcast.rid_of(data, profile, start, end, 11) is None


def keyframe(picture_id: int, tl0: int, height: int) -> bytes:
    """The first packet of a VP8 keyframe with a 15-bit picture id, TL0PICIDX and TID."""
    descriptor = bytes([0x90, 0xE0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0, 0x20])
    header = bytes([0x50, 0x2A, 0x01, 0x9D, 0x01, 0x2A]) + (640).to_bytes(2, "little")
    return descriptor + header + height.to_bytes(2, "little") + bytes(20)


def test_a_keyframe_gives_its_size_and_numbers() -> None:
    assert vp8.read(keyframe(0x1234, 77, 360)) == (360, 0x1234, 77, 0, 6)
    delta = bytearray(keyframe(5, 6, 360))
    delta[6] |= 0x01  # an inter frame
    assert vp8.read(bytes(delta))[:3] == (0, 5, 6)
    middle = bytearray(keyframe(5, 6, 360))
    middle[0] = 0x80  # not the start of a partition
    assert vp8.read(bytes(middle))[0] == 0
    assert vp8.read(bytes([0x10, 0x00]))[1:] == (-1, -1, -1, 1)  # no extensions
    upper = bytearray(delta)
    upper[5] = 0x80  # a picture of temporal layer 2
    assert vp8.read(bytes(upper))[3] == 2
    assert vp8.starts_frame(bytes(delta)) and not vp8.starts_frame(bytes(middle))


@given(st.integers(0, 0x7FFF), st.integers(0, 255), st.integers(0, 0x7FFF), st.integers(0, 255))
def test_renumbering_wraps_and_keeps_the_rest(pid: int, tl0: int, dp: int, dt: int) -> None:
    packet = keyframe(pid, tl0, 720)
    out = vp8.rewrite(memoryview(packet), dp, dt)
    assert vp8.read(out) == (720, (pid + dp) & 0x7FFF, (tl0 + dt) & 0xFF, 0, 6)
    assert out[6:] == packet[6:] and len(out) == len(packet)


HEIGHTS = [180, 360, 720]


def test_the_layer_a_tile_calls_for() -> None:
    assert preferred_layer(HEIGHTS, None, None) == 2  # size unknown: the best
    assert preferred_layer(HEIGHTS, 160, None) == 0  # a thumbnail
    assert preferred_layer(HEIGHTS, 330, None) == 1
    assert preferred_layer(HEIGHTS, 1080, None) == 2  # bigger than any: the biggest
    assert preferred_layer(HEIGHTS, 1080, 360) == 1  # the viewer's data saver wins
    assert preferred_layer(HEIGHTS, None, 90) == 0
    assert preferred_layer([180, 0, 0], 700, None) == 2  # unknown sizes: not ruled out
    assert preferred_layer([0, 0, 0], None, 360) == 0  # under a cap, unknown is too big


RATES = [150_000, 500_000, 1_500_000]


def test_the_estimate_is_shared_lowest_first() -> None:
    two = [Demand(RATES, 0, 2), Demand(RATES, 0, 2)]
    assert allocate(300_000, two) == [0, 0]
    assert allocate(150_000 + int(500_000 * UP_MARGIN), two) == [1, 0]
    assert allocate(int(500_000 * UP_MARGIN) * 2, two) == [1, 1]
    assert allocate(10_000_000, two) == [2, 2]
    assert allocate(10_000_000, [Demand(RATES, 0, 1)]) == [1]  # not above what it needs
    assert allocate(0, two) == [0, 0]  # the lowest layer even when nothing fits


def test_keeping_a_layer_needs_no_margin_and_layers_not_sent_are_skipped() -> None:
    assert allocate(1_500_000, [Demand(RATES, 2, 2)]) == [2]  # it has it, it fits: kept
    assert allocate(1_500_000, [Demand(RATES, 1, 2)]) == [1]  # to get it needs the margin
    assert allocate(10_000_000, [Demand([150_000, 0, 1_500_000], 0, 2)]) == [2]
    assert allocate(10_000_000, [Demand([0, 0, 0], -1, 2)]) == [-1]


def test_the_shortfall_is_what_the_cheapest_raise_lacks() -> None:
    two = [Demand(RATES, 0, 2), Demand(RATES, 0, 1)]
    targets = allocate(300_000, two)
    assert targets == [0, 0]
    assert shortfall(300_000, two, targets) == int(500_000 * UP_MARGIN) - 150_000
    assert shortfall(10_000_000, two, allocate(10_000_000, two)) == 0  # all have theirs
    done = [Demand(RATES, 2, 2)]
    assert shortfall(1_500_000, done, allocate(1_500_000, done)) == 0


@given(
    st.integers(0, 20_000_000),
    st.lists(
        st.tuples(st.lists(st.integers(0, 3_000_000), min_size=1, max_size=4), st.integers(-1, 3)),
        min_size=1, max_size=8,
    ),
)  # fmt: skip
def test_an_allocation_never_exceeds_the_budget_beyond_the_lowest_layers(
    budget: int, raw: list[tuple[list[int], int]]
) -> None:
    demands = [Demand(rates, min(cur, len(rates) - 1), len(rates) - 1) for rates, cur in raw]
    targets = allocate(budget, demands)
    floor = 0
    spent = 0
    for demand, target in zip(demands, targets, strict=True):
        lowest = next((i for i, r in enumerate(demand.rates) if r), -1)
        assert target == -1 if lowest < 0 else lowest <= target <= demand.preferred
        if lowest >= 0:
            floor += demand.rates[lowest]
            spent += demand.rates[target]
            assert demand.rates[target] > 0
    assert spent <= max(budget, floor)


def test_a_remb_is_unpacked_once_for_all_the_streams_it_names() -> None:
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

    from sfu.consumer import remb_of

    packet = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(750_000, [11, 12, 13])
    )
    first = remb_of(packet)
    assert first == (750_000, frozenset({11, 12, 13}))
    packet.fci = b"garbage"  # a second reader gets the first reading, not a new parse
    assert remb_of(packet) is first
    bad = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=b"REMB")
    assert remb_of(bad) == (0, frozenset())


async def test_nacks_right_after_a_failed_probe_do_not_shed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loss a probe's padding caused is NACKed a round trip and a queue later: a
    burst then ends nothing more and sheds nothing (the slow line in
    test_simulcast_links lost 40 % of its frame rate to such shedding); a burst after
    PROBE_AFTERMATH_S is the link's own again."""
    clock = [1000.0]
    monkeypatch.setattr(layers_module.time, "monotonic", lambda: clock[0])
    control = layers_module.LayerControl(list, ForwardingStats())
    try:
        assert control.on_loss() is True  # no probe: the media sheds
        control._probing_since = clock[0]  # a probe is padding (as _probe starts one)
        assert control.on_loss() is False and not control.probing  # it ends, nothing shed
        clock[0] += layers_module.PROBE_AFTERMATH_S / 2
        assert control.on_loss() is False  # the overflow's NACKs arriving late
        clock[0] += layers_module.PROBE_AFTERMATH_S
        assert control.on_loss() is True
    finally:
        await control.aclose()
