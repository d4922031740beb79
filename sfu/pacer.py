"""One subscriber's bursts spread out over time: a token bucket in front of its socket.

A keyframe leaves a browser paced (libwebrtc sends at 2.5 times its target rate) but
reaches the SFU within a few ms of itself and, forwarded as it came, hits each
subscriber's link as one burst: a 720p keyframe is 20-40 packets, and a layer switch on
a slow line starts with one. A link with a small buffer (a shaped mobile or DSL line;
the 400 kbit/s ``tbf`` in the tests holds 5 KB) drops the burst's tail, and the picture
waits for repairs. The pacer sends a packet at once while the subscriber is within its
rate, which is the whole cost on the fast path (a clock read and a subtraction), and
queues the rest, sent at PACE_FACTOR times the subscriber's bandwidth estimate or what
it is being sent, whichever is more.

Pacing smooths bursts; it does not enforce the estimate (the choice of layers does).
So it never drops: a queue past ``limit`` (QUEUE_S at the pace) goes out at once, as
it would have without a pacer, and the next estimate or measured rate raises the pace.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from time import monotonic

from .aiortc_adapter import Egress
from .stats import ForwardingStats

PACE_FACTOR = 2.0  # the pace, as a multiple of the subscriber's estimate
MIN_RATE = 300_000  # bits/s: never paced slower than this
BURST_S = 0.01  # sent back to back before pacing starts: this long at the pace
QUEUE_S = 0.25  # at most this long queued at the pace (then it all goes at once)
MIN_QUEUE_BYTES = 32 * 1024


class Pacer:
    """Sends one subscriber's packets at no more than its pace; owns one timer at most,
    which ``close`` cancels."""

    def __init__(self, stats: ForwardingStats, rate: int = 2_000_000) -> None:
        self._stats = stats
        self._rate = 0.0  # bytes/s
        self._capacity = 0.0  # bytes that may go back to back
        self.limit = MIN_QUEUE_BYTES  # bytes queued beyond which the queue is flushed
        self.set_rate(rate)
        self._tokens = self._capacity
        self._at = time.monotonic()
        self._queue: deque[tuple[Egress, bytes]] = deque()
        self.queued = 0  # bytes waiting
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def rate(self) -> int:
        """The pace, bits/s."""
        return int(self._rate * 8)

    def set_rate(self, bits_per_s: int) -> None:
        """Pace at ``bits_per_s`` (at least MIN_RATE) from now on."""
        self._rate = max(MIN_RATE, bits_per_s) / 8
        self._capacity = max(2400.0, self._rate * BURST_S)  # two full packets at least
        self.limit = max(MIN_QUEUE_BYTES, int(self._rate * QUEUE_S))

    def send(self, egress: Egress, data: bytes) -> None:
        """Send ``data`` (already protected) now if the pace allows, else queue it."""
        if not self._queue:
            now = monotonic()
            tokens = self._tokens + (now - self._at) * self._rate
            self._at = now
            if tokens > 0:
                # Within the pace: straight out. The bucket may go below zero by this
                # packet; the next waits until it is back above.
                if tokens > self._capacity:
                    tokens = self._capacity
                self._tokens = tokens - len(data)
                egress.sendto(data, egress.address)
                return
            self._tokens = tokens
        if self._closed:
            return
        self._queue.append((egress, data))
        self.queued += len(data)
        self._stats.paced_packets += 1
        if self.queued > self.limit:
            self._flush()
        elif self._timer is None:
            self._schedule()

    def _schedule(self) -> None:
        delay = max(0.001, -self._tokens / self._rate)
        self._timer = asyncio.get_running_loop().call_later(delay, self._drain)

    def _drain(self) -> None:
        self._timer = None
        now = time.monotonic()
        tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        queue = self._queue
        while queue and tokens > 0:
            egress, data = queue.popleft()
            self.queued -= len(data)
            tokens -= len(data)
            egress.sendto(data, egress.address)
        self._tokens = tokens
        if queue:
            self._schedule()

    def _flush(self) -> None:
        """More is offered than the pace lets out: send it all now, as unpaced."""
        self._stats.pacer_flushes += 1
        while self._queue:
            egress, data = self._queue.popleft()
            egress.sendto(data, egress.address)
        self.queued = 0
        self._tokens = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Drop what is queued and stop (idempotent)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self.queued = 0
