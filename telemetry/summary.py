"""A participant's class summary from their heart-rate readings.

Calories follow Keytel et al. (2005), "Prediction of energy expenditure from heart
rate monitoring during submaximal exercise" (J Sports Sci 23:289-297), the equations
without VO2max, in kJ/min:

- men:   -55.0969 + 0.6309 HR + 0.1988 weight + 0.2017 age
- women: -20.4022 + 0.4472 HR - 0.1263 weight + 0.0740 age

Training load is Banister's TRIMP: sum over time (min) x HRr x k x e^(b x HRr), with
HRr the heart-rate reserve share, k, b = 0.64, 1.92 (men) or 0.86, 1.67 (women).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .zones import Profile, zone

KJ_PER_KCAL = 4.184
MAX_STEP_S = 5.0  # a longer gap between readings counts as this long (strap dropped)
DEFAULT_WEIGHT_KG = 70.0
DEFAULT_RESTING_HR = 60


@dataclass(frozen=True, slots=True)
class Summary:
    """What a participant sees after class."""

    duration_s: float
    average_bpm: float
    peak_bpm: int
    minutes_in_zone: tuple[float, ...]  # zones 0-5
    calories_kcal: float
    trimp: float


def _kj_per_minute(bpm: float, profile: Profile) -> float:
    age = profile.age if profile.age is not None else 35
    weight = profile.weight_kg or DEFAULT_WEIGHT_KG
    male = -55.0969 + 0.6309 * bpm + 0.1988 * weight + 0.2017 * age
    female = -20.4022 + 0.4472 * bpm - 0.1263 * weight + 0.0740 * age
    value = {"male": male, "female": female}.get(profile.sex or "", (male + female) / 2)
    return max(0.0, value)


def _trimp_weight(bpm: float, profile: Profile) -> float:
    resting = profile.resting_hr or DEFAULT_RESTING_HR
    reserve = profile.hr_max - resting
    if reserve <= 0:
        return 0.0
    share = min(1.0, max(0.0, (bpm - resting) / reserve))
    k, b = {"male": (0.64, 1.92), "female": (0.86, 1.67)}.get(profile.sex or "", (0.75, 1.795))
    return share * k * math.exp(b * share)


def weighted(readings: Sequence[tuple[float, int]]) -> Iterator[tuple[int, float]]:
    """``(bpm, seconds)`` per reading: each counts until the next one, at most MAX_STEP_S;
    the last one (and one sharing its time with the next) counts one second.

    Every time-weighted figure (minutes in zone, calories, TRIMP, effort points) uses
    this, so they agree on what a gap is worth."""
    if not readings:
        return
    for (t, bpm), (t_next, _) in zip(readings, [*readings[1:], readings[-1]], strict=True):
        yield bpm, (min(MAX_STEP_S, max(0.0, t_next - t)) if t_next != t else 1.0)


def summarize(readings: Sequence[tuple[float, int]], profile: Profile) -> Summary:
    """Summary of ``(unix time, bpm)`` readings in time order."""
    if not readings:
        return Summary(0.0, 0.0, 0, (0.0,) * 6, 0.0, 0.0)
    minutes = [0.0] * 6
    kj = trimp = weighted_bpm = total_s = 0.0
    for bpm, step in weighted(readings):
        total_s += step
        weighted_bpm += bpm * step
        minutes[zone(bpm, profile)] += step / 60
        kj += _kj_per_minute(bpm, profile) * step / 60
        trimp += _trimp_weight(bpm, profile) * step / 60
    return Summary(
        duration_s=readings[-1][0] - readings[0][0],
        average_bpm=round(weighted_bpm / total_s, 1) if total_s else 0.0,
        peak_bpm=max(bpm for _, bpm in readings),
        minutes_in_zone=tuple(round(m, 2) for m in minutes),
        calories_kcal=round(kj / KJ_PER_KCAL, 1),
        trimp=round(trimp, 1),
    )
