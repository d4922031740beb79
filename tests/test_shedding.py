"""A subscriber waiting for a smaller layer's keyframe gets only the base temporal layer.

Real aiortc pair on loopback for the consumer's transceiver; what the consumer puts on
the wire is read back from its egress before encryption, so each packet's numbering
can be checked: sequence numbers and VP8 picture ids must close up behind dropped
pictures, and a NACK must still get the packet it names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCRtpTransceiver
from aiortc.rtp import RtpPacket

from sfu import aiortc_adapter as adapter
from sfu import vp8
from sfu.consumer import LOSS_BURST, Consumer
from sfu.forwarder import Codec, Source
from sfu.stats import ForwardingStats
from tests.sender_pair import connected_sender

PATTERN = (0, 2, 1, 2)  # Chromium's L1T3: temporal index of each picture in turn


class _Track(Source):
    """A layered VP8 track with no receiver behind it: packets are fed by hand."""

    def __init__(self, stats: ForwardingStats) -> None:
        codec = Codec("video/VP8", 90000, None, {})
        super().__init__("pub:video", "pub", "video", codec, stats, 2_000_000, ("q", "h"))
        self.keyframe_requests = 0

    def _request_keyframe(self, media_ssrc: int) -> None:
        self.keyframe_requests += 1

    async def _send_estimate(self, bitrate: int) -> None:
        pass


@dataclass
class Publisher:
    """Writes one layer's pictures: two packets each, numbered as an encoder does."""

    track: _Track
    layer: int
    seq: int = 100
    picture_id: int = 1000
    tl0: int = 10
    count: int = 0  # pictures written
    sent: dict[int, bytes] = field(default_factory=dict)  # source seq -> payload

    def picture(self, keyframe: bool = False) -> int:
        """Feed one picture; returns its temporal index."""
        stream = self.track.streams[self.layer]
        stream.media_ssrc = 1234 + self.layer
        tid = 0 if keyframe else PATTERN[self.count % 4]
        if keyframe:
            self.count = 0
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        for part in range(2):
            first = (0x90 if part == 0 else 0x80).to_bytes(1, "big")
            descriptor = first + bytes(
                [0xE0, 0x80 | (self.picture_id >> 8), self.picture_id & 0xFF, self.tl0, tid << 6]
            )
            if part == 0 and keyframe:
                body = b"\x50\x2a\x01\x9d\x01\x2a" + (640).to_bytes(2, "little")
                body += (360).to_bytes(2, "little") + bytes(100)
            else:
                body = b"\x51" + bytes(109) + bytes([part, self.count & 0xFF])
            payload = descriptor + body
            self.sent[self.seq] = payload
            stream.fan_out(
                payload, memoryview(payload), 0, part, self.seq, self.count * 3000, 0, b""
            )
            self.seq = (self.seq + 1) & 0xFFFF
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.count += 1
        return tid


@dataclass
class Wire:
    """What the consumer sends, unencrypted."""

    packets: list[RtpPacket] = field(default_factory=list)

    def egress(self) -> adapter.Egress:
        return adapter.Egress(lambda data: data, self._record, None, lambda: 0)

    def _record(self, data: bytes, _address: Any) -> None:
        self.packets.append(RtpPacket.parse(data))

    def media(self) -> list[RtpPacket]:
        return [p for p in self.packets if p.payload_type == 96]


@pytest.fixture(name="transceiver")
async def transceiver_fixture() -> AsyncIterator[RTCRtpTransceiver]:
    async with connected_sender() as transceiver:
        yield transceiver


def consumer_on(
    transceiver: RTCRtpTransceiver, **options: Any
) -> tuple[ForwardingStats, _Track, Wire, Consumer]:
    """A consumer of a new two-layer track, on the high layer, its wire read back."""
    stats = ForwardingStats()
    track = _Track(stats)
    wire = Wire()
    consumer = Consumer(track, "sub", transceiver, 96, stats, layer=1, **options)
    consumer._egress = wire.egress()
    return stats, track, wire, consumer


def numbers(packets: list[RtpPacket]) -> list[tuple[int, int, int, int]]:
    """(sequence number, picture id, TL0PICIDX, temporal index) of each packet."""
    out = []
    for packet in packets:
        _h, picture_id, tl0, tid, _size = vp8.read(packet.payload)
        out.append((packet.sequence_number, picture_id, tl0, tid))
    return out


def continuous(packets: list[RtpPacket]) -> None:
    """Sequence numbers one apart; picture ids one apart between pictures."""
    seen = numbers(packets)
    for (seq, pid, _tl0, _tid), (next_seq, next_pid, _t, _i), packet in zip(
        seen, seen[1:], packets[1:], strict=False
    ):
        assert next_seq == (seq + 1) & 0xFFFF, seen
        starts = vp8.starts_frame(packet.payload)
        assert next_pid == ((pid + 1) & 0x7FFF if starts else pid), seen


async def test_shedding_sends_base_pictures_with_numbering_closed_up(
    transceiver: RTCRtpTransceiver,
) -> None:
    stats, track, wire, consumer = consumer_on(transceiver)
    high = Publisher(track, layer=1)
    high.picture(keyframe=True)
    for _ in range(7):
        high.picture()
    assert len(wire.media()) == 16 and stats.shed_packets == 0
    assert {tid for *_n, tid in numbers(wire.media())} == {0, 1, 2}

    consumer.shed()
    tids = [high.picture() for _ in range(12)]
    after = wire.media()[16:]
    assert [tid for *_n, tid in numbers(after)] == [0] * 2 * tids.count(0)
    assert stats.shed_packets == 2 * (12 - tids.count(0))
    continuous(wire.media())

    # A NACK for a packet from before, and one from after, the drops began.
    before_seq = wire.media()[3].sequence_number
    after_packet = wire.media()[-1]
    sent = len(wire.packets)
    assert consumer._retransmit(before_seq) and consumer._retransmit(after_packet.sequence_number)
    repaired = wire.packets[sent:]
    assert [p.payload[2:] for p in repaired] == [
        wire.media()[3].payload,
        after_packet.payload,
    ]  # RTX: the original sequence number, then the payload as first sent
    assert consumer._retransmit((after_packet.sequence_number + 1) & 0xFFFF) == 0  # not sent
    assert consumer.pad(10_000) == 0  # no padding while shedding: the link is full

    # Back to every picture only from a keyframe: an upper picture may refer to one
    # the subscriber never got.
    requests = track.keyframe_requests
    # The switch's own request went with the layer's first packet, a moment ago: open
    # the publisher's request window as the passing of time would.
    track.streams[1]._last_keyframe_request = 0.0
    consumer.unshed()
    for _ in range(4):
        high.picture()
    assert track.keyframe_requests == requests + 1  # asked for with the next packet
    assert {tid for *_n, tid in numbers(wire.media()[-8:])} == {0}
    high.picture(keyframe=True)
    for _ in range(3):
        high.picture()
    assert [tid for *_n, tid in numbers(wire.media()[-8:])][::2] == [0, 2, 1, 2]
    assert not consumer.shedding
    continuous(wire.media())
    consumer.close()
    track.close()


async def test_a_switch_down_ends_shedding_at_the_smaller_layers_keyframe(
    transceiver: RTCRtpTransceiver,
) -> None:
    stats, track, wire, consumer = consumer_on(transceiver)
    low, high = Publisher(track, layer=0, seq=40000, picture_id=5), Publisher(track, layer=1)
    high.picture(keyframe=True)
    low.picture(keyframe=True)
    consumer.shed()
    consumer.switch_to(track.streams[0])
    for _ in range(5):  # the high layer's upper pictures are held back meanwhile
        high.picture()
        low.picture()
    assert consumer.layer == 1 and stats.shed_packets > 0
    low.picture(keyframe=True)
    high.picture()
    for _ in range(3):
        low.picture()
    assert consumer.layer == 0 and not consumer.shedding
    assert [tid for *_n, tid in numbers(wire.media()[-8:])][::2] == [0, 2, 1, 2]
    continuous(wire.media())
    consumer.close()
    track.close()


async def test_a_burst_of_loss_sheds_at_once_unless_it_was_the_probes(
    transceiver: RTCRtpTransceiver,
) -> None:
    told: list[bool] = []
    probing = [True]

    def on_loss() -> bool:
        told.append(True)
        return not probing[0]  # the layer control: padding overfilled the link

    _stats, track, _wire, consumer = consumer_on(transceiver, on_loss=on_loss)
    high = Publisher(track, layer=1)
    high.picture(keyframe=True)
    for _ in range(30):
        high.picture()
    consumer._count_loss(3)  # a little loss is not congestion
    assert not told and not consumer.shedding
    consumer._count_loss(LOSS_BURST - 3)
    assert told == [True] and not consumer.shedding  # the probe ends instead
    probing[0] = False
    consumer._count_loss(LOSS_BURST)
    assert told == [True, True] and consumer.shedding
    high.picture(keyframe=True)  # not a switch: it stays shed until told otherwise
    assert consumer.shedding
    consumer.close()
    track.close()


async def test_shedding_again_much_later_still_sends_the_base_layer(
    transceiver: RTCRtpTransceiver,
) -> None:
    """The newest source number seen while shedding is forgotten when shedding ends: half a
    sequence-number cycle later, an old one would make every packet look late."""
    _stats, track, wire, consumer = consumer_on(transceiver)
    high = Publisher(track, layer=1)
    high.picture(keyframe=True)
    consumer.shed()
    for _ in range(8):
        high.picture()
    consumer.unshed()
    high.picture(keyframe=True)
    assert not consumer.shedding
    for _ in range(17_000):  # 34,000 packets: past half the sequence-number space
        high.picture()
    consumer.shed()
    before = len(wire.media())
    tids = [high.picture() for _ in range(8)]
    assert len(wire.media()) - before == 2 * tids.count(0) > 0
    continuous(wire.media()[-40:])
    consumer.close()
    track.close()


async def test_a_keyframe_waited_for_in_vain_is_asked_for_again(
    transceiver: RTCRtpTransceiver,
) -> None:
    """A browser ignores a keyframe request within 300 ms of another for the same sender
    (any layer), and RTCP can be lost: a switch must not wait forever."""
    _stats, track, _wire, consumer = consumer_on(transceiver)
    low, high = Publisher(track, layer=0, seq=40000, picture_id=5), Publisher(track, layer=1)
    low.picture(keyframe=True)
    high.picture(keyframe=True)
    await asyncio.sleep(0.35)  # past the stream's own request interval
    consumer.switch_to(track.streams[0])
    asked = track.keyframe_requests
    assert asked >= 1
    low.picture()  # no keyframe: the request went unanswered
    consumer.nudge(time.monotonic())
    assert track.keyframe_requests == asked  # not yet: a keyframe takes a while
    await asyncio.sleep(0.35)
    consumer.nudge(time.monotonic() + 1.0)
    assert track.keyframe_requests == asked + 1
    low.picture(keyframe=True)
    assert consumer.layer == 0
    consumer.nudge(time.monotonic() + 5.0)  # nothing awaited: nothing asked
    assert track.keyframe_requests == asked + 1
    consumer.close()
    track.close()


async def test_a_keyframe_asked_for_before_the_first_packet_goes_with_that_packet() -> None:
    """A subscriber can join a track before its first packet (a pipe just made): the
    request waits for that packet instead of being dropped (aiortc's encoder makes a
    keyframe only when asked, so a dropped one left the subscriber without a picture)."""
    track = _Track(ForwardingStats())
    low = track.streams[0]
    low.want_keyframe()
    assert track.keyframe_requests == 0 and low.keyframe_wanted
    Publisher(track, layer=0).picture()
    assert track.keyframe_requests == 1 and not low.keyframe_wanted
    track.close()
