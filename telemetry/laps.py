"""A class's laps: the phases of its interval timer as they ran, in wall-clock time.

The server stores each start (with its program), pause, resume and stop of the timer
(``storage/timer_events.py``). Replaying them gives every phase's start and end, pauses
included (a phase paused for a minute is a minute longer), cut short by a stop or by a
new start. Exports (``telemetry/activity_export.py``) fill the time between timers, and
before and after them, with laps of their own, so that every reading is in one lap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

LapKind = Literal["work", "rest", "free"]


@dataclass(frozen=True, slots=True)
class Lap:
    """One lap: ``start`` and ``end`` in unix seconds, a name, work/rest or free."""

    start: float
    end: float
    name: str
    kind: LapKind


@dataclass(slots=True)
class _Run:
    """A timer program being replayed: its phases' ends in program seconds, and the
    wall-clock times at which it ran (segments between pauses)."""

    phases: list[tuple[str, LapKind, float, float]]  # name, kind, from, to (program s)
    segments: list[tuple[float, float]]  # (wall start, program seconds at that start)
    paused_at: float | None = None
    elapsed_at_pause: float = 0.0

    def elapsed(self, at: float) -> float:
        if self.paused_at is not None:
            return self.elapsed_at_pause
        wall, offset = self.segments[-1]
        return offset + max(0.0, at - wall)

    def wall(self, program_s: float) -> float:
        """When the program reached ``program_s`` (its latest segment that covers it)."""
        for wall, offset in reversed(self.segments):
            if program_s >= offset:
                return wall + (program_s - offset)
        return self.segments[0][0]

    def laps(self, ended_at: float | None) -> list[Lap]:
        total = self.phases[-1][3] if self.phases else 0.0
        done = total if ended_at is None else min(total, self.elapsed(ended_at))
        out = []
        for name, kind, start, end in self.phases:
            if start >= done:
                break
            stop = self.wall(min(end, done))
            if ended_at is not None and end > done:
                stop = ended_at  # stopped (or replaced) in this phase: it ends then
            out.append(Lap(self.wall(start), stop, name, kind))
        return out


def _run(program: dict[str, Any], at: float) -> _Run | None:
    phases: list[tuple[str, LapKind, float, float]] = []
    position = 0.0
    rounds = int(program.get("rounds", 1))
    for round_number in range(1, rounds + 1):
        for phase in program.get("phases", []):
            seconds = float(phase["seconds"])
            kind: LapKind = "rest" if phase.get("kind") == "rest" else "work"
            name = str(phase.get("name") or kind)
            label = f"{name} ({round_number}/{rounds})" if rounds > 1 else name
            phases.append((label, kind, position, position + seconds))
            position += seconds
    return _Run(phases, [(at, 0.0)]) if phases else None


def timer_laps(events: Iterable[tuple[float, str, dict[str, Any] | None]]) -> list[Lap]:
    """The phases that ran, from ``(at, action, program)`` events in time order."""
    laps: list[Lap] = []
    run: _Run | None = None
    for at, action, program in events:
        if action == "start":
            if run is not None:
                laps += run.laps(ended_at=at)
            run = _run(program or {}, at)
        elif run is None:
            continue
        elif action == "stop":
            laps += run.laps(ended_at=at)
            run = None
        elif action == "pause" and run.paused_at is None:
            run.elapsed_at_pause = run.elapsed(at)
            run.paused_at = at
        elif action == "resume" and run.paused_at is not None:
            run.segments.append((at, run.elapsed_at_pause))
            run.paused_at = None
    if run is not None:
        laps += run.laps(ended_at=run.paused_at)
    return laps


def covering(laps: Sequence[Lap], start: float, end: float) -> list[Lap]:
    """``laps`` within ``[start, end]`` with the time around and between them as free
    laps ("Warm-up", "Between intervals", "Cool-down"): every moment in exactly one."""
    out: list[Lap] = []
    cursor = start
    inside = [lap for lap in laps if lap.end > start and lap.start < end]
    for lap in inside:
        lap_start, lap_end = max(lap.start, start), min(lap.end, end)
        if lap_start > cursor:
            out.append(Lap(cursor, lap_start, "Warm-up" if not out else "Between intervals",
                           "free"))  # fmt: skip
        if lap_end > lap_start:
            out.append(Lap(max(lap_start, cursor), lap_end, lap.name, lap.kind))
            cursor = max(cursor, lap_end)
    if cursor < end or not out:
        out.append(Lap(cursor, end, "Cool-down" if inside else "Class", "free"))
    return out
