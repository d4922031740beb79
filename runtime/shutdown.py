"""Bounds on shutdown: waits that end whether or not a task honours its cancellation.

A stopping server must end within seconds (a service manager, or ``docker compose
stop`` after 10 s, kills it otherwise and whatever was being made durable is cut off).
``asyncio.timeout`` and ``wait_for`` bound a wait by cancelling, which a library may
hold on to: SQLAlchemy's async connection finishes closing in a task of its own and
absorbs cancellation until that close is done. ``end_within`` waits with
``asyncio.wait``, which returns at its deadline whatever the task does; ``Watchdog``
is the last resort for what still hangs: after a deadline it logs every thread's stack
and ends the process.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import sys
import threading
from typing import Any

logger = logging.getLogger(__name__)

CANCEL_GRACE_S = 0.5  # how long a task cancelled at its deadline may take to end
WATCHDOG_EXIT_CODE = 70  # EX_SOFTWARE: distinct from a clean stop (0) in the service log


async def end_within(
    task: asyncio.Task[Any], seconds: float, grace: float = CANCEL_GRACE_S
) -> bool:
    """Wait up to ``seconds`` for ``task``, then cancel it and wait ``grace`` more.

    True once the task is done (its result or exception is the caller's to read); False
    if it still runs — it did not end when cancelled, and the caller goes on without it.
    """
    done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    if not done:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=grace)
    return bool(done)


async def run_within(what: str, coro: Any, seconds: float) -> bool:
    """Run ``coro`` as a task for at most ``seconds`` (see ``end_within``); log, never raise.

    For the last steps of a shutdown (closing a pool, say), where a failure or a hang
    must not keep the steps after it from running.
    """
    task = asyncio.create_task(coro, name=what)
    if not await end_within(task, seconds):
        logger.error("%s did not end within %.1f s, even when cancelled; going on", what, seconds)
        return False
    if task.cancelled():
        logger.warning("%s took longer than %.1f s and was cancelled", what, seconds)
        return False
    if (exc := task.exception()) is not None:
        logger.error("%s failed", what, exc_info=exc)
        return False
    return True


class Watchdog:
    """Ends the process ``seconds`` after ``arm`` unless it has exited by then.

    A thread, so that it fires even when the event loop waits forever on a task that
    will not end. Before exiting it logs every thread's stack (the main thread's shows
    where the loop is stuck) and, when it can, every asyncio task's.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: threading.Timer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def arm(self) -> None:
        """Start counting (idempotent); call from the event loop's thread."""
        if self._timer is not None:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._timer = threading.Timer(self.seconds, self._fire)
        self._timer.daemon = True  # never what keeps the process alive
        self._timer.start()

    def disarm(self) -> None:
        """Stop counting (a process that goes on after a clean stop, as tests do)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        logger.critical(
            "shutdown did not finish within %.1f s; exiting now (stacks follow)", self.seconds
        )
        self._log_tasks()
        for handler in logging.getLogger().handlers:
            handler.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(WATCHDOG_EXIT_CODE)

    def _log_tasks(self) -> None:
        # Read from another thread while the loop runs: good enough for a last word.
        if self._loop is None:
            return
        try:
            tasks = list(asyncio.all_tasks(self._loop))
        except RuntimeError:  # the set changed while being read
            return
        for task in tasks:
            logger.critical("still running: task %s in %s", task.get_name(), awaiting(task))


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where a suspended task waits: its chain of awaits, outermost first.

    ``Task.get_stack`` shows only the outermost coroutine; following ``cr_await`` shows
    the library call at the bottom, which is what a hang report needs.
    """
    steps: list[str] = []
    current: Any = task.get_coro()
    while current is not None and len(steps) < 40:
        frame = getattr(current, "cr_frame", None) or getattr(current, "gi_frame", None)
        if frame is None:
            frame = getattr(current, "ag_frame", None)
        if frame is not None:
            name = os.path.basename(frame.f_code.co_filename)
            steps.append(f"{frame.f_code.co_name} ({name}:{frame.f_lineno})")
        following = None
        for attribute in ("cr_await", "gi_yieldfrom", "ag_await"):
            following = getattr(current, attribute, None)
            if following is not None:
                break
        if following is None and frame is None:
            steps.append(type(current).__name__)  # a future or a C-level awaitable
        current = following
    return " -> ".join(steps) or "?"
