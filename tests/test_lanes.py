"""The light lane (``LIGHT_MODULES`` in tests/conftest.py) holds what its name says.

scripts/test runs the light modules one at a time at a lower CPU priority beside the
parallel part. That is sound only for tests that neither load the machine (browsers,
media) nor need it idle: a light module that imports a browser, an aiortc peer, a bot or
a media clip fails here, naming the module and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import LIGHT_MODULES

TESTS = Path(__file__).resolve().parent

# Imports that mean a browser, real media or a network namespace.
HEAVY = (
    "aiortc",
    "av",
    "bench",
    "playwright",
    "tests.browser_fixtures",
    "tests.browser_netns",
    "tests.cluster_nodes",
    "tests.netns",
    "tests.peers",
    "tests.recorded_class",
    "tests.sender_pair",
    "tests.webdriver",
    "tests.wire",
    "tests.y4m",
)


def heavy_imports(source: str) -> list[str]:
    """The HEAVY modules ``source`` imports (at any depth: in functions too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        found += [n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY)]
    return found


def test_light_modules_exist() -> None:
    missing = sorted(m for m in LIGHT_MODULES if not (TESTS / f"{m}.py").exists())
    assert not missing, f"LIGHT_MODULES names modules that are gone: {missing}"


def test_light_modules_have_no_media() -> None:
    heavy = {
        module: imports
        for module in sorted(LIGHT_MODULES)
        if (imports := heavy_imports((TESTS / f"{module}.py").read_text()))
    }
    assert not heavy, f"light modules importing a browser or media: {heavy}"


def test_the_check_sees_an_import_inside_a_function() -> None:
    source = "def f():\n    from tests.peers import join\n    import aiortc.codecs\n"
    assert heavy_imports(source) == ["tests.peers", "aiortc.codecs"]
    assert heavy_imports("import avocado\nfrom tests.waiting import until\n") == []
