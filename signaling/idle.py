"""Forgetting what a node keeps in memory for a class once it has been empty a while.

A class's controls (lock, timer, spotlight), its heart-rate relay state, its live effort
meters and its recording state live in memory on the node holding it. A class that
everyone has left keeps nothing worth that memory for ever (a server that ran for
months would hold every class it ever saw): ``IdleClasses`` calls ``forget`` once the
class has had nobody in it for ``after`` seconds, and not if someone came back meanwhile.
What is stored (the class, its readings, chat, removals, links) is not touched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

IDLE_CLASS_S = 900.0  # PULSEROOM_IDLE_CLASS_S


class IdleClasses:
    """One timer per empty class; ``close`` cancels them all."""

    def __init__(
        self, after: float, is_empty: Callable[[str], bool], forget: Callable[[str], None]
    ) -> None:
        self.after = after
        self._is_empty = is_empty
        self._forget = forget
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def emptied(self, room_id: str) -> None:
        """The last person left ``room_id``: forget it ``after`` seconds from now."""
        self.joined(room_id)
        loop = asyncio.get_running_loop()
        self._timers[room_id] = loop.call_later(self.after, self._expire, room_id)

    def joined(self, room_id: str) -> None:
        """Someone is in ``room_id`` again (or it ended): no forgetting due."""
        timer = self._timers.pop(room_id, None)
        if timer is not None:
            timer.cancel()

    def waiting(self) -> int:
        """Empty classes not forgotten yet."""
        return len(self._timers)

    def _expire(self, room_id: str) -> None:
        self._timers.pop(room_id, None)
        if not self._is_empty(room_id):
            return  # someone joined by a path that did not say so: keep it
        self._forget(room_id)
        logger.info("class %s was empty for %g s: its state in memory is let go",
                    room_id, self.after, extra={"class_id": room_id})  # fmt: skip

    def close(self) -> None:
        """Cancel every pending timer (idempotent)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
