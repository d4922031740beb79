"""The interval timer's arithmetic alone (signaling/interval_timer.py; web/timer.js mirrors it)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.interval_timer import IntervalTimer, Phase, Program, position

WORK = Phase("Work", 20, "work")
REST = Phase("Rest", 10, "rest")
TABATA = Program(phases=(WORK, REST), rounds=8, title="Tabata")


@pytest.mark.parametrize(
    ("elapsed", "round_", "phase", "remaining", "done"),
    [
        (0.0, 1, "Work", 20.0, False),
        (0.4, 1, "Work", 19.6, False),
        (19.9, 1, "Work", 0.1, False),
        (20.0, 1, "Rest", 10.0, False),
        (29.5, 1, "Rest", 0.5, False),
        (30.0, 2, "Work", 20.0, False),
        (235.0, 8, "Rest", 5.0, False),
        (240.0, 8, "Rest", 0.0, True),
        (1000.0, 8, "Rest", 0.0, True),
        (-5.0, 1, "Work", 20.0, False),
    ],
)
def test_position_of_a_tabata(
    elapsed: float, round_: int, phase: str, remaining: float, done: bool
) -> None:
    where = position(TABATA, elapsed)
    assert (where.round, where.phase.name, where.done) == (round_, phase, done)
    assert where.remaining_s == pytest.approx(remaining)


def test_totals() -> None:
    assert (TABATA.round_s, TABATA.total_s) == (30, 240)


def test_pause_freezes_and_resume_loses_nothing() -> None:
    timer = IntervalTimer(TABATA, started_at=1000.0)
    assert timer.position(1012.0).remaining_s == pytest.approx(8.0)
    timer.pause(1012.0)
    timer.pause(1013.0)  # pausing twice keeps the first moment
    assert timer.position(1100.0).remaining_s == pytest.approx(8.0)
    timer.resume(1100.0)
    assert timer.started_at == pytest.approx(1088.0)
    assert timer.position(1101.0).remaining_s == pytest.approx(7.0)
    timer.resume(1102.0)  # not paused: nothing moves
    assert timer.started_at == pytest.approx(1088.0)
    assert not timer.finished(1088.0 + 239.9)
    assert timer.finished(1088.0 + 240.0)


phases = st.lists(
    st.builds(
        Phase,
        name=st.sampled_from(["Work", "Rest", "Sprint"]),
        seconds=st.integers(1, 120),
        kind=st.sampled_from(["work", "rest"]),
    ),
    min_size=1,
    max_size=6,
)


@given(phases=phases, rounds=st.integers(1, 20), fraction=st.floats(0, 1))
def test_position_is_consistent(phases: list[Phase], rounds: int, fraction: float) -> None:
    program = Program(phases=tuple(phases), rounds=rounds)
    elapsed = fraction * program.total_s
    where = position(program, elapsed)
    assert 1 <= where.round <= rounds
    assert 0 <= where.phase_index < len(phases)
    assert where.phase == phases[where.phase_index]
    assert 0 <= where.remaining_s <= where.phase.seconds
    if not where.done:
        # Time before this phase, plus what has run of it, is the elapsed time.
        before = (where.round - 1) * program.round_s + sum(
            p.seconds for p in phases[: where.phase_index]
        )
        ran = where.phase.seconds - where.remaining_s
        assert before + ran == pytest.approx(elapsed, abs=1e-6)
    else:
        assert elapsed >= program.total_s - 1e-9
