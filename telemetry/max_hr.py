"""A maximum heart rate that learns from the class, as Myzone's does.

A profile's maximum is often the age estimate (telemetry/zones.py), and for many it is
too low: they sit in zone 5 all class. When a participant *holds* a heart rate above
their maximum for ``HOLD_S`` seconds, the maximum is raised to the rate they held (the
lowest of the hold), by at most ``MAX_STEP_BPM`` at a time: Myzone's rule, so one
spike, or a strap gone wrong, cannot move it far; never past 230 bpm, the highest a
profile may state. A raise starts a new hold: the next
one needs another ``HOLD_S`` above the new maximum.

Only a trusted signal holds: a reading without skin contact or with too many RR
artefacts (telemetry/hrv.py) ends the hold, and so does a gap of more than
``MAX_GAP_S`` between readings (the strap dropped: what happened in between is
unknown). A reading older than the last one (re-sent after a drop) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

HOLD_S = 30.0
MAX_STEP_BPM = 10
MAX_GAP_S = 5.0  # as summary.MAX_STEP_S: a longer gap is a dropped strap
CEILING_BPM = 230  # the highest maximum a profile may state (the `profile` event)


@dataclass(slots=True)
class MaxHrLearner:
    """One participant's hold above their maximum, reading by reading."""

    since: float | None = None  # when the hold began (unix s)
    last_t: float | None = None
    lowest: int = 0  # the lowest heart rate of the hold

    def add(self, t: float, bpm: int, hr_max: float, trusted: bool = True) -> int | None:
        """A reading at ``t`` (unix s): the new maximum (whole bpm) when this reading
        completes a hold of ``HOLD_S`` above ``hr_max``, else None."""
        last = self.last_t
        if last is not None and t < last:
            return None
        self.last_t = t
        if not trusted or bpm <= hr_max:
            self.since = None
            return None
        if self.since is None or last is None or t - last > MAX_GAP_S:
            self.since, self.lowest = t, bpm
            return None
        self.lowest = min(self.lowest, bpm)
        if t - self.since < HOLD_S:
            return None
        self.since = None  # the next raise needs a hold of its own
        current = round(hr_max)
        raised = min(self.lowest, current + MAX_STEP_BPM, CEILING_BPM)
        return raised if raised > current else None
