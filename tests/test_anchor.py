"""Outgoing streams stay continuous when their source pauses, restarts or switches."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sfu.forwarder import anchor

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
