"""What each test costs the machine: ``-p tests.cpu_log`` appends one JSON line per test
(wall seconds and the whole machine's busy CPU seconds, from ``/proc/stat``) to the file
named by ``PULSEROOM_CPU_LOG``.

Run serially (no ``-n``) on an otherwise idle machine, the CPU column is what the test
makes the machine do: its own process, the servers and browsers it starts. That, not its
wall time, is what it takes from the parallel part of ``scripts/test``, which is bound by
CPU (a third xdist worker did not make it faster).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator

import pytest


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (not idle or waiting) since boot."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """Measure the test's setup, call and teardown together."""
    started, wall, cpu = time.time(), time.monotonic(), busy_cpu_seconds()
    result = yield
    entry = {
        "test": item.nodeid,
        # Under xdist: which worker ran it, and when (a timeline shows idle tails).
        "worker": os.environ.get("PYTEST_XDIST_WORKER", ""),
        "started": round(started, 2),
        "wall_s": round(time.monotonic() - wall, 2),
        "cpu_s": round(busy_cpu_seconds() - cpu, 2),
    }
    with open(os.environ.get("PULSEROOM_CPU_LOG", "cpu-log.jsonl"), "a") as log:
        log.write(json.dumps(entry) + "\n")
    return result
