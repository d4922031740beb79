"""The garbage collector's schedule for processes that must answer within milliseconds.

CPython collects its youngest generation every 700 new container objects (tuples,
dicts, coroutines, futures) and the older ones every 10 of those. A signaling node with
thousands of sessions, or an SFU worker allocating a few small tuples per packet at
10,000+ packets/s, runs the oldest generation's collection every few seconds, and that
one scans the whole heap (aiortc keeps a large graph of objects per connection): 50-400
ms during which the process forwards or answers nothing. Those pauses were the whole
p99 of a chat line (docs/benchmarks.md, "Signaling load"). Collecting the youngest
generation every 50,000 lets short-lived objects die young and makes full collections
~70 times rarer; cyclic garbage still goes, a little later. SFU workers use the same
schedule; there the class benchmark's p99 at N = 100 was set by CPU contention
instead (104 ms with it, 77-136 ms without: within run-to-run noise).
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 10)


def tune_for_latency() -> None:
    """Apply ``THRESHOLDS`` to this process's collector."""
    gc.set_threshold(*THRESHOLDS)
