"""A participant on a test host whose network a test cuts: run inside a namespace.

``python -m tests.netns_peer JOIN_LINK --seconds S`` joins as an aiortc bot (publishing
synthetic media, rejoining by itself when its session drops) and, with the same link,
as a heart-rate sender (``HeartRateLink``) that takes a reading every 0.5 s. Twice a
second it prints one JSON line with what it has so far, so the test can watch it live;
the last line has ``"final": true`` and every reading's ``[seq, t]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from client.protocol import parse_link
from pulseroom.bot import Bot
from pulseroom.hr_link import HeartRateLink
from telemetry.hrm import HeartRateMeasurement

READING_EVERY_S = 0.5


def snapshot(bot: Bot, hr: HeartRateLink) -> dict[str, Any]:
    frames: dict[str, int] = {}
    for track in bot.tracks.values():
        if track.kind == "video":
            frames[track.publisher_id] = frames.get(track.publisher_id, 0) + track.frames
    return {
        "t": time.time(),
        "you": bot.you.get("id"),
        "connected": bot.sio.connected,
        "rejoins": bot.rejoins,
        "frames": frames,  # this session's (a rejoin starts over)
        "hr": {**hr.counts, "pending": hr.pending, "participant_id": hr.participant_id},
    }


async def main(link: str, seconds: float) -> None:
    base, room, token = parse_link(link)
    bot = Bot(base_url=base, token=token, name="Nell", video="synthetic", room=room)
    hr = HeartRateLink(link, name="Nell's strap", backoff=(0.5, 1.0, 2.0))
    sent: list[tuple[int, int]] = []
    await bot.start()
    link_task = asyncio.create_task(hr.run())

    async def readings() -> None:
        await hr.wait_open()
        bpm = 100
        while True:
            t = int(time.time() * 1000)
            sent.append((hr.send(HeartRateMeasurement(bpm=bpm, contact=True), t), t))
            bpm = 100 + (bpm - 99) % 60
            await asyncio.sleep(READING_EVERY_S)

    reading_task = asyncio.create_task(readings())
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            print(json.dumps(snapshot(bot, hr)), flush=True)
            await asyncio.sleep(0.5)
        reading_task.cancel()
        # What was read is delivered before leaving (acks come once it is durable).
        with contextlib.suppress(TimeoutError):
            await hr.wait_acked(timeout=30)
        print(json.dumps({**snapshot(bot, hr), "final": True, "sent": sent}), flush=True)
    finally:
        for task in (reading_task, link_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await bot.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("link")
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.link, args.seconds))
    sys.exit(0)
