"""A simulated heart-rate strap riding an interval class, for demos, tests and benchmarks.

The class follows a profile of segments whose intensity is a share of heart-rate reserve
(0 = resting, 1 = maximum), so one instructor's profile fits every rider:

- warm-up, ~5 min, ramping from resting to ~45 % of reserve (65 -> ~120 bpm for a
  185-max rider);
- 4-6 work blocks of 3-5 min at 80-95 % of reserve (~160-180 bpm), each followed by
  1.5-3 min of recovery at 45-58 % (~120-135 bpm), the last by the cool-down;
- cool-down, 8-10 min, back to ~20 % of reserve (~90 bpm), held after the class.

Heart rate follows its target with first-order kinetics, as measured on-transients do:
a rise time constant of 20-40 s and a slower recovery of 40-60 s, drawn per rider. The
reported value carries a little autocorrelated beat-to-beat noise. RR intervals are
generated beat by beat (60000 / bpm ms with a few percent of variability), so each
notification carries every beat that fell in its interval (one at rest, two or three
hard at work), in the wire's 1/1024 s units, as real straps send them. Every tenth reading
carries the cumulative energy expended in kJ (Keytel et al. 2005, as in summary.py).

``generate`` is the pure, seeded generator; ``SimulatedStrap.run`` paces it on the
event loop (``time_scale`` > 1 compresses time: a 45-min class in seconds). Per reading
it costs a few float operations and one measurement object, so a benchmark can run
hundreds of straps in one process.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from .hrm import RR_UNITS_PER_SECOND, HeartRateMeasurement

SegmentKind = Literal["warm-up", "work", "recovery", "cool-down"]

ENERGY_EVERY = 10  # readings between energy-expended fields, as common straps do
MIN_BPM = 40
_MAX_RR_UNITS = 0xFFFF

# Keytel et al. (2005), men, kJ/min, for a 75 kg, 35-year-old rider.
_KEYTEL_OFFSET = -55.0969 + 0.1988 * 75 + 0.2017 * 35
_KEYTEL_PER_BPM = 0.6309


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of class whose target intensity moves linearly from ``start`` to ``end``.

    Intensities are shares of heart-rate reserve; ``duration`` is in seconds.
    """

    kind: SegmentKind
    duration: float
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class ClassProfile:
    """An interval class as segments, in order; after the last, its end intensity holds."""

    segments: tuple[Segment, ...]

    @property
    def duration(self) -> float:
        """Seconds from the start of the warm-up to the end of the cool-down."""
        return sum(segment.duration for segment in self.segments)

    def spans(self) -> Iterator[tuple[Segment, float, float]]:
        """Each segment with its start and end time in seconds."""
        t = 0.0
        for segment in self.segments:
            yield segment, t, t + segment.duration
            t += segment.duration

    @classmethod
    def interval_class(cls, seed: int | None = None) -> ClassProfile:
        """A ~35-50 min interval class: warm-up, 4-6 work/recovery blocks, cool-down."""
        rng = random.Random(seed)
        segments = [Segment("warm-up", 300.0, 0.0, 0.45)]
        blocks = rng.randint(4, 6)
        for block in range(blocks):
            work = rng.uniform(0.80, 0.95)
            segments.append(Segment("work", 10.0 * rng.randint(18, 30), work, work))
            if block < blocks - 1:
                rest = rng.uniform(0.45, 0.58)
                segments.append(Segment("recovery", 10.0 * rng.randint(9, 18), rest, rest))
        segments.append(Segment("cool-down", 10.0 * rng.randint(48, 60), 0.20, 0.20))
        return cls(tuple(segments))


def _targets(profile: ClassProfile, interval: float) -> Iterator[float]:
    """Target intensity at each reading time, then the last end intensity forever."""
    t = 0.0
    for segment, begin, end in profile.spans():
        slope = (segment.end - segment.start) / segment.duration if segment.duration else 0.0
        while t < end:
            yield segment.start + slope * (t - begin)
            t += interval
    last = profile.segments[-1].end if profile.segments else 0.0
    while True:
        yield last


def generate(
    profile: ClassProfile,
    *,
    resting_hr: float = 65,
    max_hr: float = 185,
    seed: int | None = None,
    interval: float = 1.0,
    energy: bool = True,
) -> Iterator[HeartRateMeasurement]:
    """Readings every ``interval`` seconds of class, forever; the same for the same seed."""
    if interval <= 0:
        raise ValueError("interval must be positive")
    rng = random.Random(seed)
    gauss = rng.gauss
    reserve = max_hr - resting_hr
    ceiling = int(max_hr) + 5
    # Per-rider kinetics, as per-step smoothing factors for the fixed interval.
    rise = 1.0 - math.exp(-interval / rng.uniform(20.0, 40.0))
    fall = 1.0 - math.exp(-interval / rng.uniform(40.0, 60.0))
    hrv = rng.uniform(0.02, 0.04)  # RR variability, a share of the RR interval
    step_ms = interval * 1000.0
    hr = float(resting_hr)
    wobble = 0.0  # autocorrelated beat-to-beat noise, bpm
    next_rr = 60000.0 / hr  # ms, the RR interval that ends at the next beat
    until_beat = rng.uniform(0.0, next_rr)  # ms from now to the next beat
    energy_j = 0.0
    for count, intensity in enumerate(_targets(profile, interval), start=1):
        target = resting_hr + reserve * intensity
        hr += (target - hr) * (rise if target > hr else fall)
        wobble = 0.8 * wobble + gauss(0.0, 0.7)
        bpm = min(ceiling, max(MIN_BPM, round(hr + wobble)))
        # The beats that fell in this interval, each reporting the RR interval it ends;
        # the next one is drawn around the current rate.
        rr: list[int] = []
        while until_beat <= step_ms:
            rr.append(min(_MAX_RR_UNITS, round(next_rr * RR_UNITS_PER_SECOND / 1000.0)))
            next_rr = 60000.0 / (hr + wobble) * (1.0 + gauss(0.0, hrv))
            until_beat += next_rr
        until_beat -= step_ms
        energy_j += max(0.0, _KEYTEL_OFFSET + _KEYTEL_PER_BPM * hr) * interval * (1000.0 / 60.0)
        energy_kj = None
        if energy and count % ENERGY_EVERY == 0:
            energy_kj = min(0xFFFF, int(energy_j / 1000.0))
        yield HeartRateMeasurement(bpm=bpm, contact=True, energy_kj=energy_kj, rr=tuple(rr))


class SimulatedStrap:
    """A rider's strap through an interval class: ``readings()`` or paced by ``run()``.

    Without a ``profile`` the class is drawn from ``seed`` too; riders of one class share
    the instructor's profile and differ by seed. ``time_scale`` > 1 makes ``run`` that
    many times faster than real time (the readings are the same).
    """

    def __init__(
        self,
        *,
        resting_hr: float = 65,
        max_hr: float = 185,
        seed: int | None = None,
        profile: ClassProfile | None = None,
        energy: bool = True,
        time_scale: float = 1.0,
    ) -> None:
        if not 0 < resting_hr < max_hr:
            raise ValueError("need 0 < resting_hr < max_hr")
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.resting_hr = resting_hr
        self.max_hr = max_hr
        self.seed = seed
        self.profile = profile if profile is not None else ClassProfile.interval_class(seed)
        self.energy = energy
        self.time_scale = time_scale

    def readings(self, interval: float = 1.0) -> Iterator[HeartRateMeasurement]:
        """The class from its start, a reading every ``interval`` s of class time."""
        return generate(
            self.profile,
            resting_hr=self.resting_hr,
            max_hr=self.max_hr,
            seed=self.seed,
            interval=interval,
            energy=self.energy,
        )

    async def run(
        self, on_measurement: Callable[[HeartRateMeasurement], None], *, interval: float = 1.0
    ) -> None:
        """Hand a reading to ``on_measurement`` every ``interval / time_scale`` s, until
        cancelled. Deadlines are absolute, so a slow callback does not make the class drift.
        """
        loop = asyncio.get_running_loop()
        period = interval / self.time_scale
        deadline = loop.time()
        for measurement in self.readings(interval):
            on_measurement(measurement)
            deadline += period
            await asyncio.sleep(max(0.0, deadline - loop.time()))
