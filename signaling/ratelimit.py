"""Token-bucket rate limits for the events people (or scripts) can repeat at will."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KEYS = 100_000  # past this many, idle buckets are forgotten first


@dataclass
class RateLimit:
    """``burst`` actions at once, refilled at ``rate`` per second, per key."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tokens, at

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False if it has none left."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > MAX_KEYS:
            self._prune(now)
        return True

    def forget(self, key: str) -> None:
        """Drop a key's bucket (its session ended)."""
        self._buckets.pop(key, None)

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        for key in [k for k, (_t, at) in self._buckets.items() if now - at > full_after]:
            del self._buckets[key]
