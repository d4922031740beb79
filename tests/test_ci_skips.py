"""tests/ci_skips.py: a skip fails when CI=true and stays a skip otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ci_skips import in_ci
from tests.conftest import ROOT

SAMPLE = """
import pytest

def test_needs_a_missing_package():
    pytest.importorskip("a_package_nobody_installed")

@pytest.mark.skipif(True, reason="a missing browser")
def test_marked_skip():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
"""


# A module that needs a missing package as a whole.
MODULE_SAMPLE = """
import pytest

pytest.importorskip("another_missing_package")

def test_never_collected():
    pass
"""


def run_sample(tmp_path: Path, ci: str | None, *sources: str) -> subprocess.CompletedProcess[str]:
    """Sample modules run by a pytest of its own with only the CI hook loaded."""
    for number, source in enumerate(sources):
        (tmp_path / f"test_sample_{number}.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the hook under test (and a faster start)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.ci_skips",
         "--rootdir", str(tmp_path), "-rA", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_skip_fails_in_ci(tmp_path: Path) -> None:
    result = run_sample(tmp_path, "true", SAMPLE)
    assert result.returncode == 1, result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 failed" in summary and "1 passed" in summary and "1 xfailed" in summary, summary
    assert "1 error" in summary, summary  # the skipif mark skips in set-up: an error there
    assert "skipped" not in summary, summary
    assert "skipped in CI: could not import 'a_package_nobody_installed'" in result.stdout
    assert "skipped in CI: a missing browser" in result.stdout


def test_a_module_skip_fails_in_ci(tmp_path: Path) -> None:
    """A collection error: pytest stops before running anything, and says why."""
    result = run_sample(tmp_path, "true", MODULE_SAMPLE)
    assert result.returncode == 2, result.stdout
    assert "1 error" in result.stdout.strip().splitlines()[-1]
    assert "skipped in CI: could not import 'another_missing_package'" in result.stdout


def test_a_skip_is_a_skip_elsewhere(tmp_path: Path) -> None:
    result = run_sample(tmp_path, None, SAMPLE, MODULE_SAMPLE)
    assert result.returncode == 0, result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert "3 skipped" in summary and "1 passed" in summary and "1 xfailed" in summary, summary


@pytest.mark.parametrize(
    ("value", "ci"), [("true", True), ("1", True), ("TRUE", True), ("false", False), ("", False)]
)
def test_what_counts_as_ci(monkeypatch: pytest.MonkeyPatch, value: str, ci: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci
