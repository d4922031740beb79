"""What signal quality, RMSSD and the learning maximum cost per heart-rate reading.

``python -m bench.heart_signals [--participants N] [--readings R] [--json]`` feeds R
parsed readings (two RR intervals each, 1 Hz per participant, N participants in turn)
through ``HeartSignals.record``, the work ``HeartRateRelay`` adds to each live reading
for issue 18 items 3 and 4, and reports microseconds per reading (wall time, one
process, no I/O: raises are queued, not stored). The first pass builds every
participant's window; the figure is the best of the passes after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import socketio

from signaling.heart_signals import HeartSignals
from signaling.presence import Presence
from telemetry.messages import Reading, parse
from telemetry.zones import Profile

START_MS = 1_700_000_000_000


def readings(participants: int, count: int) -> list[Reading]:
    """``count`` readings of ``participants`` straps in turn, 1 s apart per strap."""
    out = []
    for i in range(count):
        t = START_MS + (i // participants) * 1000
        rr = (400.0 + (i % 2) * 20, 410.0)
        message = {"v": 1, "type": "hr", "seq": i, "t": t, "bpm": 150, "rr": rr, "contact": True}
        out.append(parse(json.dumps(message)))
    return out


async def run(participants: int, count: int, passes: int = 3) -> dict[str, Any]:
    """Time ``passes`` passes over the same readings; the first one warms up."""
    signals = HeartSignals(socketio.AsyncServer(), Presence(), None)
    profile = Profile()
    batch = readings(participants, count)
    timings = []
    for _ in range(passes):
        started = time.perf_counter()
        for index, reading in enumerate(batch):
            signals.record("bench", f"p{index % participants}", reading, profile)
        timings.append((time.perf_counter() - started) / count * 1e6)
    return {
        "participants": participants,
        "readings": count,
        "us_per_reading_first_pass": round(timings[0], 2),
        "us_per_reading": round(min(timings[1:]), 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prints the result (as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=500)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.participants, args.readings))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['us_per_reading']} µs per reading ({args.participants} participants)")
    return result


if __name__ == "__main__":
    main()
