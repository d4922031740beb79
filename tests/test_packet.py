"""Byte-level RTP rewriting, checked against fixtures and against aiortc's own parser."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from sfu import packet
from sfu.packet import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, RtpError

# A browser's ids (publisher side) and aiortc's offer ids (subscriber side) differ.
BROWSER_IDS = {
    URI_MID: 4,
    URI_ABS_SEND_TIME: 2,
    URI_AUDIO_LEVEL: 1,
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01": 3,
}
SFU_IDS = {URI_MID: 1, URI_AUDIO_LEVEL: 2, URI_ABS_SEND_TIME: 3}


def aiortc_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()]
        )
    )
    return extensions


def test_read_a_plain_packet() -> None:
    data = bytes.fromhex("80e0 0102 00000064 deadbeef") + b"payload"
    assert packet.read(data) == (1, 96, 0x0102, 100, 0xDEADBEEF, 0, 12, 12)


def test_read_skips_csrcs_and_finds_the_extension_block() -> None:
    data = (
        bytes.fromhex("92 60 0001 00000002 00000003")  # CC=2, X=1
        + bytes.fromhex("11111111 22222222")  # two CSRCs
        + bytes.fromhex("bede 0001 10 ff 0000")  # one 1-byte element id 1, then padding
        + b"xyz"
    )
    marker, pt, seq, ts, ssrc, profile, start, payload_start = packet.read(data)
    assert (marker, pt, seq, ts, ssrc, profile) == (0, 0x60, 1, 2, 3, 0xBEDE)
    assert data[payload_start:] == b"xyz"
    assert packet.elements(data, profile, start, payload_start) == [(1, b"\xff")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x60\x00", "too short"),
        (bytes.fromhex("40600001000000020000000300"), "version"),
        (bytes.fromhex("90600001000000020000000300"), "extension header truncated"),
        (bytes.fromhex("906000010000000200000003bede0005"), "longer than the packet"),
        (bytes.fromhex("a06000010000000200000003") + b"\x00\x09", "padding"),
    ],
)
def test_malformed_packets_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError, match=reason):
        packet.read(data)


def test_two_byte_elements_are_read() -> None:
    block = bytes.fromhex("0102aabb 00 0300")  # id 1 len 2, padding, id 3 len 0
    assert packet.elements(block, 0x1000, 0, len(block)) == [(1, b"\xaa\xbb"), (3, b"")]


def test_truncated_element_is_refused() -> None:
    with pytest.raises(RtpError):
        packet.elements(bytes.fromhex("13aa"), 0xBEDE, 0, 2)


def test_no_extensions_gives_a_plain_header() -> None:
    data = packet.write(0, 1, 111, 7, 8, 9, b"", b"", b"opus")
    assert data == bytes.fromhex("80ef 0007 00000008 00000009") + b"opus"


@given(
    marker=st.integers(0, 1),
    payload_type=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(min_size=1, max_size=300),
    padding=st.integers(0, 40),
    abs_send_time=st.none() | st.integers(0, 0xFFFFFF),
    audio_level=st.none() | st.tuples(st.booleans(), st.integers(0, 127)),
    transport_seq=st.none() | st.integers(0, 0xFFFF),
    mid=st.text(alphabet="0123456789", min_size=1, max_size=3),
    out=st.tuples(
        st.integers(0, 127),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
    ),
)
def test_rewrite_matches_aiortc(
    marker: int,
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    padding: int,
    abs_send_time: int | None,
    audio_level: tuple[bool, int] | None,
    transport_seq: int | None,
    mid: str,
    out: tuple[int, int, int, int],
) -> None:
    source = RtpPacket(
        payload_type=payload_type,
        marker=marker,
        sequence_number=seq,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=payload,
    )
    source.padding_size = padding
    source.extensions.mid = "7"
    source.extensions.abs_send_time = abs_send_time
    source.extensions.audio_level = audio_level
    source.extensions.transport_sequence_number = transport_seq
    data = source.serialize(aiortc_map(BROWSER_IDS))

    m, pt, s, ts, ss, profile, start, payload_start = packet.read(data)
    assert (m, pt, s, ts, ss) == (marker, payload_type, seq, timestamp, ssrc)
    shared = packet.ExtensionMap(BROWSER_IDS, SFU_IDS).shared_block(
        data, profile, start, payload_start
    )
    own = packet.mid_element(SFU_IDS[URI_MID], mid)
    out_pt, out_seq, out_ts, out_ssrc = out
    rewritten = packet.write(
        data[0] & packet.PADDING_BIT,
        m,
        out_pt,
        out_seq,
        out_ts,
        out_ssrc,
        own,
        shared,
        memoryview(data)[payload_start:],
    )

    parsed = RtpPacket.parse(rewritten, aiortc_map(SFU_IDS))
    assert (parsed.marker, parsed.payload_type, parsed.sequence_number) == (marker, out_pt, out_seq)
    assert (parsed.timestamp, parsed.ssrc) == (out_ts, out_ssrc)
    assert parsed.payload == payload and parsed.padding_size == padding
    assert parsed.extensions.mid == mid
    assert parsed.extensions.abs_send_time == abs_send_time
    assert parsed.extensions.audio_level == audio_level
    # Publisher-connection-specific extensions are not forwarded.
    assert parsed.extensions.transport_sequence_number is None


def reference_shared_block(ids: dict[str, int], data: bytes, start: int, end: int) -> bytes:
    """What ``shared_block`` must return, from ``elements`` and ``one_byte_block``."""
    renumber = {ids[u]: SFU_IDS[u] for u in packet.FORWARDED_URIS if u in ids}
    kept = [(renumber[i], v) for i, v in packet.elements(data, 0xBEDE, start, end) if i in renumber]
    kept.sort(key=lambda item: item[0] != SFU_IDS[URI_ABS_SEND_TIME])
    return packet.one_byte_block(kept) if kept else b""


one_byte_items = st.lists(
    st.one_of(
        st.just(b"\x00"),  # padding between elements
        st.builds(
            lambda i, v: bytes([(i << 4) | (len(v) - 1)]) + v,
            st.one_of(st.sampled_from([1, 2, 3]), st.integers(1, 14)),  # mostly known ids
            st.binary(min_size=1, max_size=16),
        ),
    ),
    max_size=8,
)


@given(items=one_byte_items, cut=st.integers(0, 3))
def test_the_one_byte_fast_path_forwards_what_the_elements_say(
    items: list[bytes], cut: int
) -> None:
    """Any one-byte block, also a truncated one: the same bytes (abs-send-time first, then
    the others in order, padded) and the same audio level as the general path."""
    body = b"".join(items)
    data = b"\x90\x60" + bytes(10) + body[: max(0, len(body) - cut)]
    start, end = 12, len(data)
    fast = packet.ExtensionMap(BROWSER_IDS, SFU_IDS)
    try:
        expected = reference_shared_block(BROWSER_IDS, data, start, end)
    except RtpError:
        with pytest.raises(RtpError):
            fast.shared_block(data, 0xBEDE, start, end)
        return
    assert fast.shared_block(data, 0xBEDE, start, end) == expected
    levels = [v[0] & 0x7F for i, v in packet.elements(data, 0xBEDE, start, end) if i == 1]
    assert fast.audio_level == (levels[-1] if levels else 127)
