"""Zones, calories and training load."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.summary import summarize
from telemetry.zones import Profile, percent_of_max, zone


def test_hr_max_from_age_or_measured() -> None:
    assert Profile(age=40).hr_max == pytest.approx(180.0)
    assert Profile(age=40, max_hr=192).hr_max == 192


@pytest.mark.parametrize(
    ("bpm", "expected"), [(80, 0), (90, 1), (108, 2), (126, 3), (144, 4), (162, 5), (200, 5)]
)
def test_five_zones_by_share_of_max(bpm: int, expected: int) -> None:
    assert zone(bpm, Profile(max_hr=180)) == expected


def test_karvonen_uses_the_reserve() -> None:
    profile = Profile(max_hr=180, resting_hr=60, method="karvonen")
    # 60 + 0.7 * 120 = 144 is the floor of zone 3 by reserve (zone 4 by share of max).
    assert zone(144, profile) == 3
    assert zone(144, Profile(max_hr=180)) == 4


def test_percent_of_max() -> None:
    assert percent_of_max(153, Profile(max_hr=180)) == 85


@given(st.integers(30, 220), st.integers(30, 220), st.integers(120, 220))
def test_zones_never_fall_as_heart_rate_rises(a: int, b: int, max_hr: int) -> None:
    profile = Profile(max_hr=max_hr)
    low, high = sorted((a, b))
    assert zone(low, profile) <= zone(high, profile)


def test_keytel_calories_for_a_known_case() -> None:
    # 30 min at 150 bpm, man, 35 years, 80 kg:
    # (-55.0969 + 0.6309*150 + 0.1988*80 + 0.2017*35) kJ/min = 62.5016 kJ/min
    readings = [(float(t), 150) for t in range(0, 1801)]
    summary = summarize(readings, Profile(age=35, weight_kg=80, sex="male", max_hr=190))
    assert summary.calories_kcal == pytest.approx(62.5016 * 30.0167 / 4.184, rel=1e-3)
    assert summary.average_bpm == 150 and summary.peak_bpm == 150
    assert summary.duration_s == 1800
    assert summary.minutes_in_zone[3] == pytest.approx(30.02, abs=0.02)  # 150/190 = 79 %


def test_trimp_for_a_known_case() -> None:
    # 60 min at HRr 0.5 (woman): 60 * 0.5 * 0.86 * e^(1.67*0.5) = 59.43
    profile = Profile(max_hr=180, resting_hr=60, sex="female")
    readings = [(float(t), 120) for t in range(0, 3601)]
    assert summarize(readings, profile).trimp == pytest.approx(59.43, abs=0.1)


def test_gaps_count_at_most_five_seconds() -> None:
    readings = [(0.0, 100), (1.0, 100), (600.0, 100), (601.0, 100)]
    summary = summarize(readings, Profile(max_hr=200))
    assert sum(summary.minutes_in_zone) == pytest.approx((1 + 5 + 1 + 1) / 60, abs=0.01)


def test_no_readings() -> None:
    assert summarize([], Profile()).peak_bpm == 0
