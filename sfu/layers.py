"""Which simulcast layer each video of one subscriber gets, and probing for more.

The subscriber's browser reports one bandwidth estimate for its whole connection
(REMB). ``allocate`` shares it out: every video first gets its lowest layer, then the
videos are raised one layer at a time, lowest first, up to the layer their tile needs
(``preferred_layer``: its rendered size and the viewer's cap), while what they add
fits. Going up needs UP_MARGIN more than the layer's measured rate, held for UP_HOLD_S;
going down happens at the next estimate, so a congested link sheds its layer within
about a second.

A browser's estimate rises slowly (8 % a second) and never far above what it receives,
so a subscriber on the lowest layer would wait half a minute for the highest even on a
fast link. When a video wants more than fits, ``LayerControl`` therefore *probes*: it
pads the connection up to what the next layer would need for PROBE_PROVE_S. If the
link carried that with no sign of congestion (the estimate did not fall, the receiver
reports no loss), that rate counts as *proven* and the allocation may use it until
congestion shows; if not, the probe stops and the next waits (PROBE_BACKOFF_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .consumer import Consumer

logger = logging.getLogger(__name__)

UP_MARGIN = 1.25  # a higher layer must fit this many times over to be taken
UP_HOLD_S = 2.0  # ... for this long
AUDIO_SHARE = 50_000  # bits/s set aside for each audio track received
INITIAL_ESTIMATE = 1_000_000  # before the subscriber's first REMB
TICK_S = 0.5  # allocation period
PROBE_TICK_S = 0.05  # padding period while probing
PROBE_PROVE_S = 3.0  # padding carried this long without congestion proves its rate
LOSS_LIMIT = 13  # fraction lost (of 256) in a receiver report that counts as congestion
PROBE_BACKOFF_S = (5.0, 10.0, 20.0, 30.0)  # waits after probes that led nowhere
PROBE_MAX_BPS = 2_000_000
SHOWN_SLACK = 0.9  # a layer at least this share of the tile's height is sharp enough
CAP_SLACK = 1.1


@dataclass(frozen=True, slots=True)
class Demand:
    """One video as the allocation sees it: its layers' measured rates (0: not being
    sent), the layer it has (-1: none yet) and the layer it should have at most."""

    rates: Sequence[int]
    current: int
    preferred: int


def preferred_layer(heights: Sequence[int], shown: int | None, cap: int | None) -> int:
    """The layer a tile ``shown`` device pixels high calls for under the viewer's
    ``cap`` (a height; None: none): the smallest layer that is sharp enough there, the
    top one if none is, and never one taller than the cap. Heights are 0 until a layer's
    first keyframe: unknown layers are never picked for a size or under a cap."""
    top = len(heights) - 1
    best = top
    if shown is not None:
        best = next((i for i, h in enumerate(heights) if h and h >= shown * SHOWN_SLACK), top)
    if cap is not None:
        fits = [i for i, h in enumerate(heights) if h and h <= cap * CAP_SLACK]
        best = min(best, max(fits) if fits else 0)
    return best


def allocate(budget: int, demands: Sequence[Demand]) -> list[int]:
    """The layer each video gets from ``budget`` bits/s (-1: nothing is being sent)."""
    targets: list[int] = []
    spent = 0
    for demand in demands:
        lowest = next((i for i, rate in enumerate(demand.rates) if rate), -1)
        targets.append(lowest)
        spent += demand.rates[lowest] if lowest >= 0 else 0
    raised = True
    while raised:
        raised = False
        for k in sorted(range(len(demands)), key=targets.__getitem__):
            demand, layer = demands[k], targets[k]
            if layer < 0:
                continue
            step = next(
                (i for i in range(layer + 1, demand.preferred + 1) if demand.rates[i]), None
            )
            if step is None:
                continue
            margin = 1.0 if step <= demand.current else UP_MARGIN
            added = demand.rates[step] - demand.rates[layer]
            if spent + demand.rates[step] * margin - demand.rates[layer] <= budget:
                targets[k] = step
                spent += added
                raised = True
    return targets


ConsumersGetter = Callable[[], Sequence[Consumer]]


class LayerControl:
    """One subscriber's layer choices, re-made every TICK_S and at each new estimate.

    Owns one task; ``close()`` cancels and ``aclose()`` awaits it.
    """

    def __init__(self, videos: ConsumersGetter, audio_count: Callable[[], int]) -> None:
        self._videos = videos
        self._audio_count = audio_count
        self.estimate = 0  # the subscriber's last REMB (0: none yet)
        self.shown: dict[str, int] = {}  # publisher id -> rendered height (device px)
        self.cap: int | None = None  # the viewer's own limit (a height)
        self._up_since: dict[int, float] = {}  # id(consumer) -> since when it could go up
        self.proven = 0  # bits/s a probe showed the link carries (0: none since congestion)
        self._probing_since = 0.0
        self._probe_rate = 0
        self._next_probe_at = 0.0
        self._backoff = 0
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="layers")

    @property
    def probing(self) -> bool:
        """Whether padding is being sent now."""
        return self._probing_since > 0

    def on_estimate(self, bitrate: int) -> None:
        """A REMB from the subscriber: a fall is acted on at once."""
        falling = self.estimate and bitrate < self.estimate * 0.9
        self.estimate = bitrate
        if falling:
            self._congested()

    def _congested(self) -> None:
        """The link shows congestion: what probes proved no longer holds."""
        self.proven = 0
        if self._probing_since:
            self._end_probe(time.monotonic(), success=False)
        self._wake.set()

    def view(self, shown: dict[str, int], cap: int | None) -> None:
        """Where the subscriber shows each publisher's video now, and its own cap."""
        self.shown = shown
        self.cap = cap
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()
            try:
                wants_more = self.update(time.monotonic())
                if wants_more:
                    await self._probe()
                elif self._probing_since:
                    self._end_probe(time.monotonic(), success=True)
            except Exception:
                logger.exception("layer allocation failed")

    def update(self, now: float) -> bool:
        """Re-allocate and switch; True when some video wants more than fits."""
        videos = [c for c in self._videos() if c.producer.layered and not c.paused]
        if self.proven and any(
            c.fraction_lost > LOSS_LIMIT or now - c.congested_at < TICK_S * 2 for c in videos
        ):
            self._congested()
        for consumer in videos:
            heights = [s.height for s in consumer.producer.streams]
            consumer.preferred = preferred_layer(
                heights, self.shown.get(consumer.producer.owner_id), self.cap
            )
        estimate = max(self.estimate or INITIAL_ESTIMATE, self.proven)
        budget = max(0, estimate - AUDIO_SHARE * self._audio_count())
        budget -= sum(self._fixed_rate(c) for c in self._videos() if not c.producer.layered)
        demands = [
            Demand([s.bitrate for s in c.producer.streams], c.wanted, c.preferred) for c in videos
        ]
        targets = allocate(budget, demands)
        wants_more = False
        for consumer, target in zip(videos, targets, strict=True):
            if target < 0:
                continue
            key = id(consumer)
            if target < consumer.preferred:
                wants_more = True
            if target > consumer.wanted >= 0:
                since = self._up_since.setdefault(key, now)
                if now - since < UP_HOLD_S:
                    continue
            self._up_since.pop(key, None)
            if target != consumer.wanted:
                if target > consumer.wanted:
                    self.switched_up()
                consumer.switch_to(consumer.producer.streams[target])
        return wants_more

    @staticmethod
    def _fixed_rate(consumer: Consumer) -> int:
        stream = consumer.stream
        return stream.bitrate if stream is not None and not consumer.paused else 0

    async def _probe(self) -> None:
        """Pad towards the next layer for PROBE_PROVE_S, unless congestion shows first."""
        now = time.monotonic()
        if now < self._next_probe_at:
            return
        videos = [c for c in self._videos() if c.producer.layered and not c.paused]
        carrier = next((c for c in videos if c.stream is not None), None)
        if carrier is None:
            return
        if not self._probing_since:
            self._probing_since = now
            self._probe_rate = self._probe_step(videos)
        elif any(c.fraction_lost > LOSS_LIMIT for c in videos):
            self._congested()
            return
        elif now - self._probing_since >= PROBE_PROVE_S:
            # Carried without congestion: what was sent is what the link can take.
            media = sum(s.bitrate for c in videos if (s := c.stream) is not None)
            self.proven = max(self.proven, media + self._probe_rate)
            self._end_probe(now, success=True)
            self._wake.set()
            return
        # Pad for one allocation period, in small slices like a pacer.
        end = now + TICK_S
        octets = int(self._probe_rate * PROBE_TICK_S / 8)
        while time.monotonic() < end and not self._wake.is_set():
            carrier.pad(octets)
            await asyncio.sleep(PROBE_TICK_S)

    def _probe_step(self, videos: Sequence[Consumer]) -> int:
        """Bits/s of padding that would show whether the cheapest next layer fits."""
        steps = []
        for consumer in videos:
            rates = [s.bitrate for s in consumer.producer.streams]
            here = consumer.wanted
            above = [r for r in rates[here + 1 : consumer.preferred + 1] if r]
            if here >= 0 and above:
                # 10 % over what the switch needs: layers' rates move between measurements.
                steps.append(int(above[0] * UP_MARGIN * 1.1) - rates[here])
        return min(PROBE_MAX_BPS, max(min(steps, default=0), 100_000))

    def _end_probe(self, now: float, success: bool) -> None:
        self._probing_since = 0.0
        if success:
            self._backoff = 0
            return
        self._next_probe_at = now + PROBE_BACKOFF_S[min(self._backoff, len(PROBE_BACKOFF_S) - 1)]
        self._backoff += 1

    def switched_up(self) -> None:
        """A video went up a layer: the probe, if any, did its job."""
        if self._probing_since:
            self._end_probe(time.monotonic(), success=True)

    def close(self) -> None:
        """Stop (idempotent); ``aclose`` also waits for the task to end."""
        self._task.cancel()

    async def aclose(self) -> None:
        """Stop and wait for the task."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
