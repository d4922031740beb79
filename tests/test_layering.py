"""The packages' imports point one way (the layout table in README.md).

From the bottom up: the leaves ``runtime/`` (logging, the collector's schedule) and
``storage/`` (the store, migrations) import no other PulseRoom package; ``telemetry/``
may use the leaves; ``sfu/`` (the media core) may use the leaves and knows nothing of
signaling or telemetry; ``signaling/`` reaches the SFU only through ``sfu.backend``,
which imports no aiortc, so signaling can be tested and reasoned about without a media
stack; ``client/`` (the protocol's client side) sits beside signaling; ``pulseroom/``,
the composition root, wires everything and nothing imports it. ``bench/`` and
``tests/`` are tools on top.

Every ``.py`` file is read with ``ast`` (nothing is imported): every import statement
counts, including those inside functions and ``if TYPE_CHECKING:`` blocks, since those
are dependencies of the design too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Package -> the other PulseRoom packages it may import. A package missing here fails
# ``test_every_package_has_a_layer``: a new package says where it sits.
ALLOWED: dict[str, frozenset[str]] = {
    "runtime": frozenset(),
    "storage": frozenset(),
    "telemetry": frozenset({"runtime", "storage"}),
    "sfu": frozenset({"runtime", "storage"}),
    # ``sfu`` here means ``sfu.backend`` only (SIGNALING_SFU below).
    "signaling": frozenset({"sfu", "telemetry", "runtime", "storage"}),
    # The bot, the heart-rate link and the load generators speak the protocol with it:
    # the SFU's aiortc adapter and packet codec, telemetry's data-channel messages and
    # signaling's message models are what it shares with the server; signaling never
    # imports it.
    "client": frozenset({"sfu", "signaling", "telemetry", "runtime"}),
    "pulseroom": frozenset({"client", "sfu", "signaling", "telemetry", "runtime", "storage"}),
    "bench": frozenset(
        {"pulseroom", "client", "sfu", "signaling", "telemetry", "runtime", "storage"}
    ),
    "tests": frozenset(
        {"bench", "pulseroom", "client", "sfu", "signaling", "telemetry", "runtime", "storage"}
    ),
}
# The only modules of the SFU that signaling may import.
SIGNALING_SFU = frozenset({"sfu", "sfu.backend"})
# sfu.backend must not import these, directly or through any module it imports.
MEDIA_STACK = ("aiortc", "aioice", "av", "pylibsrtp")


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module, as written in one file."""

    path: Path  # the importing file
    line: int
    module: str  # absolute dotted name

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line} imports {self.module}"


def module_name(path: Path, root: Path) -> str:
    """``sfu/backend.py`` -> ``sfu.backend``; ``sfu/__init__.py`` -> ``sfu``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def packages(root: Path) -> list[str]:
    """The top-level Python packages in ``root`` (folders with an ``__init__.py``)."""
    return sorted(p.parent.name for p in root.glob("*/__init__.py"))


def python_files(root: Path, package: str) -> Iterator[Path]:
    for path in sorted((root / package).rglob("*.py")):
        if not any(part.startswith(".") or part == "__pycache__" for part in path.parts):
            yield path


def _is_module(name: str, root: Path) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every module ``path`` imports, relative imports made absolute.

    ``from pkg import name`` counts as ``pkg.name`` when that is a module of ours (a
    submodule import), else as ``pkg``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package[: len(package) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                name = candidate if _is_module(candidate, root) else base
                found.append(Import(path, node.lineno, name))
    return found


def violations(root: Path) -> list[str]:
    """Every import against the direction, as ``file:line imports module: why``."""
    ours = packages(root)
    problems: list[str] = []
    for package in ours:
        allowed = ALLOWED.get(package, frozenset())
        for path in python_files(root, package):
            for imp in imports_of(path, root):
                target = imp.module.split(".")[0]
                if target not in ours or target == package:
                    continue
                if target not in allowed:
                    may = ", ".join(sorted(allowed)) or "no other PulseRoom package"
                    problems.append(f"{imp.where(root)}: {package}/ may import {may}")
                elif package == "signaling" and target == "sfu" and imp.module not in SIGNALING_SFU:
                    problems.append(
                        f"{imp.where(root)}: signaling/ reaches the SFU through sfu.backend only"
                    )
    return problems


def media_stack_path(root: Path, start: str) -> list[Import] | None:
    """A chain of imports from module ``start`` to aiortc (or its kin), if there is one.

    Importing ``a.b`` runs ``a/__init__.py`` too, so packages' ``__init__`` count.
    """
    chains: dict[str, list[Import]] = {start: []}
    todo = [start]
    while todo:
        name = todo.pop()
        base = root.joinpath(*name.split("."))
        path = base / "__init__.py" if (base / "__init__.py").is_file() else base.with_suffix(".py")
        for imp in imports_of(path, root):
            chain = [*chains[name], imp]
            if imp.module.split(".")[0] in MEDIA_STACK:
                return chain
            parts = imp.module.split(".")
            for depth in range(1, len(parts) + 1):
                step = ".".join(parts[:depth])
                if step not in chains and _is_module(step, root):
                    chains[step] = chain
                    todo.append(step)
    return None


def test_every_package_has_a_layer() -> None:
    missing = [p for p in packages(ROOT) if p not in ALLOWED]
    assert not missing, f"packages without a layer in tests/test_layering.py: {missing}"


def test_imports_point_one_way() -> None:
    problems = violations(ROOT)
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_nothing_imports_the_composition_root() -> None:
    users = [p for p, allowed in ALLOWED.items() if "pulseroom" in allowed]
    assert sorted(users) == ["bench", "tests"]


def test_sfu_backend_imports_no_media_stack() -> None:
    chain = media_stack_path(ROOT, "sfu.backend")
    assert chain is None, "sfu/backend.py reaches the media stack: " + " -> ".join(
        imp.where(ROOT) for imp in chain
    )


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_names_the_file_and_the_import(tmp_path: Path) -> None:
    """The checks themselves, on a made-up tree with one import of each wrong kind."""
    _write(
        tmp_path,
        {
            "runtime/__init__.py": "",
            "storage/__init__.py": "",
            "storage/store.py": "from telemetry import zones\n",
            "telemetry/__init__.py": "",
            "telemetry/zones.py": "",
            "sfu/__init__.py": "",
            "sfu/backend.py": "from .peer import PeerSignal\n",
            "sfu/peer.py": "import contextlib\n\ndef f() -> None:\n    from aiortc import x\n",
            "sfu/worker.py": "from pulseroom.logs import configure_logging\n",
            "signaling/__init__.py": "",
            "signaling/server.py": "from sfu.backend import Role\nfrom sfu.peer import SfuError\n",
            "pulseroom/__init__.py": "",
            "pulseroom/logs.py": "from signaling import server\n",
        },
    )
    assert sorted(violations(tmp_path)) == [
        "sfu/worker.py:1 imports pulseroom.logs: sfu/ may import runtime, storage",
        "signaling/server.py:2 imports sfu.peer: signaling/ reaches the SFU through"
        " sfu.backend only",
        "storage/store.py:1 imports telemetry.zones: storage/ may import no other"
        " PulseRoom package",
    ]
    chain = media_stack_path(tmp_path, "sfu.backend")
    assert chain is not None
    assert [imp.where(tmp_path) for imp in chain] == [
        "sfu/backend.py:1 imports sfu.peer",
        "sfu/peer.py:4 imports aiortc",
    ]


def test_the_servers_main_process_loads_no_media_stack() -> None:
    """With SFU workers (the default) only the workers need aiortc, PyAV and numpy, and
    fit_tool only a FIT download: each is imported at every server start and CLI call
    otherwise (~0.7 s together; the suite starts ~130 servers)."""
    heavy = ("aiortc", "av", "numpy", "fit_tool", "sfu.forwarder", "sfu.room")
    code = (
        "import sys, pulseroom.app, pulseroom.cli\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"imported by pulseroom.app in the main process: {loaded}"
