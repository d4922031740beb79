"""Login throttling: at most so many failed logins per key (an account, an address) per window.

Unlike ``ratelimit.RateLimit`` (a token bucket of actions), this counts failures in a
sliding window, which is what people are told ("5 failed attempts, wait 15 minutes")
and gives an exact Retry-After. In memory, per node: a cluster of N nodes lets N times
as many guesses through, still far too few for a password worth the name.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KEYS = 100_000  # past this many, keys whose failures have all expired are forgotten


@dataclass
class FailureWindow:
    """``limit`` failures per ``window`` seconds, per key."""

    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def attempt(self, key: str) -> float:
        """Start an attempt: 0 if allowed (counted as a failure until ``forgive``), else
        the seconds until one is."""
        now = self.clock()
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) >= self.limit:
            return failures[0] + self.window - now
        # Counted before the password is checked, so that concurrent guesses cannot all
        # pass the check while the (slow) hashing of the first is still running.
        failures.append(now)
        if len(self._failures) > MAX_KEYS:
            self._prune(now)
        return 0.0

    def forgive(self, key: str, everything: bool = False) -> None:
        """The attempt succeeded: take back its failure (or all of the key's)."""
        failures = self._failures.get(key)
        if failures is None:
            return
        if everything:
            failures.clear()
        elif failures:
            failures.pop()
        if not failures:
            del self._failures[key]

    def _prune(self, now: float) -> None:
        for key in [k for k, f in self._failures.items() if not f or f[-1] <= now - self.window]:
            del self._failures[key]
