"""The simulated strap: a plausible class curve, RR consistent with bpm, deterministic."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from collections.abc import Callable

import pytest

from telemetry.hrm import HeartRateMeasurement, decode
from telemetry.simulate import ENERGY_EVERY, ClassProfile, Segment, SimulatedStrap, generate

SEEDS = range(6)


def whole_class(strap: SimulatedStrap, extra: int = 0) -> list[HeartRateMeasurement]:
    return list(itertools.islice(strap.readings(), int(strap.profile.duration) + extra))


@pytest.fixture(scope="module")
def classes() -> dict[int, tuple[SimulatedStrap, list[HeartRateMeasurement]]]:
    """One whole class per seed, at 1 Hz, with 5 minutes after it."""
    out = {}
    for seed in SEEDS:
        strap = SimulatedStrap(seed=seed, resting_hr=60 + seed, max_hr=180 + 2 * seed)
        out[seed] = (strap, whole_class(strap, extra=300))
    return out


def bpm(readings: list[HeartRateMeasurement], start: float, end: float) -> list[int]:
    return [m.bpm for m in readings[int(start) : int(end)]]


def test_the_profile_is_an_interval_class() -> None:
    for seed in SEEDS:
        kinds = [s.kind for s in ClassProfile.interval_class(seed).segments]
        assert kinds[0] == "warm-up" and kinds[-1] == "cool-down"
        blocks = kinds[1:-1]
        assert 4 <= blocks.count("work") <= 6
        assert blocks == ["work", "recovery"] * (len(blocks) // 2) + ["work"]
        assert 35 * 60 <= ClassProfile.interval_class(seed).duration <= 52 * 60


@pytest.mark.parametrize("seed", SEEDS)
def test_warm_up_rises_from_resting_to_about_120(
    classes: dict[int, tuple[SimulatedStrap, list[HeartRateMeasurement]]], seed: int
) -> None:
    strap, readings = classes[seed]
    start = statistics.mean(bpm(readings, 0, 20))
    end = statistics.mean(bpm(readings, 280, 300))
    assert abs(start - strap.resting_hr) < 5
    assert 105 <= end <= 130
    minute_means = [statistics.mean(bpm(readings, m * 60, m * 60 + 60)) for m in range(5)]
    assert minute_means == sorted(minute_means)


@pytest.mark.parametrize("seed", SEEDS)
def test_work_peaks_above_80_percent_of_max_and_recovery_falls(
    classes: dict[int, tuple[SimulatedStrap, list[HeartRateMeasurement]]], seed: int
) -> None:
    strap, readings = classes[seed]
    spans = list(strap.profile.spans())
    for index, (segment, begin, end) in enumerate(spans):
        if segment.kind == "work":
            assert max(bpm(readings, begin, end)) > 0.8 * strap.max_hr
            # HR lags its target: it climbs through the first minute of work.
            assert statistics.mean(bpm(readings, begin + 50, begin + 60)) > statistics.mean(
                bpm(readings, begin, begin + 10)
            )
        if segment.kind in ("recovery", "cool-down"):
            previous = spans[index - 1][0]
            assert previous.kind == "work"
            at_start = statistics.mean(bpm(readings, begin, begin + 5))
            at_end = statistics.mean(bpm(readings, end - 10, end))
            assert at_end < at_start - 15, (segment, at_start, at_end)
            if segment.kind == "recovery":
                assert at_end < 0.8 * strap.max_hr
    after = bpm(readings, strap.profile.duration, strap.profile.duration + 300)
    expected = strap.resting_hr + 0.2 * (strap.max_hr - strap.resting_hr)
    assert abs(statistics.mean(after) - expected) < 5


@pytest.mark.parametrize("seed", SEEDS)
def test_heart_rate_stays_plausible(
    classes: dict[int, tuple[SimulatedStrap, list[HeartRateMeasurement]]], seed: int
) -> None:
    strap, readings = classes[seed]
    values = [m.bpm for m in readings]
    assert min(values) >= 40 and max(values) <= strap.max_hr + 5
    # Beat-to-beat noise is small: no jumps of more than a few bpm between seconds.
    assert max(abs(b - a) for a, b in itertools.pairwise(values)) <= 8
    assert all(m.contact is True and not m.wide for m in readings)


@pytest.mark.parametrize("seed", SEEDS)
def test_rr_intervals_are_consistent_with_bpm(
    classes: dict[int, tuple[SimulatedStrap, list[HeartRateMeasurement]]], seed: int
) -> None:
    _, readings = classes[seed]
    # Each notification carries the beats that fell in its second: mostly 1-3 of them
    # (none or four when a slow or fast rhythm's phase falls so).
    counts = [len(m.rr) for m in readings]
    assert set(counts) <= {0, 1, 2, 3, 4}
    assert sum(1 <= c <= 3 for c in counts) > 0.98 * len(counts)
    for window in (readings[i : i + 10] for i in range(0, len(readings) - 9, 10)):
        rr_ms = [value for m in window for value in m.rr_ms]
        mean_bpm = statistics.mean(m.bpm for m in window)
        assert abs(60000 / statistics.mean(rr_ms) - mean_bpm) < 0.1 * mean_bpm
        # Beats fill the time: ten one-second readings carry about ten seconds of RR.
        assert 8500 < sum(rr_ms) < 11500
    # Some heart-rate variability, but not much.
    rr = [value for m in readings[1000:1300] for value in m.rr_ms]
    deltas = [abs(b - a) for a, b in itertools.pairwise(rr)]
    assert 1 < statistics.mean(deltas) < 60


def test_energy_is_cumulative_every_tenth_reading(
    classes: dict[int, tuple[SimulatedStrap, list[HeartRateMeasurement]]],
) -> None:
    _, readings = classes[0]
    energies = [m.energy_kj for m in readings]
    marked = energies[ENERGY_EVERY - 1 :: ENERGY_EVERY]
    assert all(e is not None for e in marked)
    assert sum(e is not None for e in energies) == len(marked)
    values = [e for e in marked if e is not None]
    assert values == sorted(values)
    # Keytel's estimate for a ~45 min interval class: a few hundred kcal.
    assert 1000 < values[-1] < 4500
    no_energy = SimulatedStrap(seed=0, energy=False)
    assert all(m.energy_kj is None for m in itertools.islice(no_energy.readings(), 100))


def test_the_same_seed_gives_the_same_class() -> None:
    first = whole_class(SimulatedStrap(seed=42))
    assert first == whole_class(SimulatedStrap(seed=42))
    assert first != whole_class(SimulatedStrap(seed=43))
    profile = ClassProfile.interval_class(1)
    a = list(itertools.islice(generate(profile, seed=5), 600))
    assert a == list(itertools.islice(generate(profile, seed=5), 600))


def test_riders_of_one_class_share_the_profile() -> None:
    profile = ClassProfile.interval_class(3)
    riders = [SimulatedStrap(seed=s, profile=profile) for s in range(3)]
    assert all(r.profile is profile for r in riders)
    series = [[m.bpm for m in itertools.islice(r.readings(), 600)] for r in riders]
    assert series[0] != series[1] != series[2]


def test_readings_round_trip_through_the_wire_format(
    classes: dict[int, tuple[SimulatedStrap, list[HeartRateMeasurement]]],
) -> None:
    for _, readings in classes.values():
        for measurement in readings:
            assert decode(measurement.encode()) == measurement


def test_a_custom_profile_and_interval() -> None:
    profile = ClassProfile((Segment("work", 120.0, 0.9, 0.9),))
    readings = list(
        itertools.islice(generate(profile, resting_hr=60, max_hr=200, seed=1, interval=2.0), 90)
    )
    # 2 s readings: twice the beats per notification, the same kinetics in seconds.
    assert statistics.mean(len(m.rr) for m in readings[40:]) > 4
    assert readings[59].bpm > 0.8 * 200  # after 120 s of work
    assert abs(statistics.mean(m.bpm for m in readings[60:]) - (60 + 0.9 * 140)) < 4


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError):
        SimulatedStrap(resting_hr=190, max_hr=180)
    with pytest.raises(ValueError):
        SimulatedStrap(time_scale=0)
    with pytest.raises(ValueError):
        next(generate(ClassProfile.interval_class(0), interval=0))


def test_a_class_is_cheap_to_generate() -> None:
    strap = SimulatedStrap(seed=9)
    started = time.perf_counter()
    readings = whole_class(strap)
    per_reading = (time.perf_counter() - started) / len(readings)
    assert per_reading < 100e-6  # ~5 us here; hundreds of straps fit in one process


async def test_run_paces_readings_and_stops_when_cancelled() -> None:
    strap = SimulatedStrap(seed=11, time_scale=1000)  # 1 s of class per ms
    got: list[HeartRateMeasurement] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(strap.run(got.append, interval=1.0))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    elapsed = loop.time() - started
    # Paced by absolute deadlines: about one reading per millisecond, no faster.
    assert 0.5 * elapsed * 1000 < len(got) <= elapsed * 1000 + 2
    assert got == list(itertools.islice(strap.readings(), len(got)))


async def test_many_straps_run_in_one_loop() -> None:
    profile = ClassProfile.interval_class(0)
    counts = [0] * 200
    reached = [0]  # straps with 15 readings so far
    all_reached = asyncio.Event()

    def counter(index: int) -> Callable[[HeartRateMeasurement], None]:
        def on_measurement(_: HeartRateMeasurement) -> None:
            counts[index] += 1
            if counts[index] == 15:
                reached[0] += 1
                if reached[0] == len(counts):
                    all_reached.set()

        return on_measurement

    straps = [SimulatedStrap(seed=i, profile=profile, time_scale=100) for i in range(200)]
    tasks = [asyncio.create_task(s.run(counter(i), interval=1.0)) for i, s in enumerate(straps)]
    # At 100x each strap reads every 10 ms: 0.25 s is 25 readings each. Waited for with
    # a generous deadline (a loaded machine runs them all slower, not some of them):
    # what is checked is that every strap runs, side by side, none starved.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_reached.wait(), 20)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert min(counts) >= 15, sorted(counts)[:10]
    assert max(counts) <= 3 * min(counts) + 10, (min(counts), max(counts))
