"""No module over ~600 lines, no function over ~80 (STYLE.md, issue 15 item 6).

Every ``.py`` file of the project's packages (the top-level packages pyproject.toml
names for mypy and setuptools, ``bench/`` included) is read with ``ast``; nothing is
imported. A function's length is counted from its ``def`` line to the last line of
its body (decorators excluded), nested functions and methods each on their own.
"""

from __future__ import annotations

import ast
import functools
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80

# Offenders that other helpers of issue 15 were still splitting when this test landed,
# each named by file (functions as ``path:Qualified.name``) with who is splitting it and
# why it may wait. A listed entry that is within the limits again fails
# ``test_allow_list_is_current``, so the list only shrinks: remove the entry then.
# Empty when this landed (sfu/pool.py, 623 lines earlier, was split into sfu/piping.py);
# keep it empty.
ALLOWED_LONG_FILES: dict[str, str] = {}
ALLOWED_LONG_FUNCTIONS: dict[str, str] = {}


def packages() -> list[str]:
    """The project's top-level packages, as pyproject.toml names them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = set(config["tool"]["mypy"]["packages"])
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    names.update(pattern.rstrip("*").rstrip(".") for pattern in include)
    return sorted(names)


def python_files() -> Iterator[Path]:
    """Every ``.py`` file of every package."""
    for package in packages():
        yield from sorted((ROOT / package).rglob("*.py"))


def long_functions(tree: ast.AST, limit: int) -> Iterator[tuple[str, int, int]]:
    """``(qualified name, def line, length)`` of every function longer than ``limit``."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = (child.end_lineno or child.lineno) - child.lineno + 1
                    if length > limit:
                        yield name, child.lineno, length
                yield from visit(child, f"{name}.")
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


@functools.cache
def sizes() -> tuple[dict[str, int], dict[str, int]]:
    """Files over the line limit and functions over theirs: ``{name: lines}`` each (read
    once per test run)."""
    files: dict[str, int] = {}
    functions: dict[str, int] = {}
    for path in python_files():
        name = path.relative_to(ROOT).as_posix()
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_FILE_LINES:
            files[name] = lines
        for function, _, length in long_functions(ast.parse(source), MAX_FUNCTION_LINES):
            functions[f"{name}:{function}"] = length
    return files, functions


def test_the_named_packages_are_covered() -> None:
    assert {"sfu", "signaling", "telemetry", "pulseroom", "bench"} <= set(packages())
    assert all((ROOT / package).is_dir() for package in packages())


def test_no_file_is_too_long() -> None:
    files, _ = sizes()
    over = {name: lines for name, lines in files.items() if name not in ALLOWED_LONG_FILES}
    assert not over, "\n".join(
        f"{name}: {lines} lines (limit {MAX_FILE_LINES}): split it by concept"
        for name, lines in sorted(over.items())
    )


def test_no_function_is_too_long() -> None:
    _, functions = sizes()
    over = {name: lines for name, lines in functions.items() if name not in ALLOWED_LONG_FUNCTIONS}
    assert not over, "\n".join(
        f"{name}: {lines} lines (limit {MAX_FUNCTION_LINES}, def line to last line of body)"
        for name, lines in sorted(over.items())
    )


def test_allow_list_is_current() -> None:
    files, functions = sizes()
    stale = [name for name in ALLOWED_LONG_FILES if name not in files]
    stale += [name for name in ALLOWED_LONG_FUNCTIONS if name not in functions]
    assert not stale, f"within the limits now, remove from the allow-list: {stale}"


def test_function_length_counts_def_line_to_last_body_line() -> None:
    source = (
        "class A:\n"
        "    @property\n"
        "    def f(self):\n"
        "        def inner():\n"
        "            return 1\n"
        "\n"
        "        return inner()\n"
    )
    found = list(long_functions(ast.parse(source), 0))
    assert found == [("A.f", 3, 5), ("A.f.inner", 4, 2)]
