"""The subscriber's pacer: within its rate a packet goes at once; a burst is spread out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sfu.aiortc_adapter import Egress
from sfu.pacer import MIN_QUEUE_BYTES, MIN_RATE, Pacer
from sfu.stats import ForwardingStats


class Socket:
    """Where the pacer's packets go: each with the time it left."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []

    def egress(self) -> Egress:
        return Egress(lambda data: data, self._sendto, None, lambda: 0)

    def _sendto(self, data: bytes, _address: Any) -> None:
        self.sent.append((time.monotonic(), data))


async def test_a_burst_leaves_at_the_pace_in_order() -> None:
    stats = ForwardingStats()
    pacer = Pacer(stats, rate=800_000)  # 100 KB/s: a 1,000-byte packet every 10 ms
    socket = Socket()
    egress = socket.egress()
    start = time.monotonic()
    for i in range(30):  # 30 KB at once, as a keyframe arrives
        pacer.send(egress, bytes([i]) * 1000)
    assert 1 <= len(socket.sent) <= 3  # what the bucket holds goes at once
    assert pacer.queued == 1000 * (30 - len(socket.sent)) and stats.paced_packets > 0
    for _ in range(200):
        if not pacer.queued:
            break
        await asyncio.sleep(0.02)
    took = socket.sent[-1][0] - start
    # ~0.28 s at 100 KB/s: spread out, not sent back to back (a busy machine only delays)
    assert len(socket.sent) == 30 and took >= 0.2, took
    assert [data[0] for _t, data in socket.sent] == list(range(30))
    # Quiet again: the next packet goes at once.
    await asyncio.sleep(0.05)
    before = len(socket.sent)
    pacer.send(egress, b"x" * 1000)
    assert len(socket.sent) == before + 1
    pacer.close()


async def test_a_steady_stream_within_the_pace_is_never_held() -> None:
    stats = ForwardingStats()
    pacer = Pacer(stats, rate=2_000_000)
    socket = Socket()
    egress = socket.egress()
    for _ in range(40):  # 1,000 bytes every 10 ms: 800 kbit/s
        pacer.send(egress, b"v" * 1000)
        await asyncio.sleep(0.01)
    assert len(socket.sent) == 40 and stats.paced_packets == 0
    pacer.close()


async def test_closing_drops_the_queue_and_the_timer() -> None:
    stats = ForwardingStats()
    pacer = Pacer(stats, rate=MIN_RATE)
    socket = Socket()
    egress = socket.egress()
    for _ in range(20):
        pacer.send(egress, b"k" * 1200)
    sent = len(socket.sent)
    pacer.close()
    pacer.close()  # idempotent
    await asyncio.sleep(0.2)
    assert len(socket.sent) == sent and pacer.queued == 0
    assert pacer.rate == MIN_RATE and pacer.limit == MIN_QUEUE_BYTES
    pacer.set_rate(10_000)  # never slower than the floor
    assert pacer.rate == MIN_RATE


async def test_more_than_the_pace_is_offered_the_queue_goes_at_once() -> None:
    """Pacing smooths bursts; it must not hold back a subscriber whose estimate lags
    what it is sent (an instructor whose class just joined): past its limit the queue
    goes out, nothing is dropped."""
    stats = ForwardingStats()
    pacer = Pacer(stats, rate=MIN_RATE)
    socket = Socket()
    egress = socket.egress()
    sent = 0
    while stats.pacer_flushes == 0:
        pacer.send(egress, b"p" * 1200)
        sent += 1
        assert sent * 1200 < 2 * pacer.limit
    assert len(socket.sent) == sent and pacer.queued == 0
    pacer.close()
