"""A participant's class as a file that Strava, Garmin Connect and TrainingPeaks import:
TCX (Garmin's Training Center XML, v2) and FIT (Garmin's binary activity format).

Both carry every heart-rate reading, one lap per interval of the instructor's timer
(with warm-up, between-interval and cool-down laps around them: ``telemetry/laps.py``),
each lap's calories (the summary's estimate, ``telemetry/summary.py``), average and
maximum; the FIT file also carries the strap's RR intervals (HRV messages), which TCX
has no element for. There is no distance or position: a class happens in one place.
The FIT file is written by ``telemetry/fit_export.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree import ElementTree

from .laps import Lap
from .rows import HeartRateRow
from .summary import summarize
from .zones import Profile

TCX_NS = "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"


@dataclass(frozen=True, slots=True)
class LapFigures:
    """What a lap's readings add up to."""

    lap: Lap
    readings: tuple[HeartRateRow, ...]
    calories: int
    average_bpm: int
    max_bpm: int


def lap_figures(
    laps: Sequence[Lap], readings: Sequence[HeartRateRow], profile: Profile
) -> list[LapFigures]:
    """Each lap with its readings (a reading at a boundary goes to the later lap)."""
    out = []
    index = 0
    for number, lap in enumerate(laps):
        last = number == len(laps) - 1
        mine: list[HeartRateRow] = []
        while index < len(readings) and (last or readings[index].time < lap.end):
            mine.append(readings[index])
            index += 1
        summary = summarize([(r.time, r.bpm) for r in mine], profile)
        out.append(LapFigures(lap, tuple(mine), round(summary.calories_kcal),
                              round(summary.average_bpm), summary.peak_bpm))  # fmt: skip
    return out


def _iso(unix_s: float) -> str:
    moment = datetime.datetime.fromtimestamp(unix_s, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _sub(parent: ElementTree.Element, tag: str, text: str | None = None) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, f"{{{TCX_NS}}}{tag}")
    if text is not None:
        element.text = text
    return element


def _bpm(parent: ElementTree.Element, tag: str, bpm: int) -> None:
    _sub(_sub(parent, tag), "Value", str(min(255, max(1, bpm))))


def tcx(laps: Sequence[LapFigures], title: str) -> bytes:
    """The class as a TCX document (UTF-8), one Activity of sport "Other"."""
    ElementTree.register_namespace("", TCX_NS)
    root = ElementTree.Element(f"{{{TCX_NS}}}TrainingCenterDatabase")
    activity = _sub(_sub(root, "Activities"), "Activity")
    activity.set("Sport", "Other")
    _sub(activity, "Id", _iso(laps[0].lap.start))
    for figures in laps:
        lap = figures.lap
        element = _sub(activity, "Lap")
        element.set("StartTime", _iso(lap.start))
        _sub(element, "TotalTimeSeconds", f"{max(0.0, lap.end - lap.start):.1f}")
        _sub(element, "DistanceMeters", "0")
        _sub(element, "Calories", str(min(65535, figures.calories)))
        if figures.readings:
            _bpm(element, "AverageHeartRateBpm", figures.average_bpm)
            _bpm(element, "MaximumHeartRateBpm", figures.max_bpm)
        _sub(element, "Intensity", "Resting" if lap.kind == "rest" else "Active")
        _sub(element, "TriggerMethod", "Time" if lap.kind != "free" else "Manual")
        if figures.readings:
            track = _sub(element, "Track")
            for reading in figures.readings:
                point = _sub(track, "Trackpoint")
                _sub(point, "Time", _iso(reading.time))
                _bpm(point, "HeartRateBpm", reading.bpm)
        _sub(element, "Notes", lap.name)
    _sub(activity, "Notes", f"PulseRoom class: {title}")
    ElementTree.indent(root)
    body: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return body
