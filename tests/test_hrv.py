"""The arithmetic of signal quality, RMSSD, the learning maximum and HR recovery."""

from __future__ import annotations

import itertools
import math

import pytest

from telemetry.hrv import MIN_PAIRS, WINDOW_S, HrvWindow, RrFilter, clean_pairs, rmssd
from telemetry.laps import Lap
from telemetry.max_hr import HOLD_S, MaxHrLearner
from telemetry.recovery import hr_recovery, recovery_start
from telemetry.simulate import ClassProfile, generate

# -- artefacts --------------------------------------------------------------------------


def test_implausible_intervals_are_artefacts() -> None:
    rr_filter = RrFilter()
    assert not rr_filter.clean(250.0)  # 240 bpm
    assert not rr_filter.clean(2100.0)  # 29 bpm
    assert rr_filter.clean(300.0) and rr_filter.clean(2000.0)  # the bounds are plausible


def test_malik_20_percent_rule_against_the_median() -> None:
    rr_filter = RrFilter()
    for _ in range(5):
        assert rr_filter.clean(800.0)
    assert rr_filter.clean(960.0)  # +20 %: still a beat
    assert not rr_filter.clean(1600.0)  # a missed beat doubles the interval
    assert not rr_filter.clean(400.0)  # noise halves one
    # The median of five is not thrown by the two artefacts it now holds (960, 1600,
    # 400, 800, 800 → 800): the next good beat is clean.
    assert rr_filter.clean(810.0)


def test_one_bad_first_interval_does_not_condemn_the_rest() -> None:
    rr_filter = RrFilter()
    results = [rr_filter.clean(rr) for rr in (1700.0, 800.0, 810.0, 790.0, 800.0, 805.0, 795.0)]
    assert results[-2:] == [True, True]
    assert not rr_filter.clean(1700.0)  # once the median knows the rhythm, it is caught


# -- RMSSD ------------------------------------------------------------------------------


def test_rmssd_of_known_differences() -> None:
    # Alternating 800/850: every successive difference is ±50 ms, so RMSSD is 50.
    intervals = [(float(i), 800.0 if i % 2 else 850.0) for i in range(41)]
    assert rmssd(clean_pairs(intervals)) == 50.0
    # 800, 810, 830, …: differences 10, 20, 10, 20, … → sqrt((100 + 400) / 2)
    values = [800.0]
    for i in range(40):
        values.append(values[-1] + (10.0 if i % 2 == 0 else -20.0))
    assert rmssd(clean_pairs(list(enumerate(values)))) == round(math.sqrt(250), 1)


def test_rmssd_needs_enough_pairs() -> None:
    assert rmssd([50.0] * (MIN_PAIRS - 1)) is None
    assert rmssd([50.0] * MIN_PAIRS) == 50.0


def test_artefacts_and_pairs_around_them_are_deleted_not_counted() -> None:
    intervals = [(float(i), 800.0 if i % 2 else 850.0) for i in range(40)]
    intervals[20] = (20.0, 1700.0)  # a missed beat: its two differences do not count
    pairs = clean_pairs(intervals)
    assert len(pairs) == 39 - 2
    assert rmssd(pairs) == 50.0  # without deletion it would be ~220


def test_gap_breaks_succession() -> None:
    assert clean_pairs([(0.0, 800.0), (10.0, 850.0)]) == []
    assert clean_pairs([(0.0, 800.0), (1.0, 850.0)]) == [50.0]


def test_live_window_is_the_last_60_seconds() -> None:
    window = HrvWindow()
    for second in range(30):  # ±50 ms for half a minute
        window.add(float(second), [800.0 if second % 2 else 850.0])
    assert window.rmssd() == 50.0
    for second in range(30, 30 + int(WINDOW_S) + 1):  # then ±10 ms for a whole minute
        window.add(float(second), [800.0 if second % 2 else 810.0])
    assert window.rmssd() == 10.0  # the ±50 ms left the window
    window.add(10.0, [2000.0])  # re-sent, older: not successive, not counted
    assert window.rmssd() == 10.0


def test_signal_quality() -> None:
    window = HrvWindow()
    assert window.signal(None) == "ok"  # a strap without RR intervals
    assert window.signal(False) == "no_contact"
    for second in range(10):
        window.add(float(second), [800.0])
    assert window.signal(True) == "ok"
    window.add(10.0, [1700.0, 350.0, 1900.0])  # three of the last ten are artefacts
    assert window.signal(True) == "artefacts"
    for second in range(11, 21):
        window.add(float(second), [800.0])
    assert window.signal(True) == "ok"  # ten clean ones later, trusted again
    window.add(21.0, [1700.0, 350.0, 1900.0])
    assert window.signal(True) == "artefacts"
    window.add(36.0, [])  # then no intervals for 15 s: the old artefacts no longer count
    assert window.signal(True) == "ok"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_simulated_class_is_never_flagged_and_has_an_rmssd(seed: int) -> None:
    # telemetry/simulate.py's straps beat with 2-4 % variability through intervals from
    # rest to near max: real rhythm, which the 20 % rule must not call artefacts.
    profile = ClassProfile.interval_class(seed)
    window = HrvWindow()
    verdicts = set()
    readings = itertools.islice(generate(profile, seed=seed), int(profile.duration))
    for second, measurement in enumerate(readings):
        window.add(float(second), measurement.rr_ms)
        verdicts.add(window.signal(measurement.contact))
    assert verdicts == {"ok"}
    value = window.rmssd()
    assert value is not None and 5 < value < 60


# -- the learning maximum ---------------------------------------------------------------


def _hold(learner: MaxHrLearner, start: float, seconds: int, bpm: int, hr_max: float) -> list[int]:
    out = []
    for second in range(seconds + 1):
        raised = learner.add(start + second, bpm, hr_max)
        if raised is not None:
            out.append(raised)
    return out


def test_a_30_second_hold_raises_the_maximum_to_the_rate_held() -> None:
    learner = MaxHrLearner()
    assert _hold(learner, 0.0, int(HOLD_S) - 1, 186, 180.0) == []  # 29 s: not yet
    assert learner.add(HOLD_S, 186, 180.0) == 186  # 30 s


def test_the_raise_is_capped_at_10_bpm() -> None:
    learner = MaxHrLearner()
    assert _hold(learner, 0.0, int(HOLD_S), 200, 180.0) == [190]
    # The next raise needs a hold of its own above the new maximum.
    assert _hold(learner, 31.0, int(HOLD_S) - 1, 200, 190.0) == []
    assert learner.add(31.0 + HOLD_S, 200, 190.0) == 200


def test_never_past_the_profile_ceiling() -> None:
    assert _hold(MaxHrLearner(), 0.0, int(HOLD_S), 240, 225.0) == [230]


def test_the_raise_is_the_lowest_rate_of_the_hold() -> None:
    learner = MaxHrLearner()
    for second in range(int(HOLD_S)):
        assert learner.add(float(second), 190 if second != 12 else 183, 180.0) is None
    assert learner.add(HOLD_S, 195, 180.0) == 183


@pytest.mark.parametrize(
    "interruption",
    [
        "dip",  # one reading at or below the maximum
        "gap",  # the strap dropped for more than 5 s
        "untrusted",  # no contact, or artefacts
    ],
)
def test_an_interrupted_hold_starts_again(interruption: str) -> None:
    learner = MaxHrLearner()
    for second in range(20):
        assert learner.add(float(second), 190, 180.0) is None
    if interruption == "dip":
        assert learner.add(20.0, 180, 180.0) is None
        start = 21.0
    elif interruption == "gap":
        start = 26.0  # 7 s after the last reading: the hold restarts here
    else:
        assert learner.add(20.0, 190, 180.0, trusted=False) is None
        start = 21.0
    assert _hold(learner, start, int(HOLD_S) - 1, 190, 180.0) == []
    assert learner.add(start + HOLD_S, 190, 180.0) == 190


def test_gaps_up_to_5_seconds_keep_the_hold() -> None:
    learner = MaxHrLearner()
    raised = [learner.add(float(t), 190, 180.0) for t in range(0, 31, 5)]
    assert raised[-1] == 190


def test_older_readings_are_left_out() -> None:
    learner = MaxHrLearner()
    _hold(learner, 0.0, 20, 190, 180.0)
    assert learner.add(5.0, 150, 180.0) is None  # re-sent, older: does not end the hold
    assert _hold(learner, 21.0, 9, 190, 180.0) == [190]


def test_no_raise_when_the_hold_is_not_above_the_rounded_maximum() -> None:
    learner = MaxHrLearner()
    assert _hold(learner, 0.0, int(HOLD_S), 184, 183.5) == []  # 184 is the maximum, rounded


# -- recovery ---------------------------------------------------------------------------


def test_recovery_after_the_last_work_interval() -> None:
    readings = [(float(t), 170 if t <= 100 else 130) for t in range(0, 200, 2)]
    laps = [Lap(0.0, 40.0, "Work", "work"), Lap(40.0, 60.0, "Rest", "rest"),
            Lap(60.0, 100.0, "Work", "work"), Lap(100.0, 120.0, "Rest", "rest")]  # fmt: skip
    assert recovery_start(readings, laps) == 100.0
    assert hr_recovery(readings, laps) == 40


def test_recovery_after_the_peak_without_a_timer() -> None:
    readings = [(0.0, 120), (50.0, 181), (51.0, 178), (110.0, 150), (111.0, 149)]
    assert recovery_start(readings, []) == 50.0
    assert hr_recovery(readings, []) == 31


def test_recovery_unknown_without_readings_near_the_moments() -> None:
    assert hr_recovery([], []) is None
    assert hr_recovery([(0.0, 180), (100.0, 120)], []) is None  # nothing near 60 s after


# -- the benchmark ----------------------------------------------------------------------


def test_the_benchmark_runs_and_reports_per_reading_cost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.heart_signals import main

    result = main(["--participants", "10", "--readings", "2000", "--json"])
    assert result["readings"] == 2000 and 0 < result["us_per_reading"] < 1000
    assert '"us_per_reading"' in capsys.readouterr().out
