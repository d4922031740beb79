"""The interval timer of a class as pure arithmetic: where a program is at a given time.

A program is a list of phases (work or rest, each some seconds) repeated for some
rounds. The server keeps only absolute times (when the program started, when it was
paused); every client computes the position from them and its estimate of the server's
clock, so all pages show the same phase and second without the server ticking.
``web/timer.js`` implements the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PhaseKind = Literal["work", "rest"]


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of a round."""

    name: str
    seconds: int
    kind: PhaseKind


@dataclass(frozen=True, slots=True)
class Program:
    """Phases repeated ``rounds`` times."""

    phases: tuple[Phase, ...]
    rounds: int
    title: str = ""

    @property
    def round_s(self) -> int:
        """Seconds in one round."""
        return sum(phase.seconds for phase in self.phases)

    @property
    def total_s(self) -> int:
        """Seconds in the whole program."""
        return self.round_s * self.rounds


@dataclass(frozen=True, slots=True)
class Position:
    """Where a program is: round and phase (1-based round), seconds left in the phase."""

    round: int
    phase_index: int
    phase: Phase
    remaining_s: float
    elapsed_s: float
    done: bool


def position(program: Program, elapsed_s: float) -> Position:
    """The program's position ``elapsed_s`` seconds after its start (clamped to its span)."""
    elapsed = min(max(elapsed_s, 0.0), float(program.total_s))
    if elapsed >= program.total_s:
        last = len(program.phases) - 1
        return Position(program.rounds, last, program.phases[last], 0.0, elapsed, True)
    round_index, into_round = divmod(elapsed, program.round_s)
    for index, phase in enumerate(program.phases):
        if into_round < phase.seconds:
            return Position(
                int(round_index) + 1, index, phase, phase.seconds - into_round, elapsed, False
            )
        into_round -= phase.seconds
    # Floating-point rounding at a round's very end: the next round's first phase.
    first = program.phases[0]
    return Position(int(round_index) + 2, 0, first, float(first.seconds), elapsed, False)


@dataclass(slots=True)
class IntervalTimer:
    """A program running on the server's clock (unix seconds), possibly paused.

    ``started_at`` is when the program would have started had it never been paused:
    resuming moves it forward by the pause, so elapsed time is always "reference time
    minus started_at", the reference being now, or the moment of the pause.
    """

    program: Program
    started_at: float
    paused_at: float | None = None

    def elapsed(self, now: float) -> float:
        """Seconds of the program that have run by ``now``."""
        reference = self.paused_at if self.paused_at is not None else now
        return min(max(reference - self.started_at, 0.0), float(self.program.total_s))

    def finished(self, now: float) -> bool:
        """Whether every phase of every round is over."""
        return self.elapsed(now) >= self.program.total_s

    def position(self, now: float) -> Position:
        """Round, phase and seconds left at ``now``."""
        return position(self.program, self.elapsed(now))

    def pause(self, now: float) -> None:
        """Freeze the program where it is."""
        if self.paused_at is None:
            self.paused_at = now

    def resume(self, now: float) -> None:
        """Carry on from where it was paused."""
        if self.paused_at is not None:
            self.started_at += now - self.paused_at
            self.paused_at = None
