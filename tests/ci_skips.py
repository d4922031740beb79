"""In CI (``CI=true``) a skipped test fails.

Every skip in this suite stands for something missing on the machine (Chromium, Firefox,
WebKitGTK's driver, network namespaces, Redis, a TUN device): on a developer's laptop that
is a fair reason to skip, in CI it means the test did not run, and a green run would say
it passed. tests/conftest.py imports the hook; ``-p tests.ci_skips`` loads it alone.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest


def in_ci() -> bool:
    """Whether this run is CI's (``.ci/run`` sets CI=true, as most CI services do)."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Make a skip report a failure, keeping its reason."""
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI: {str(reason).removeprefix('Skipped: ')}\n"
        "CI=true turns a skip into a failure: install what is missing (scripts/test does)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test's skip (a mark, or ``pytest.skip`` inside it); an xfail stays what it is."""
    report = yield
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        _fail_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A whole module's skip (``pytest.importorskip`` at import time)."""
    report = yield
    if report.skipped and in_ci():
        _fail_skip(report)
    return report
