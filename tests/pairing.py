"""The tests marked ``paired``: two lanes of about equal length.

scripts/test runs the tests marked both ``alone`` and ``paired`` in two pytest processes
at once, ``--lane 0`` and ``--lane 1``. Each such test says how long its module takes in
that part (``@pytest.mark.paired(seconds=48)``, measured); this hook puts whole modules
(they share servers and recorded classes) into the lanes, longest first, each into the
lane that is shorter so far, and ``--lane N`` deselects the other lane's tests.
(pytest-xdist's ``loadgroup`` would do this, but with pytest 9 its group names no longer
reach the scheduler: xdist 3.8 writes ``item._nodeid``, which pytest 9 no longer reads.)
tests/conftest.py imports the hooks.
"""

from __future__ import annotations

import pytest

LANES = 2


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--lane N``: only the paired tests of lane N (the others are deselected)."""
    parser.addoption(
        "--lane",
        type=int,
        choices=range(LANES),
        help="run only the tests marked paired that tests/pairing.py puts in this lane",
    )


def module_seconds(items: list[pytest.Item]) -> dict[str, float]:
    """Each module's time in the paired part: the largest ``seconds`` its paired tests
    give (a module-wide mark gives the whole module's, a test's mark its own)."""
    seconds: dict[str, float] = {}
    for item in items:
        mark = item.get_closest_marker("paired")
        if mark is None or item.get_closest_marker("alone") is None:
            continue
        if "seconds" not in mark.kwargs:
            raise pytest.UsageError(f"{item.nodeid}: give paired(seconds=...), measured")
        module = item.nodeid.split("::")[0]
        seconds[module] = max(seconds.get(module, 0.0), float(mark.kwargs["seconds"]))
    return seconds


def lanes(seconds: dict[str, float]) -> dict[str, int]:
    """Modules to lanes, longest first, each into the lane that is shortest so far."""
    totals = [0.0] * LANES
    lane_of: dict[str, int] = {}
    for module in sorted(seconds, key=lambda m: (-seconds[m], m)):
        lane = totals.index(min(totals))
        lane_of[module] = lane
        totals[lane] += seconds[module]
    return lane_of


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--lane N``: keep the paired tests whose module is in lane N."""
    wanted = config.getoption("lane", None)
    if wanted is None:
        return
    lane_of = lanes(module_seconds(items))
    kept = [
        item
        for item in items
        if item.get_closest_marker("paired") is not None
        and lane_of.get(item.nodeid.split("::")[0]) == wanted
    ]
    deselected = [item for item in items if item not in kept]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
