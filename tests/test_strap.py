"""StrapReader against bleak's real front end over a fake radio (tests/fake_bleak.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from telemetry.hrm import HEART_RATE_SERVICE, HeartRateMeasurement
from telemetry.simulate import SimulatedStrap
from telemetry.strap import StrapReader
from tests.fake_bleak import CYCLING_POWER_SERVICE, DROP, FakeAir, FakeClient, FakeStrap, Step

POLAR = "A0:9E:1A:6A:1B:2C"
GARMIN = "C4:7F:51:00:11:22"
KICKR = "E1:2D:3C:44:55:66"

TINY_BACKOFF = (0.01, 0.02, 0.03)


def polar(**kwargs: Any) -> FakeStrap:
    return FakeStrap(POLAR, "Polar H10 6A1B2C3D", **kwargs)


def garmin(**kwargs: Any) -> FakeStrap:
    return FakeStrap(GARMIN, "HRM-Pro:123456", **kwargs)


def kickr() -> FakeStrap:
    """A smart trainer in the same room: advertises cycling power, no heart rate."""
    return FakeStrap(KICKR, "KICKR CORE 5A1B", services=[CYCLING_POWER_SERVICE], location=None)


class Bridge:
    """A StrapReader over a FakeAir, collecting what it hands over."""

    def __init__(self, air: FakeAir, **kwargs: Any) -> None:
        self.air = air
        self.received: list[HeartRateMeasurement] = []
        self.statuses: list[str] = []
        options: dict[str, Any] = {
            "scanner": air.scanner,
            "client_factory": FakeClient,
            "scan_timeout": 0.05,
            "backoff": TINY_BACKOFF,
            "on_status": self.statuses.append,
        }
        options.update(kwargs)
        self.reader = StrapReader(self.received.append, **options)

    def retries(self) -> list[str]:
        return [s for s in self.statuses if "retrying" in s]


@contextlib.asynccontextmanager
async def running(bridge: Bridge) -> AsyncIterator[asyncio.Task[None]]:
    """The reader as a task, cancelled and awaited on the way out."""
    task = asyncio.create_task(bridge.reader.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task])


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll: conditions span the reader, the air and the straps, which keep no test hooks."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


async def subscribed(strap: FakeStrap) -> None:
    async with asyncio.timeout(3.0):
        await strap.wait_subscribed()


# -- finding the strap ------------------------------------------------------------------


@pytest.mark.parametrize("os_filter", [True, False], ids=["os-filter", "no-os-filter"])
async def test_scans_for_the_heart_rate_service_and_ignores_other_devices(
    os_filter: bool,
) -> None:
    trainer, strap = kickr(), polar()
    bridge = Bridge(FakeAir(trainer, strap, os_filter=os_filter))
    async with running(bridge):
        await subscribed(strap)
        assert strap.notify(HeartRateMeasurement(bpm=72, contact=True))
        await until(lambda: len(bridge.received) == 1)
    assert bridge.air.scans[0] == [HEART_RATE_SERVICE]
    assert trainer.connections == 0
    assert bridge.received == [HeartRateMeasurement(bpm=72, contact=True)]
    assert bridge.statuses[:3] == [
        "scanning for a heart-rate strap",
        f"connected to Polar H10 6A1B2C3D ({POLAR})",
        "sensor location: chest",
    ]
    assert bridge.reader.device is not None and bridge.reader.device.address == POLAR


async def test_filters_by_address_case_insensitively() -> None:
    first, second = polar(), garmin()
    bridge = Bridge(FakeAir(first, second), address=GARMIN.lower())
    async with running(bridge):
        await subscribed(second)
        assert bridge.reader.connected
    assert (first.connections, second.connections) == (0, 1)
    assert bridge.statuses[0] == f"scanning for {GARMIN.lower()}"


async def test_filters_by_part_of_the_name() -> None:
    first, second = polar(), garmin()
    bridge = Bridge(FakeAir(first, second), name="hrm-pro")
    async with running(bridge):
        await subscribed(second)
    assert (first.connections, second.connections) == (0, 1)
    assert f"connected to HRM-Pro:123456 ({GARMIN})" in bridge.statuses


async def test_a_strap_matching_nothing_is_never_connected() -> None:
    strap = polar()
    bridge = Bridge(FakeAir(strap), name="wahoo")
    async with running(bridge):
        await until(lambda: len(bridge.air.scans) >= 3)
    assert strap.connections == 0
    assert bridge.retries()[0] == "no strap found, retrying in 0.01 s"
    # A scan that found nothing does not climb the backoff: the scan was the wait.
    assert set(bridge.retries()) == {"no strap found, retrying in 0.01 s"}


# -- notifications -------------------------------------------------------------------------


async def test_decodes_notifications() -> None:
    strap = polar()
    bridge = Bridge(FakeAir(strap))
    sent: list[Step] = [
        bytes.fromhex("0048"),  # 72 bpm, no contact support
        bytes.fromhex("16780004" + "0003"),  # 120 bpm, contact, RR 1024 and 768
        bytes.fromhex("1f9b00e803bc02"),  # uint16 155, energy 1000 kJ, RR 700
        HeartRateMeasurement(bpm=64, contact=False),
    ]
    async with running(bridge):
        await strap.play(sent)
        await until(lambda: len(bridge.received) == 4)
    assert bridge.received == [
        HeartRateMeasurement(bpm=72),
        HeartRateMeasurement(bpm=120, contact=True, rr=(1024, 768)),
        HeartRateMeasurement(bpm=155, contact=True, energy_kj=1000, rr=(700,), wide=True),
        HeartRateMeasurement(bpm=64, contact=False),
    ]
    assert bridge.received[1].rr_ms == (1000.0, 750.0)
    assert (bridge.reader.stats.notifications, bridge.reader.stats.malformed) == (4, 0)


async def test_malformed_notifications_are_counted_sampled_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strap = polar()
    bridge = Bridge(FakeAir(strap), malformed_log_every=2)
    good = [HeartRateMeasurement(bpm=100 + i, contact=True, rr=(600,)) for i in range(3)]
    script: list[Step] = [good[0], b"\x10", b"\x01\x48", good[1], b"\x10\x78\x00\x04\x00", good[2]]
    with caplog.at_level(logging.WARNING, logger="telemetry.strap"):
        async with running(bridge):
            await strap.play(script)
            await until(lambda: len(bridge.received) == 3)
            assert bridge.reader.connected
    assert bridge.received == good
    stats = bridge.reader.stats
    assert (stats.notifications, stats.malformed, stats.connects) == (6, 3, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Every second one is logged: the first and the third.
    assert len(warnings) == 2
    assert "malformed heart rate notification 10 (" in warnings[0]
    assert "odd 3 bytes" in warnings[1] and "3 so far" in warnings[1]


async def test_a_failing_callback_does_not_stop_the_reader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strap = polar()
    received: list[int] = []

    def on_measurement(measurement: HeartRateMeasurement) -> None:
        if measurement.bpm == 99:
            raise RuntimeError("data channel closed")
        received.append(measurement.bpm)

    air = FakeAir(strap)
    reader = StrapReader(
        on_measurement, scanner=air.scanner, client_factory=FakeClient, backoff=TINY_BACKOFF
    )
    task = asyncio.create_task(reader.run())
    try:
        with caplog.at_level(logging.ERROR, logger="telemetry.strap"):
            await strap.play([HeartRateMeasurement(bpm=b) for b in (98, 99, 100)])
            await until(lambda: received == [98, 100])
    finally:
        task.cancel()
        await asyncio.wait([task])
    assert reader.stats.callback_errors == 1
    assert any(r.exc_info for r in caplog.records)


async def test_a_simulated_class_passes_through_unchanged() -> None:
    strap = polar()
    bridge = Bridge(FakeAir(strap))
    readings = list(itertools.islice(SimulatedStrap(seed=7).readings(), 60))
    async with running(bridge):
        await strap.play(readings)
        await until(lambda: len(bridge.received) == 60)
    assert bridge.received == readings


# -- body sensor location --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"), [(1, "chest"), (2, "wrist"), (None, None), (9, None)]
)
async def test_body_sensor_location_is_read_when_there(
    location: int | None, expected: str | None
) -> None:
    strap = polar(location=location)
    bridge = Bridge(FakeAir(strap))
    async with running(bridge):
        await subscribed(strap)  # absent or reserved, streaming starts all the same
        assert bridge.reader.location == expected


# -- reconnecting ----------------------------------------------------------------------------


async def test_reconnects_after_a_drop() -> None:
    strap = polar()
    bridge = Bridge(FakeAir(strap))
    first, second = HeartRateMeasurement(bpm=130), HeartRateMeasurement(bpm=131)
    async with running(bridge):
        await strap.play([first, DROP, second])
        await until(lambda: len(bridge.received) == 2)
    assert bridge.received == [first, second]
    stats = bridge.reader.stats
    assert (stats.connects, stats.reconnects, strap.connections) == (2, 1, 2)
    assert bridge.retries() == ["strap lost, retrying in 0.01 s"]
    assert bridge.statuses.count(f"connected to Polar H10 6A1B2C3D ({POLAR})") == 2


async def test_backoff_climbs_on_failures_and_resets_after_a_stable_connection() -> None:
    strap = polar()
    strap.refuse_connections = 4
    bridge = Bridge(FakeAir(strap), stable_after=0.1)
    async with running(bridge):
        await subscribed(strap)
        assert bridge.retries() == [
            "could not connect (BleakDBusError: [org.bluez.Error.Failed] "
            f"le-connection-abort-by-local), retrying in {delay} s"
            for delay in ("0.01", "0.02", "0.03", "0.03")
        ]
        assert bridge.reader.stats.last_error is not None
        # A short-lived connection keeps climbing...
        strap.drop()
        await until(lambda: strap.connections == 2)
        await subscribed(strap)
        assert bridge.retries()[-1] == "strap lost, retrying in 0.03 s"
        # ...one that lasted stable_after starts the backoff over.
        await asyncio.sleep(0.15)
        strap.drop()
        await until(lambda: strap.connections == 3)
        assert bridge.retries()[-1] == "strap lost, retrying in 0.01 s"


async def test_waits_for_a_strap_out_of_range() -> None:
    strap = polar()
    strap.in_range = False
    bridge = Bridge(FakeAir(strap))
    async with running(bridge):
        await until(lambda: len(bridge.air.scans) >= 2)
        assert strap.connections == 0
        strap.in_range = True
        await subscribed(strap)
    assert bridge.retries()[0] == "no strap found, retrying in 0.01 s"


async def test_retries_while_bluetooth_is_off() -> None:
    strap = polar()
    bridge = Bridge(FakeAir(strap))
    bridge.air.powered = False
    async with running(bridge):
        await until(lambda: len(bridge.retries()) >= 2)
        bridge.air.powered = True
        await subscribed(strap)
    failed, again = bridge.retries()[:2]
    assert failed.startswith("scan failed (BleakBluetoothNotAvailableError: ")
    assert failed.endswith("retrying in 0.01 s") and again.endswith("retrying in 0.02 s")


async def test_keeps_to_the_first_strap_when_reconnecting() -> None:
    mine, neighbours = polar(), garmin()
    bridge = Bridge(FakeAir(mine, neighbours))
    async with running(bridge):
        await subscribed(mine)
        mine.in_range = False
        mine.drop()
        await until(lambda: len(bridge.air.scans) >= 3)
        assert neighbours.connections == 0
        assert f"scanning for {POLAR.lower()}" in bridge.statuses
        mine.in_range = True
        await until(lambda: mine.connections == 2)
    assert neighbours.connections == 0


# -- cancellation ----------------------------------------------------------------------------


async def _streaming(bridge: Bridge, strap: FakeStrap) -> None:
    await subscribed(strap)


async def _scanning(bridge: Bridge, strap: FakeStrap) -> None:
    strap.in_range = False
    await until(lambda: len(bridge.air.scans) >= 1)


async def _backing_off(bridge: Bridge, strap: FakeStrap) -> None:
    strap.refuse_connections = 100
    await until(lambda: len(bridge.retries()) >= 1)


@pytest.mark.parametrize("phase", [_streaming, _scanning, _backing_off])
async def test_cancellation_stops_cleanly(
    phase: Callable[[Bridge, FakeStrap], Any],
) -> None:
    strap = polar()
    bridge = Bridge(FakeAir(strap), backoff=(10.0,), scan_timeout=10.0)
    task = asyncio.create_task(bridge.reader.run())
    await phase(bridge, strap)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not strap.connected
    assert not bridge.reader.connected
    # The scanner's listener and every connection are gone with the reader.
    assert asyncio.all_tasks() == {asyncio.current_task()}
