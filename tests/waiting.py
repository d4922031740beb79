"""Waiting for a condition instead of sleeping a fixed time.

A fixed sleep is either too short on a loaded machine (a flaky test) or too long on an idle
one (a slow suite); polling a predicate is neither. The timeout is the old sleep's upper
bound with room to spare: on time-out the test fails, saying what it waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable


async def until(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "", interval: float = 0.05
) -> None:
    """Return as soon as ``predicate()`` (awaited if it is a coroutine) is true; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or predicate}")
        await asyncio.sleep(interval)


def until_sync(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "", interval: float = 0.05
) -> None:
    """``until`` for a synchronous test or fixture (the event loop is not running)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or predicate}")
        time.sleep(interval)
