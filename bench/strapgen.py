"""A load-generator process for ``python -m bench.telemetry``: many simulated straps.

Config line: ``{"links": [class links], "join_concurrency": int, "seed": int}``. Each
strap is a ``HeartRateLink`` (a real Socket.IO session and a real aiortc data
channel, as ``pulseroom hr-bridge`` uses) fed by a ``SimulatedStrap``. Emits
``{"event": "ready", "joined", "failed"}``, waits for ``{"go": true, "seconds": S}``,
sends a reading per strap per second (phases spread over the second) for S seconds,
waits for the acknowledgements and emits its counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from pulseroom.hr_link import HeartRateLink
from telemetry.hrm import HeartRateMeasurement
from telemetry.simulate import SimulatedStrap

from .genproc import emit, read_line, serve

logger = logging.getLogger(__name__)


async def _join(link: HeartRateLink, gate: asyncio.Semaphore) -> asyncio.Task[None] | None:
    async with gate:
        task = asyncio.create_task(link.run())
        try:
            await link.wait_open(60)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task


async def _run(config: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(config.get("seed", 0))
    gate = asyncio.Semaphore(int(config.get("join_concurrency", 10)))
    links = [HeartRateLink(url, name=f"strap {i}") for i, url in enumerate(config["links"])]
    joined = await asyncio.gather(*(_join(link, gate) for link in links))
    live = [(link, task) for link, task in zip(links, joined, strict=True) if task is not None]
    emit({"event": "ready", "joined": len(live), "failed": len(links) - len(live)})
    go = await read_line()
    seconds = float(go["seconds"])
    curves = [SimulatedStrap(seed=rng.randrange(1 << 30)).readings() for _ in range(len(live))]
    phases = [rng.random() for _ in live]
    loop = asyncio.get_running_loop()
    start = loop.time()
    order = sorted(range(len(live)), key=lambda i: phases[i])
    deadline = start + seconds + 30
    lateness: list[float] = []
    for second in range(int(seconds)):
        for index in order:
            due = start + second + phases[index]
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lateness.append(-delay)
            measurement: HeartRateMeasurement = next(curves[index])
            live[index][0].send(measurement)
    for link, _ in live:
        with contextlib.suppress(TimeoutError):
            await link.wait_acked(timeout=max(0.1, deadline - loop.time()))
    result = {
        "event": "done",
        "straps": len(live),
        "readings": sum(link.counts["queued"] for link, _ in live),
        "resent": sum(link.counts["resent"] for link, _ in live),
        "acked": sum(link.counts["acked"] for link, _ in live),
        "unacknowledged": sum(link.pending for link, _ in live),
        "rejoins": sum(link.counts["joins"] - 1 for link, _ in live),
        "late_sends": len([x for x in lateness if x > 0.1]),
        "max_send_lateness_s": round(max(lateness, default=0.0), 3),
    }
    for _, task in live:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*(task for _, task in live), return_exceptions=True)
    return result


def main() -> int:
    """Entry point: ``python -m bench.strapgen`` (spoken to over stdin/stdout)."""
    logging.getLogger("aioice").setLevel(logging.ERROR)
    return serve(_run)


if __name__ == "__main__":
    raise SystemExit(main())
