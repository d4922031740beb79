"""Effort points: points per minute by heart-rate zone, and a class's target.

The default scheme is Myzone's Effort Points (MEPs), whose five zones are ours
(telemetry/zones.py: 50, 60, 70, 80 and 90 % of maximum heart rate):

| zone | share of max | points per minute |
|------|--------------|-------------------|
| 0    | under 50 %   | 0 |
| 1    | 50-60 %      | 1 |
| 2    | 60-70 %      | 2 |
| 3    | 70-80 %      | 3 |
| 4    | 80-90 %      | 4 |
| 5    | 90 % and up  | 4 |

Myzone gives zone 5 no more than zone 4: minutes at the very top are not worth chasing
for points. An instructor may set other values per class (``EffortScheme``), and a
target: minutes in a zone and above (say 12 minutes in zones 4-5), or points.

Time is weighted as every other figure of the summary (``summary.weighted``): a reading
counts until the next one, at most ``MAX_STEP_S`` (a longer gap is a dropped strap), the
last one a second. ``EffortMeter`` does the same live, one reading at a time, so what a
participant saw at the end of class is what their summary says (when readings arrived in
order; a reading older than the last one seen live counts in the summary only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .summary import MAX_STEP_S, weighted
from .zones import Profile, zone

ZONES = 6  # 0 (rest) to 5
MYZONE_POINTS: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 4.0)


@dataclass(frozen=True, slots=True)
class Target:
    """What the instructor asks of everyone in a class.

    ``zone_minutes``: ``value`` minutes in zone ``from_zone`` or above; ``points``:
    ``value`` effort points.
    """

    kind: Literal["zone_minutes", "points"]
    value: float
    from_zone: int = 4


@dataclass(frozen=True, slots=True)
class EffortScheme:
    """A class's points per minute in each zone (0-5), and its target, if any."""

    points_per_minute: tuple[float, ...] = MYZONE_POINTS
    target: Target | None = None

    def points(self, seconds: Sequence[float]) -> float:
        """Points for ``seconds`` spent in each zone, to one decimal."""
        total = sum(rate * s for rate, s in zip(self.points_per_minute, seconds, strict=True))
        return round(total / 60, 1)

    def progress(self, seconds: Sequence[float]) -> float | None:
        """How far towards the target (0-1), or None without one."""
        target = self.target
        if target is None:
            return None
        if target.kind == "points":
            done = self.points(seconds)
        else:
            done = sum(seconds[target.from_zone :]) / 60
        return round(min(1.0, done / target.value), 3)

    def reached(self, seconds: Sequence[float]) -> bool | None:
        """Whether the target is reached, or None without one."""
        progress = self.progress(seconds)
        return None if progress is None else progress >= 1.0


def zone_seconds(readings: Sequence[tuple[float, int]], profile: Profile) -> list[float]:
    """Seconds in each zone of ``(unix time, bpm)`` readings in time order."""
    seconds = [0.0] * ZONES
    for bpm, step in weighted(readings):
        seconds[zone(bpm, profile)] += step
    return seconds


@dataclass(slots=True)
class EffortMeter:
    """One participant's seconds per zone, from live readings as they arrive."""

    seconds: list[float] = field(default_factory=lambda: [0.0] * ZONES)
    last_t: float | None = None
    last_zone: int = 0

    def add(self, t: float, zone_number: int) -> bool:
        """A reading at ``t`` (unix seconds) in a zone; False if older than the last one
        (re-sent after a drop: the summary counts it, live it would count twice)."""
        last = self.last_t
        if last is not None:
            if t < last:
                return False
            # As summary.weighted: the time to this reading, capped; the same time, 1 s.
            self.seconds[self.last_zone] += min(MAX_STEP_S, t - last) if t != last else 1.0
        self.last_t, self.last_zone = t, zone_number
        return True

    def totals(self) -> list[float]:
        """Seconds per zone so far, the latest reading counting one second."""
        totals = list(self.seconds)
        if self.last_t is not None:
            totals[self.last_zone] += 1.0
        return totals
