"""``pulseroom hr-bridge``: a Bluetooth heart-rate strap (or a simulated one) into a class.

Reads the strap with bleak (telemetry/strap.py) or simulates one
(telemetry/simulate.py) and sends every reading through a ``HeartRateLink``. With a
participant's device link the readings show on that participant's tile; with the
class link the bridge joins as a participant of its own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import sys
import time
from typing import Any

from client.protocol import ClientError
from telemetry.hrm import HeartRateMeasurement
from telemetry.simulate import SimulatedStrap
from telemetry.strap import StrapReader

from .hr_link import HeartRateLink


def _status(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def run_bridge(
    link: str,
    *,
    address: str | None = None,
    name: str | None = None,
    simulate: bool = False,
    seconds: float | None = None,
    display_name: str = "Heart-rate bridge",
    seed: int | None = None,
    time_scale: float = 1.0,
    quiet: bool = False,
    strap_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the bridge until cancelled (or for ``seconds``); returns its counters.

    ``strap_options`` go to ``StrapReader`` (its bleak scanner and client classes, say).
    """
    status = (lambda _text: None) if quiet else _status
    hr_link = HeartRateLink(link, name=display_name, on_status=status)
    last_print = 0.0

    def on_measurement(measurement: HeartRateMeasurement) -> None:
        nonlocal last_print
        hr_link.send(measurement)
        if not quiet and time.monotonic() - last_print >= 10:
            last_print = time.monotonic()
            status(f"{measurement.bpm} bpm (unacknowledged: {hr_link.pending})")

    source: SimulatedStrap | StrapReader
    if simulate:
        source = SimulatedStrap(seed=seed, time_scale=time_scale)
        feed = source.run(on_measurement)
    else:
        source = StrapReader(
            on_measurement, address=address, name=name, on_status=status, **(strap_options or {})
        )
        feed = source.run()
    link_task, feed_task = asyncio.create_task(hr_link.run()), asyncio.create_task(feed)
    tasks = [link_task, feed_task]
    try:
        done, _pending = await asyncio.wait(
            tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION
        )
        for task in done:
            task.result()  # a fatal refusal (expired link, ended class) ends the bridge
        if seconds is not None:
            # Time is up: take no more readings, and give the last ones time to be stored.
            feed_task.cancel()
            await asyncio.gather(feed_task, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await hr_link.wait_acked(10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    report: dict[str, Any] = {
        "participant_id": hr_link.participant_id,
        "room_id": hr_link.room_id,
        "unacknowledged": hr_link.pending,
        **hr_link.counts,
    }
    if isinstance(source, StrapReader):
        report["strap"] = {
            "notifications": source.stats.notifications,
            "malformed": source.stats.malformed,
            "connects": source.stats.connects,
            "location": source.location,
        }
    return report


def is_device_link(link: str) -> bool:
    """Whether ``link`` is a participant's device link (else a class link, or something
    the server will refuse and say why). Read, not verified: the server verifies."""
    body = link.partition("#t=")[2].split(".")[0]
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        return True
    return not isinstance(payload, dict) or payload.get("role") == "device"


def main(args: Any) -> int:
    """The CLI entry (arguments parsed by pulseroom.cli)."""
    if args.display_name is None and not is_device_link(args.join_link):
        # With the class link the bridge is a participant of its own: the class, the
        # summary and the CSV show this name, so it is the person's, not a default.
        print(
            "pulseroom hr-bridge: this is a class link, so the bridge joins as a participant "
            "of its own: give --display-name 'Your Name' (how the class sees you), or use "
            "your device link from the class page to put the readings on your own tile",
            file=sys.stderr,
        )
        return 2
    try:
        report = asyncio.run(
            run_bridge(
                args.join_link,
                address=args.address,
                name=args.name,
                simulate=args.simulate,
                seconds=args.seconds,
                display_name=args.display_name or "Heart-rate bridge",
                seed=args.seed,
            )
        )
    except ClientError as exc:
        print(f"pulseroom hr-bridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(report, indent=2))
    return 0
