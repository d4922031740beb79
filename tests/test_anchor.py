"""Outgoing streams stay continuous when their source pauses, restarts or switches."""

from __future__ import annotations

import pylibsrtp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu import aiortc_adapter as adapter
from sfu import packet as rtp
from sfu.consumer import Consumer
from sfu.forwarder import Source, anchor
from sfu.stats import ForwardingStats
from tests.sender_pair import connected_sender

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)


def test_first_packet_after_a_pause_follows_on() -> None:
    seq_delta, ts_delta = anchor(
        last_seq=100, last_ts=9000, elapsed_s=0.5, clock_rate=90000, seq=7, timestamp=123
    )
    assert ((7 + seq_delta) & 0xFFFF, (123 + ts_delta) & 0xFFFFFFFF) == (101, 9000 + 45000)


@given(
    last_seq=U16, last_ts=U32, first_seq=U16, first_ts=U32,
    elapsed=st.floats(0, 600), steps=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 6000)),
                                              min_size=1, max_size=50),
)  # fmt: skip
def test_any_new_source_continues_without_a_jump(
    last_seq: int, last_ts: int, first_seq: int, first_ts: int, elapsed: float,
    steps: list[tuple[int, int]],
) -> None:  # fmt: skip
    seq_delta, ts_delta = anchor(last_seq, last_ts, elapsed, 48000, first_seq, first_ts)
    out_seq, out_ts = (first_seq + seq_delta) & 0xFFFF, (first_ts + ts_delta) & 0xFFFFFFFF
    assert out_seq == (last_seq + 1) & 0xFFFF
    assert (out_ts - last_ts) & 0xFFFFFFFF == max(1, int(elapsed * 48000))
    # Later packets of the same source keep their own spacing, across wraparound.
    seq, ts = first_seq, first_ts
    for seq_step, ts_step in steps:
        seq, ts = (seq + seq_step) & 0xFFFF, (ts + ts_step) & 0xFFFFFFFF
        new_seq, new_ts = (seq + seq_delta) & 0xFFFF, (ts + ts_delta) & 0xFFFFFFFF
        assert (new_seq - out_seq) & 0xFFFF == seq_step
        assert (new_ts - out_ts) & 0xFFFFFFFF == ts_step
        out_seq, out_ts = new_seq, new_ts


# -- a copy far behind what the subscriber has ------------------------------------------


class _Track(Source):
    """A publisher's track with no receiver behind it (nothing here is received)."""

    def __init__(self, stats: ForwardingStats) -> None:
        super().__init__("pub:video", "pub", "video", None, stats, 2_000_000)

    def _request_keyframe(self, media_ssrc: int) -> None:
        pass

    async def _send_estimate(self, bitrate: int) -> None:
        pass


async def test_a_copy_far_behind_is_dropped_not_refused_by_srtp() -> None:
    """A retransmission from before a pause maps far behind the subscriber's newest
    packet: aiortc's SRTP refuses such an index (replay window 1,024), so the consumer
    drops and counts it instead of raising on the forwarding path."""
    async with connected_sender() as transceiver:
        stats = ForwardingStats()
        consumer = Consumer(_Track(stats), "sub", transceiver, 96, stats)
        payload = memoryview(b"\x10" + bytes(300))
        sent = [consumer.send(0, 1, seq, seq * 3000, b"", payload) for seq in range(1000, 2200)]
        assert all(size > 0 for size in sent) and stats.stale_packets == 0

        # 1,199 behind: SRTP itself would refuse it ...
        egress = adapter.egress(transceiver.sender.transport)
        assert egress is not None
        with pytest.raises(pylibsrtp.Error, match="too old"):
            old_seq = (1000 + consumer._seq_delta) & 0xFFFF
            egress.protect(rtp.write(0, 1, 96, old_seq, 0, consumer._ssrc, b"", b"", payload))
        # ... the consumer drops it, and one 600 behind too, and counts them.
        assert consumer.send(0, 1, 1000, 3_000_000, b"", payload) == 0
        assert consumer.send(0, 1, 1599, 4_797_000, b"", payload) == 0
        assert stats.stale_packets == 2
        # A late packet within reach (a NACK's answer, reordering) still goes out.
        assert consumer.send(0, 1, 2150, 6_450_000, b"", payload) > 0
        assert consumer.send(0, 1, 2200, 6_600_000, b"", payload) > 0
        assert stats.stale_packets == 2
        consumer.close()
