"""Reading a Bluetooth LE heart-rate strap with bleak, for ``pulseroom hr-bridge``.

One ``StrapReader`` owns one strap: it scans for a device advertising the Heart Rate
Service (0x180D), optionally narrowed to an address or a name, connects, reads the Body
Sensor Location (0x2A38) when the strap has it, subscribes to Heart Rate Measurement
(0x2A37) notifications and hands every decoded ``HeartRateMeasurement`` to a callback.
When the link drops (the strap went out of range, its contact dried, its battery died)
it waits by a capped backoff and starts over with a scan, until it is cancelled.

The notification callback runs once per beat-ish (about 1 Hz per strap) inside bleak's
event handler, so it only decodes, counts and hands over: no logging on the good path,
no allocation beyond the measurement itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from .hrm import (
    BODY_SENSOR_LOCATION,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    HeartRateMeasurement,
    MalformedMeasurement,
    decode,
    decode_location,
)

__all__ = [
    "BODY_SENSOR_LOCATION",
    "HEART_RATE_MEASUREMENT",
    "HEART_RATE_SERVICE",
    "StrapReader",
    "StrapStats",
]

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF: tuple[float, ...] = (1, 2, 4, 8, 15)

# What the radio stack raises when a strap is absent, refuses or drops: bleak's own
# errors (BlueZ D-Bus failures, GATT errors, "not connected", adapter off), a connect
# timeout, and OS-level socket errors on some backends. Anything else is a bug and is
# logged with its traceback.
_EXPECTED = (BleakError, TimeoutError, OSError)


@dataclass(slots=True)
class StrapStats:
    """Counters of one reader; ``notifications`` includes the malformed ones."""

    notifications: int = 0
    malformed: int = 0
    callback_errors: int = 0  # on_measurement raised
    connects: int = 0
    reconnects: int = 0  # connects after the first
    last_error: str | None = None


class StrapReader:
    """Finds a heart-rate strap, decodes its notifications and reconnects when it drops.

    ``address`` (case-insensitive; a UUID on macOS) and ``name`` (a case-insensitive part
    of the advertised name, so ``--name polar`` finds "Polar H10 6A1B2C3D") narrow the
    scan, which always filters on the Heart Rate Service. Without an address, the reader
    keeps to the strap it first connected to: a reconnect in a gym full of straps must
    not pick up a neighbour's.

    ``backoff`` is the wait after each failed or lost connection, the last value
    repeating; it starts over after a connection that lasted ``stable_after`` seconds.
    ``scanner`` and ``client_factory`` are bleak's classes, replaceable for tests.
    """

    def __init__(
        self,
        on_measurement: Callable[[HeartRateMeasurement], None],
        *,
        address: str | None = None,
        name: str | None = None,
        scanner: type[BleakScanner] = BleakScanner,
        client_factory: Callable[..., BleakClient] = BleakClient,
        scan_timeout: float = 10.0,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        stable_after: float = 30.0,
        malformed_log_every: int = 100,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        if not backoff:
            raise ValueError("backoff needs at least one delay")
        self._on_measurement = on_measurement
        self._address = address.lower() if address else None
        self._name = name.lower() if name else None
        self._scanner = scanner
        self._client_factory = client_factory
        self._scan_timeout = scan_timeout
        self._backoff = tuple(backoff)
        self._stable_after = stable_after
        self._log_every = max(1, malformed_log_every)
        self._on_status = on_status
        self._matched_name: str | None = None
        self._client: BleakClient | None = None
        self.stats = StrapStats()
        self.location: str | None = None  # body sensor location, when the strap tells
        self.device: BLEDevice | None = None  # the strap connected to last

    @property
    def connected(self) -> bool:
        """Whether a strap is connected right now."""
        return self._client is not None and self._client.is_connected

    async def run(self) -> None:
        """Scan, connect, stream notifications and reconnect, until cancelled."""
        failures = 0
        while True:
            connects = self.stats.connects
            stage = "scan failed"  # e.g. Bluetooth off, or no BlueZ / D-Bus on Linux
            try:
                device = await self._find()
                if device is None:
                    # The scan itself was the wait: retry soon, without climbing the backoff.
                    delay = self._backoff[0]
                    self._status(f"no strap found, retrying in {delay:g} s")
                    await asyncio.sleep(delay)
                    continue
                stage = "could not connect"
                lasted = await self._session(device)
                if lasted >= self._stable_after:
                    failures = 0
                outcome = "strap lost"
            except _EXPECTED as exc:
                self.stats.last_error = _describe(exc)
                if self.stats.connects > connects:
                    stage = "strap lost"
                outcome = f"{stage} ({self.stats.last_error})"
            except Exception as exc:
                # Unexpected: keep the bridge going (a class is on), but leave a traceback.
                self.stats.last_error = _describe(exc)
                logger.exception("strap reader failed; retrying")
                outcome = f"strap reader failed ({self.stats.last_error})"
            delay = self._backoff[min(failures, len(self._backoff) - 1)]
            failures += 1
            self._status(f"{outcome}, retrying in {delay:g} s")
            await asyncio.sleep(delay)

    async def _find(self) -> BLEDevice | None:
        """Scan for a matching strap, or None after ``scan_timeout`` seconds."""
        wanted = self._address or (repr(self._name) if self._name else "a heart-rate strap")
        self._status(f"scanning for {wanted}")
        self._matched_name = None
        return await self._scanner.find_device_by_filter(
            self._matches,
            timeout=self._scan_timeout,
            service_uuids=[HEART_RATE_SERVICE],
        )

    def _matches(self, device: BLEDevice, advertisement: AdvertisementData) -> bool:
        # Backends filter on service_uuids only best-effort (another app scanning at the
        # same time widens the OS filter), so the service is checked here as well.
        if HEART_RATE_SERVICE not in (u.lower() for u in advertisement.service_uuids):
            return False
        if self._address is not None and device.address.lower() != self._address:
            return False
        advertised = advertisement.local_name or device.name
        if self._name is not None and (advertised is None or self._name not in advertised.lower()):
            return False
        self._matched_name = advertised
        return True

    async def _session(self, device: BLEDevice) -> float:
        """One connection: returns how long it streamed before the strap dropped."""
        loop = asyncio.get_running_loop()
        lost = asyncio.Event()
        # bleak calls this from the event loop on every disconnect (BlueZ also on our
        # own disconnect), so setting an Event is safe and idempotent.
        client = self._client_factory(
            device,
            disconnected_callback=lambda _client: lost.set(),
            services=[HEART_RATE_SERVICE],
        )
        self._client = client
        try:
            await client.connect()
            self.stats.connects += 1
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            self.device = device
            if self._address is None:
                # Keep to this strap from now on (see the class docstring).
                self._address = device.address.lower()
            label = self._matched_name or device.name or "strap"
            self._status(f"connected to {label} ({device.address})")
            self.location = await self._read_location(client)
            if self.location is not None:
                self._status(f"sensor location: {self.location}")
            await client.start_notify(HEART_RATE_MEASUREMENT, self._on_notification)
            started = loop.time()
            # A drop between connect() and here already set the event: no race.
            await lost.wait()
            return loop.time() - started
        finally:
            self._client = None
            await _disconnect(client)

    async def _read_location(self, client: BleakClient) -> str | None:
        """Body Sensor Location, or None: it is optional and some straps lack it."""
        try:
            return decode_location(await client.read_gatt_char(BODY_SENSOR_LOCATION))
        except (BleakError, MalformedMeasurement) as exc:
            logger.debug("no body sensor location: %s", _describe(exc))
            return None

    def _on_notification(self, _characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        """The hot path: one Heart Rate Measurement notification."""
        stats = self.stats
        stats.notifications += 1
        try:
            measurement = decode(data)
        except MalformedMeasurement as exc:
            stats.malformed += 1
            # A strap with a bad firmware may send these every second: log a sample.
            if (stats.malformed - 1) % self._log_every == 0:
                logger.warning(
                    "malformed heart rate notification %s (%s); %d so far",
                    data.hex(),
                    exc,
                    stats.malformed,
                )
            return
        try:
            self._on_measurement(measurement)
        except Exception:
            # Raising into bleak's event handler would break its dispatch: count, sample.
            stats.callback_errors += 1
            if (stats.callback_errors - 1) % self._log_every == 0:
                logger.exception("on_measurement failed (%d so far)", stats.callback_errors)

    def _status(self, text: str) -> None:
        logger.info("%s", text)
        if self._on_status is not None:
            self._on_status(text)


async def _disconnect(client: BleakClient) -> None:
    """Disconnect, never raising: teardown after a drop or on cancellation."""
    try:
        await client.disconnect()
    except _EXPECTED as exc:
        logger.debug("disconnect failed: %s", _describe(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
