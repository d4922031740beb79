"""Signal quality and heart-rate variability from a strap's RR intervals.

A strap that loses skin contact, or a chest strap shifting on a sweaty torso, sends RR
intervals that no heart beat: a missed beat doubles one, a noise spike halves one. A
tile that shows such a signal as a confident number misleads, and one bad interval
wrecks an RMSSD. So each interval is judged before it counts:

- outside 300-2000 ms (200 to 30 bpm) it is implausible;
- differing by more than 20 % from the median of the last ``MEDIAN_OF`` plausible
  intervals it is an artefact. This is the "20 % rule" of Malik et al. (1989),
  "Prognostic value of heart rate variability after myocardial infarction: a
  comparison of different data-processing methods" (Med Biol Eng Comput 27:603-611),
  which compares each interval with the one before; the median of five makes one bad
  interval unable to condemn the good one after it. Until ``MEDIAN_OF`` plausible
  intervals were seen, a plausible interval is taken as it is.

RMSSD (root mean square of successive differences; Task Force of the ESC and NASPE
1996) is taken over the successive differences of the last ``WINDOW_S`` seconds in
which *both* intervals are clean: an artefact is deleted, never interpolated, and the
pairs around it do not count. With fewer than ``MIN_PAIRS`` such pairs it is unknown.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

MIN_RR_MS = 300.0
MAX_RR_MS = 2000.0
MAX_DEVIATION = 0.20  # Malik's 20 % rule
MEDIAN_OF = 5
WINDOW_S = 60.0
MIN_PAIRS = 20  # ~20 s of beats: fewer differences make an RMSSD that swings widely
QUALITY_OF = 10  # the signal is judged on the last 10 intervals…
BAD_SHARE = 0.3  # …and is "artefacts" when 3 or more of them were…
QUALITY_S = 15.0  # …of those of the last 15 s: a strap that stops sending them recovers
MAX_GAP_S = 5.0  # intervals further apart than this are not successive

Signal = Literal["ok", "no_contact", "artefacts"]


def is_plausible(rr_ms: float) -> bool:
    """Whether an interval could be a heart beat at all (300-2000 ms)."""
    return MIN_RR_MS <= rr_ms <= MAX_RR_MS


def _median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


@dataclass(slots=True)
class RrFilter:
    """Judges RR intervals one after the other (Malik's rule against a running median)."""

    recent: deque[float] = field(default_factory=lambda: deque(maxlen=MEDIAN_OF))

    def clean(self, rr_ms: float) -> bool:
        """Whether ``rr_ms`` is a clean interval; it joins the median if plausible."""
        if not is_plausible(rr_ms):
            return False
        ok = True
        if len(self.recent) == MEDIAN_OF:
            reference = _median(self.recent)
            ok = abs(rr_ms - reference) <= MAX_DEVIATION * reference
        self.recent.append(rr_ms)
        return ok


def clean_pairs(intervals: Iterable[tuple[float, float]]) -> list[float]:
    """Successive differences (ms) of ``(unix s, rr ms)`` intervals in time order, both
    intervals clean and no more than ``MAX_GAP_S`` apart."""
    rr_filter = RrFilter()
    out: list[float] = []
    previous: tuple[float, float] | None = None  # (t, rr) of the last interval, if clean
    for t, rr in intervals:
        ok = rr_filter.clean(rr)
        if ok and previous is not None and t - previous[0] <= MAX_GAP_S:
            out.append(rr - previous[1])
        previous = (t, rr) if ok else None
    return out


def rmssd(differences: Iterable[float]) -> float | None:
    """RMSSD (ms, one decimal) of successive differences; None under ``MIN_PAIRS``."""
    values = list(differences)
    if len(values) < MIN_PAIRS:
        return None
    return round(math.sqrt(sum(d * d for d in values) / len(values)), 1)


@dataclass(slots=True)
class HrvWindow:
    """One participant's live signal quality and RMSSD over the last ``WINDOW_S``.

    Cheap enough for every reading: a sum of squares kept as differences enter and
    leave the window, a median of five per interval."""

    rr_filter: RrFilter = field(default_factory=RrFilter)
    squares: deque[tuple[float, float]] = field(default_factory=deque)  # (t, difference²)
    total: float = 0.0
    quality: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=QUALITY_OF))
    previous: tuple[float, float] | None = None  # last clean interval (t, rr)
    last_t: float | None = None

    def add(self, t: float, rr_intervals: Iterable[float]) -> None:
        """A reading's intervals (maybe none), at ``t`` (unix s); an older reading than the
        last one (re-sent after a drop) is left out, as it is not successive."""
        if self.last_t is not None and t < self.last_t:
            return
        self.last_t = t
        for rr in rr_intervals:
            ok = self.rr_filter.clean(rr)
            self.quality.append((t, ok))
            previous = self.previous
            if ok and previous is not None and t - previous[0] <= MAX_GAP_S:
                square = (rr - previous[1]) ** 2
                self.squares.append((t, square))
                self.total += square
            self.previous = (t, rr) if ok else None
        while self.squares and self.squares[0][0] < t - WINDOW_S:
            self.total -= self.squares.popleft()[1]

    def rmssd(self) -> float | None:
        """RMSSD (ms, one decimal) of the window; None under ``MIN_PAIRS`` pairs."""
        count = len(self.squares)
        if count < MIN_PAIRS:
            return None
        return round(math.sqrt(max(0.0, self.total) / count), 1)

    def signal(self, contact: bool | None) -> Signal:
        """The signal: "no_contact" when the strap says so, "artefacts" when too many of the
        last intervals were, else "ok" (also for straps that send no intervals)."""
        if contact is False:
            return "no_contact"
        since = (self.last_t or 0.0) - QUALITY_S
        bad = sum(1 for t, ok in self.quality if not ok and t > since)
        if bad >= BAD_SHARE * QUALITY_OF:
            return "artefacts"
        return "ok"
