"""Training zones from heart rate and a participant's profile.

Five zones by share of maximum heart rate (the default), or by share of heart-rate
reserve (Karvonen) when the profile asks for it and knows the resting rate:

| zone | name      | share |
|------|-----------|-------|
| 1    | very light| 50-60 % |
| 2    | light     | 60-70 % |
| 3    | moderate  | 70-80 % |
| 4    | hard      | 80-90 % |
| 5    | maximum   | 90 % and up |

Below 50 % is zone 0 (rest). Without a measured maximum, it is estimated from age
with Tanaka et al. (2001): 208 - 0.7 x age, closer than 220 - age for adults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ZONE_FLOORS = (0.5, 0.6, 0.7, 0.8, 0.9)
ZONE_NAMES = ("rest", "very light", "light", "moderate", "hard", "maximum")
DEFAULT_AGE = 35


@dataclass(frozen=True, slots=True)
class Profile:
    """What zones and calories need to know about a participant."""

    age: int | None = None
    max_hr: int | None = None  # measured; wins over the age estimate
    resting_hr: int | None = None
    weight_kg: float | None = None
    sex: Literal["female", "male"] | None = None
    method: Literal["hrmax", "karvonen"] = "hrmax"
    # max_hr was raised by telemetry.max_hr (a hold above it), not set by the participant
    max_hr_learned: bool = False

    @property
    def hr_max(self) -> float:
        """Measured maximum heart rate, else the age estimate."""
        if self.max_hr:
            return float(self.max_hr)
        return 208 - 0.7 * (self.age if self.age is not None else DEFAULT_AGE)


def intensity(bpm: float, profile: Profile) -> float:
    """Share of max (or, with Karvonen and a resting rate, of reserve) a heart rate is."""
    hr_max = profile.hr_max
    if profile.method == "karvonen" and profile.resting_hr is not None:
        reserve = hr_max - profile.resting_hr
        return (bpm - profile.resting_hr) / reserve if reserve > 0 else 0.0
    return bpm / hr_max


def zone(bpm: float, profile: Profile) -> int:
    """The zone (0-5) a heart rate falls in."""
    share = intensity(bpm, profile)
    result = 0
    for index, floor in enumerate(ZONE_FLOORS, start=1):
        if share >= floor:
            result = index
    return result


def zone_floors_bpm(profile: Profile) -> list[int]:
    """The heart rates where zones 1-5 begin, for this profile (for drawing zone bands)."""
    hr_max = profile.hr_max
    if profile.method == "karvonen" and profile.resting_hr is not None:
        reserve = hr_max - profile.resting_hr
        return [round(profile.resting_hr + floor * reserve) for floor in ZONE_FLOORS]
    return [round(floor * hr_max) for floor in ZONE_FLOORS]


def percent_of_max(bpm: float, profile: Profile) -> int:
    """Heart rate as a whole percentage of the maximum."""
    return round(100 * bpm / profile.hr_max)
