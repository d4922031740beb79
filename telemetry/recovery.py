"""Heart-rate recovery: how far the heart rate fell 60 s after the work stopped.

A fit heart slows quickly once effort stops; the drop one minute after exercise (Cole
et al. 1999, "Heart-rate recovery immediately after exercise as a predictor of
mortality", N Engl J Med 341:1351-1357) is the usual figure, in bpm. "After the work"
is the end of the class's last *work* interval of the timer (telemetry/laps.py), or,
in a class that ran no timer, the moment of the peak heart rate.

The heart rate at a moment is the reading nearest to it within ``NEAR_S``; without a
reading that close on either side the recovery is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

from .laps import Lap

RECOVERY_S = 60.0
NEAR_S = 5.0


def _at(readings: Sequence[tuple[float, int]], moment: float) -> int | None:
    best: tuple[float, int] | None = None
    for t, bpm in readings:
        distance = abs(t - moment)
        if distance <= NEAR_S and (best is None or distance < best[0]):
            best = (distance, bpm)
    return None if best is None else best[1]


def recovery_start(readings: Sequence[tuple[float, int]], laps: Sequence[Lap]) -> float | None:
    """When the work stopped: the last work lap's end, else the (first) peak's time."""
    work = [lap for lap in laps if lap.kind == "work"]
    if work:
        return max(lap.end for lap in work)
    if not readings:
        return None
    peak = max(bpm for _, bpm in readings)
    return next(t for t, bpm in readings if bpm == peak)


def hr_recovery(readings: Sequence[tuple[float, int]], laps: Sequence[Lap]) -> int | None:
    """The drop in bpm ``RECOVERY_S`` after the work stopped, from ``(unix s, bpm)``
    readings in time order and the class's timer laps; None when unknown."""
    start = recovery_start(readings, laps)
    if start is None:
        return None
    before, after = _at(readings, start), _at(readings, start + RECOVERY_S)
    if before is None or after is None:
        return None
    return before - after
