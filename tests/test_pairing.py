"""tests/pairing.py: the paired tests' modules in two lanes of about equal length."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pairing import lanes

pytest_plugins = ["pytester"]


def test_longest_first_each_into_the_shorter_lane() -> None:
    seconds = {"a.py": 48, "b.py": 40, "c.py": 25, "d.py": 23, "e.py": 20, "f.py": 7}
    lane_of = lanes(seconds)
    totals = [sum(s for m, s in seconds.items() if lane_of[m] == lane) for lane in (0, 1)]
    assert lane_of["a.py"] != lane_of["b.py"]
    assert sorted(totals) == [78, 85], totals  # 48 + 23 + 7 beside 40 + 25 + 20
    assert lanes({}) == {}


CONFTEST = """
import pytest
from tests.pairing import pytest_addoption, pytest_collection_modifyitems

def pytest_configure(config):
    config.addinivalue_line("markers", "alone: x")
    config.addinivalue_line("markers", "paired(seconds): x")
"""

MODULES = {
    "test_long": """
import pytest
pytestmark = [pytest.mark.alone, pytest.mark.paired(seconds=50)]
def test_one():
    pass
def test_two():
    pass
""",
    "test_short": """
import pytest
@pytest.mark.alone
@pytest.mark.paired(seconds=10)
def test_short():
    pass
def test_not_paired():
    pass
""",
    "test_middle": """
import pytest
pytestmark = [pytest.mark.alone, pytest.mark.paired(seconds=30)]
def test_middle():
    pass
""",
}


def test_a_lane_runs_its_modules_paired_tests_only(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(str(Path(__file__).resolve().parent.parent))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**MODULES)
    ran = {}
    for lane in (0, 1):
        result = pytester.runpytest("-p", "no:cacheprovider", "--lane", str(lane), "-v")
        ran[lane] = sorted(
            line.split("::")[1].split()[0] for line in result.outlines if " PASSED" in line
        )
    # 50 in lane 0; 30, then 10, in lane 1 (shorter after 30 than lane 0 after 50).
    assert ran == {0: ["test_one", "test_two"], 1: ["test_middle", "test_short"]}, ran
    # Without --lane, nothing is deselected.
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=5)
    pytester.makepyfile(
        test_unmeasured="""
import pytest
@pytest.mark.alone
@pytest.mark.paired
def test_x():
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--lane", "0")
    result.stderr.fnmatch_lines(
        ["*test_unmeasured.py::test_x: give paired(seconds=...), measured*"]
    )
