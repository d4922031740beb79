"""Small helpers shared by the benchmark's scenarios: percentiles and the py-spy sampler."""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def py_spy(pid: int, seconds: float, out: Path) -> asyncio.subprocess.Process:
    """Sample ``pid`` and its subprocesses with py-spy for ``seconds`` (raw collapsed stacks)."""
    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
