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
pads the connection up to what the next layer would need, a step at a time. If the
link carried that with no sign of congestion (the estimate did not fall, the receiver
reports no loss), that rate counts as *proven* and the allocation may use it until
congestion shows; if not, the probe stops and the next waits (PROBE_BACKOFF_S).

A switch down takes effect at the smaller layer's keyframe; until then the consumer
sends only the base temporal layer (``Consumer.shed``), so the link gets relief at once
and the picture slows instead of freezing. Loss shows before the estimate falls: a burst
of NACKs caps the budget below what was being sent (LOSS_CAP) for LOSS_HOLD_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .consumer import Consumer
from .pacer import PACE_FACTOR, Pacer
from .stats import ForwardingStats

logger = logging.getLogger(__name__)

UP_MARGIN = 1.25  # a higher layer must fit this many times over to be taken
UP_HOLD_S = 2.0  # ... for this long
AUDIO_SHARE = 50_000  # bits/s set aside for each audio track received
INITIAL_ESTIMATE = 1_000_000  # before the subscriber's first REMB
TICK_S = 0.5  # allocation period
PROBE_TICK_S = 0.05  # padding period while probing
PROBE_RAMP_S = 1.0  # padding grows to its full rate over this long: a link that cannot
# carry it shows congestion (the estimate falls) before the whole probe is on it
PROBE_HOLD_S = 1.5  # padding carried this long at full rate, without congestion, proves it
LOSS_LIMIT = 13  # fraction lost (of 256) in a receiver report that counts as congestion
PROBE_BACKOFF_S = (4.0, 8.0, 15.0)  # waits after probes that led nowhere
PROBE_AFTERMATH_S = 1.0  # NACKs this soon after a failed probe still report its loss
PROBE_MAX_BPS = 2_000_000
PROBE_GROWTH = 1.6  # a probe goes at most this far beyond the estimate or proven rate
LOSS_CAP = 0.6  # after a burst of loss, the budget is at most this share of what was sent
LOSS_HOLD_S = 3.0  # ... for this long
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


def shortfall(budget: int, demands: Sequence[Demand], targets: Sequence[int]) -> int:
    """How much more than ``budget`` the cheapest raise beyond ``targets`` would need
    (0: none is wanted, or one fits already and only waits for its hold time)."""
    spent = sum(d.rates[t] for d, t in zip(demands, targets, strict=True) if t >= 0)
    needs = []
    for demand, layer in zip(demands, targets, strict=True):
        step = next((i for i in range(layer + 1, demand.preferred + 1) if demand.rates[i]), None)
        if layer < 0 or step is None:
            continue
        margin = 1.0 if step <= demand.current else UP_MARGIN
        needs.append(spent + int(demand.rates[step] * margin) - demand.rates[layer] - budget)
    return max(0, min(needs, default=0))


ConsumersGetter = Callable[[], Sequence[Consumer]]


class LayerControl:
    """One subscriber's layer choices, re-made every TICK_S and at each new estimate.

    Owns one task, which ``aclose()`` cancels and awaits, and the subscriber's ``pacer``,
    paced at PACE_FACTOR times what the link is known to carry.
    """

    def __init__(self, consumers: ConsumersGetter, stats: ForwardingStats) -> None:
        self._consumers = consumers  # all of the subscriber's, audio and video
        self.pacer = Pacer(stats, int(INITIAL_ESTIMATE * PACE_FACTOR))
        self.estimate = 0  # the subscriber's last REMB (0: none yet)
        self.shown: dict[str, int] = {}  # publisher id -> rendered height (device px)
        self.cap: int | None = None  # the viewer's own limit (a height)
        self._up_since: dict[int, float] = {}  # id(consumer) -> since when it could go up
        self.proven = 0  # bits/s a probe showed the link carries (0: none since congestion)
        self._probing_since = 0.0
        self._probe_rate = 0
        self._probe_mark: tuple[int, float] | None = None  # (bytes sent, when) at full rate
        self._ramp_from = 0  # padding rate (bits/s) the current step ramps up from
        self._ramp_at = 0.0  # ... starting then
        self._pad_at = 0.0  # when padding was last sent
        self._probe_consumers = 0  # subscriptions then (another count: bytes not comparable)
        self._next_probe_at = 0.0
        self._shortfall = 0  # bits/s more the cheapest wanted raise needs
        self._padded = 0  # padding bytes sent so far
        self._sent_mark = (0, time.monotonic())  # (bytes sent, when) at the last update
        self.sent_rate = 0  # bits/s sent to the subscriber (media and padding)
        self._backoff = 0
        self._loss_cap = 0  # bits/s the budget is held to after a burst of loss (0: none)
        self._loss_until = 0.0
        self._aftermath_until = 0.0  # a failed probe's loss may still be reported until then
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="layers")

    @property
    def probing(self) -> bool:
        """Whether padding is being sent now."""
        return self._probing_since > 0

    def on_estimate(self, bitrate: int) -> None:
        """A REMB from the subscriber: a fall that means congestion is acted on at once.

        A browser lowers its estimate on congestion to 85 % of what it receives; while
        the estimate is still climbing far below what a probe proved and is being sent,
        a dip is its own noise (CPU, timers), not the link's. (A probe that overfills
        a slow link raises its estimate, to 85 % of the more it receives: loss in the
        receiver reports ends such a probe.)
        """
        falling = self.estimate and bitrate < self.estimate * 0.9
        near = self.estimate >= 0.8 * self.sent_rate
        self.estimate = bitrate
        if falling and near:
            self._congested(f"estimate fell to {bitrate}")
        elif falling:
            self._wake.set()  # re-allocate: the estimate may rule without a proven rate

    def on_loss(self) -> bool:
        """A burst of NACKs from the subscriber: its link is losing what is sent. While
        probing, or within PROBE_AFTERMATH_S of a failed probe (the NACKs for what the
        padding's overflow lost arrive a round trip and a queue later), the padding
        overfilled it: the probe ends and the videos keep their layers (False).
        Otherwise the budget is capped below what was sent and the consumer sheds its
        upper temporal layers at once (True)."""
        probing = bool(self._probing_since) or time.monotonic() < self._aftermath_until
        if not probing:
            self._loss_cap = int(self.sent_rate * LOSS_CAP)
            self._loss_until = time.monotonic() + LOSS_HOLD_S
        self._congested("NACK burst")  # ends the probe, if any
        return not probing

    def _congested(self, why: str) -> None:
        """The link shows congestion: what probes proved no longer holds."""
        self.proven = 0
        if self._probing_since:
            self._end_probe(time.monotonic(), success=False, why=why)
        self._wake.set()

    def view(self, shown: dict[str, int], cap: int | None) -> None:
        """Where the subscriber shows each publisher's video now, and its own cap."""
        self.shown = shown
        self.cap = cap
        self._wake.set()

    async def _run(self) -> None:
        while True:
            if not self._probing_since:  # a probe spends the period padding instead
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()
            try:
                wants_more = self.update(time.monotonic())
                if wants_more:
                    await self._probe()
                elif self._probing_since:
                    self._end_probe(time.monotonic(), success=True, why="nothing wants more")
            except Exception:
                logger.exception("layer allocation failed")

    def _videos(self) -> list[Consumer]:
        return [c for c in self._consumers() if c.producer.kind == "video"]

    def _sent(self) -> int:
        return sum(c.octets_out for c in self._consumers()) + self._padded

    def update(self, now: float) -> bool:
        """Re-allocate and switch; True when some video wants more than fits."""
        sent, then = self._sent(), self._sent_mark[1]
        if now - then >= TICK_S / 2:
            # A subscription that ended takes its count along: no rate across that.
            if sent >= self._sent_mark[0]:
                self.sent_rate = int((sent - self._sent_mark[0]) * 8 / (now - then))
            self._sent_mark = (sent, now)
        videos = [c for c in self._videos() if c.producer.layered and not c.paused]
        if self.proven and any(
            c.fraction_lost > LOSS_LIMIT or now - c.congested_at < TICK_S * 2 for c in videos
        ):
            self._congested("loss reported after a proven probe")
        for consumer in videos:
            consumer.nudge(now)
            heights = [s.height for s in consumer.producer.streams]
            consumer.preferred = preferred_layer(
                heights, self.shown.get(consumer.producer.owner_id), self.cap
            )
        estimate = max(self.estimate or INITIAL_ESTIMATE, self.proven)
        self.pacer.set_rate(int(max(estimate, self.sent_rate) * PACE_FACTOR))
        audio = sum(1 for c in self._consumers() if c.producer.kind == "audio")
        budget = max(0, estimate - AUDIO_SHARE * audio)
        budget -= sum(self._fixed_rate(c) for c in self._videos() if not c.producer.layered)
        if now < self._loss_until:
            budget = min(budget, self._loss_cap)
        demands = [
            Demand([s.bitrate for s in c.producer.streams], c.wanted, c.preferred) for c in videos
        ]
        targets = allocate(budget, demands)
        self._shortfall = shortfall(budget, demands, targets)
        if logger.isEnabledFor(logging.DEBUG) and videos:
            logger.debug(
                "layers for %s: estimate %d proven %d sent %d budget %d short %d probing %s "
                "next probe in %.1f s; %s", videos[0].subscriber_id, self.estimate, self.proven,
                self.sent_rate, budget, self._shortfall, self.probing, self._next_probe_at - now,
                [(c.producer.owner_id, c.layer, c.wanted, c.preferred, d.rates, t)
                 for c, d, t in zip(videos, demands, targets, strict=True)],
            )  # fmt: skip
        for consumer, target in zip(videos, targets, strict=True):
            if target < 0:
                continue
            key = id(consumer)
            if target > consumer.wanted >= 0:
                since = self._up_since.setdefault(key, now)
                if now - since < UP_HOLD_S:
                    continue
            self._up_since.pop(key, None)
            if target < consumer.wanted <= consumer.preferred:
                consumer.shed()  # the link cannot carry it: relief until the switch
            elif consumer.shedding and consumer.target is None and now >= self._loss_until:
                consumer.unshed()  # shed for loss on the layer it keeps: loss is over
            if target != consumer.wanted:
                if target > consumer.wanted:
                    self.switched_up()
                consumer.switch_to(consumer.producer.streams[target])
        return self._shortfall > 0

    @staticmethod
    def _fixed_rate(consumer: Consumer) -> int:
        stream = consumer.stream
        return stream.bitrate if stream is not None and not consumer.paused else 0

    async def _probe(self) -> None:
        """Pad towards the next layer, a step at a time, until congestion shows or no
        video wants more: each step that holds for PROBE_HOLD_S proves its rate."""
        now = time.monotonic()
        if now < self._next_probe_at:
            return
        videos = [c for c in self._videos() if c.producer.layered and not c.paused]
        carrier = next((c for c in videos if c.stream is not None), None)
        if carrier is None or any(c.shedding for c in videos):
            # Nothing to pad with, or the link is full: no probe now (and one under way
            # ends, or this task would spin: a probe's period is spent padding).
            if self._probing_since:
                self._end_probe(now, success=False, why="no carrier, or a video shedding")
            return
        if not self._probing_since:
            self._probing_since = self._pad_at = now
            self._probe_consumers = len(self._consumers())
            self._next_step(now, ramp_from=0)
        elif any(c.fraction_lost > LOSS_LIMIT for c in videos):
            self._congested("fraction lost in a receiver report")
            return
        elif len(self._consumers()) != self._probe_consumers:
            self._end_probe(now, success=True, why="subscriptions changed")  # measure afresh
            return
        elif self._probe_mark is not None and now - self._probe_mark[1] >= PROBE_HOLD_S:
            # Carried at full rate without congestion: what was sent, the link can take.
            sent, since = self._probe_mark
            self.proven = max(self.proven, int((self._sent() - sent) * 8 / (now - since)))
            self._next_step(now, ramp_from=self._probe_rate)
            return  # the allocation runs again at once and may take the next layer now
        # Pad for one allocation period, in small slices like a pacer, by the time that
        # passed (a busy event loop wakes the slices late).
        end = now + TICK_S
        while (slice_at := time.monotonic()) < end and not self._wake.is_set():
            ramp = min(1.0, (slice_at - self._ramp_at) / PROBE_RAMP_S)
            if ramp == 1.0 and self._probe_mark is None:
                self._probe_mark = (self._sent(), slice_at)
            rate = self._ramp_from + (self._probe_rate - self._ramp_from) * ramp
            self._padded += carrier.pad(int(rate * (slice_at - self._pad_at) / 8))
            self._pad_at = slice_at
            await asyncio.sleep(PROBE_TICK_S)

    def _next_step(self, now: float, ramp_from: int) -> None:
        """Aim the padding at what the cheapest raise lacks, 10 % over (rates move
        between measurements), but at most PROBE_GROWTH times what is known to fit: a
        link far too slow for the next layer is not flooded, a fast one gets there in a
        few steps."""
        basis = max(self.estimate or INITIAL_ESTIMATE, self.proven)
        total = min(int((basis + self._shortfall) * 1.1), int(basis * PROBE_GROWTH))
        media = self.sent_rate - (self._probe_rate if self._probe_mark else 0)
        self._probe_rate = min(PROBE_MAX_BPS, max(total - media, 100_000))
        self._ramp_from, self._ramp_at, self._probe_mark = ramp_from, now, None

    def _end_probe(self, now: float, success: bool, why: str) -> None:
        # Why a probe ended, for a subscriber whose layer does not climb (server log at
        # DEBUG): a CPU-starved browser's estimate or reports can end probes on loopback.
        logger.debug(
            "probe ended (%s, %s) after %.1f s at %d bit/s padding, proven %d",
            why, "success" if success else "failure", now - self._probing_since,
            self._probe_rate, self.proven,
        )  # fmt: skip
        self._probing_since = 0.0
        if success:
            self._backoff = 0
            return
        self._aftermath_until = now + PROBE_AFTERMATH_S
        self._next_probe_at = now + PROBE_BACKOFF_S[min(self._backoff, len(PROBE_BACKOFF_S) - 1)]
        self._backoff += 1

    def switched_up(self) -> None:
        """A video went up a layer: the probe, if any, did its job."""
        if self._probing_since:
            self._end_probe(time.monotonic(), success=True, why="a video switched up")

    async def aclose(self) -> None:
        """Stop and wait for the task; the pacer drops what it holds."""
        self.pacer.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
