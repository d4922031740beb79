"""A fake Bluetooth radio behind bleak's own backend interface.

bleak splits every platform into a front end (``BleakScanner``, ``BleakClient``: filtering,
characteristic lookup, callback wrapping) and a backend (``BaseBleakScanner``,
``BaseBleakClient``) that talks to the OS, and its constructors take ``backend=`` for a
custom one. ``FakeScanner`` and ``FakeClient`` are the real front ends with a fake backend
plugged in, so code under test runs bleak's own ``find_device_by_filter``, service-UUID
filtering, ``start_notify`` wrapping and disconnected-callback plumbing; only the radio is
fake. The backends behave like bleak's BlueZ one: advertisements not matching
``service_uuids`` are dropped, callbacks run on the event loop, a disconnect (a drop or
our own) calls the disconnected callback, ``services`` is gone after it.

A ``FakeStrap`` is one peripheral in the air: it advertises while in range and not
connected, serves the Heart Rate Service, and a test makes it notify, drop the link, go
out of range or refuse connections, directly or by playing a script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Final, Literal

from bleak import BleakClient, BleakScanner
from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
)

from telemetry.hrm import (
    BODY_SENSOR_LOCATION,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    HeartRateMeasurement,
)

CYCLING_POWER_SERVICE: Final = "00001818-0000-1000-8000-00805f9b34fb"
POLAR_COMPANY_ID: Final = 0x006B


class Drop:
    """A script step: the strap drops the link (walks out of range for a moment)."""

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = Drop()

Step = HeartRateMeasurement | bytes | Drop


class FakeStrap:
    """One peripheral: a heart-rate strap (or, with other services, any device nearby).

    ``location`` is the Body Sensor Location byte it serves, None for a strap without
    that characteristic.
    """

    def __init__(
        self,
        address: str,
        name: str | None,
        *,
        services: Iterable[str] = (HEART_RATE_SERVICE,),
        location: int | None = 1,
        rssi: int = -60,
    ) -> None:
        self.address = address
        self.name = name
        self.services = [s.lower() for s in services]
        self.location = location
        self.rssi = rssi
        self.in_range = True
        self.refuse_connections = 0  # the next N connects fail as BlueZ reports it
        self.connections = 0  # connects that succeeded
        self.sent = 0  # notifications delivered to a subscriber
        self._link: _FakeClientBackend | None = None
        self._subscriber: NotifyCallback | None = None
        self._subscribed = asyncio.Event()

    @property
    def connected(self) -> bool:
        """Whether a client holds the link."""
        return self._link is not None

    @property
    def advertising(self) -> bool:
        """Heart-rate straps stop advertising while connected."""
        return self.in_range and self._link is None

    def advertisement(self) -> AdvertisementData:
        """What a scan hears from this device."""
        return AdvertisementData(
            local_name=self.name,
            manufacturer_data={POLAR_COMPANY_ID: b"\x3f\x00"},
            service_data={},
            service_uuids=list(self.services),
            tx_power=None,
            rssi=self.rssi,
            platform_data=(),
        )

    async def wait_subscribed(self) -> None:
        """Until a client has subscribed to Heart Rate Measurement notifications."""
        await self._subscribed.wait()

    def notify(self, step: HeartRateMeasurement | bytes) -> bool:
        """Send one notification; False if nobody is subscribed (it is lost, as on air)."""
        if self._subscriber is None:
            return False
        data = step.encode() if isinstance(step, HeartRateMeasurement) else step
        self.sent += 1
        self._subscriber(bytearray(data))
        return True

    def drop(self) -> None:
        """Lose the link from the strap's side (out of range, contact dried, battery)."""
        if self._link is not None:
            self._link.lost()

    async def play(self, script: Iterable[Step], interval: float = 0.0) -> None:
        """Play notifications and drops, each notification once a client is subscribed.

        After a ``DROP`` the next notification waits for the reader to reconnect, so a
        script describes what the reader must receive, whatever its backoff.
        """
        for step in script:
            if isinstance(step, Drop):
                self.drop()
                continue
            await self.wait_subscribed()
            self.notify(step)
            await asyncio.sleep(interval)

    # -- the peripheral side of the fake client backend ------------------------------

    def _attach(self, link: _FakeClientBackend) -> None:
        if not self.in_range:
            raise TimeoutError  # BlueZ gives up on a connect nobody answers
        if self.refuse_connections > 0:
            self.refuse_connections -= 1
            raise BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"])
        if self._link is not None:
            raise BleakDBusError("org.bluez.Error.InProgress", ["In Progress"])
        self._link = link
        self.connections += 1

    def _detach(self) -> None:
        self._link = None
        self._subscriber = None
        self._subscribed.clear()

    def _subscribe(self, uuid: str, callback: NotifyCallback | None) -> None:
        if uuid != HEART_RATE_MEASUREMENT:
            raise BleakError(f"notifications not supported on {uuid}")
        self._subscriber = callback
        if callback is None:
            self._subscribed.clear()
        else:
            self._subscribed.set()

    def _read(self, uuid: str) -> bytes:
        if uuid == BODY_SENSOR_LOCATION and self.location is not None:
            return bytes([self.location])
        raise BleakError(f"read not permitted on {uuid}")

    def _gatt(self) -> BleakGATTServiceCollection:
        """The GATT table a connection discovers."""
        collection = BleakGATTServiceCollection()
        handle = 0x10
        for uuid in self.services:
            service = BleakGATTService(None, handle, uuid)
            collection.add_service(service)
            if uuid == HEART_RATE_SERVICE:
                chars: list[tuple[str, list[Literal["notify", "read"]]]] = [
                    (HEART_RATE_MEASUREMENT, ["notify"])
                ]
                if self.location is not None:
                    chars.append((BODY_SENSOR_LOCATION, ["read"]))
                for offset, (char_uuid, props) in enumerate(chars, start=1):
                    collection.add_characteristic(
                        BleakGATTCharacteristic(
                            None, handle + 2 * offset, char_uuid, list(props), lambda: 20, service
                        )
                    )
            handle += 0x10
        return collection


class FakeAir:
    """The devices within reach of the fake radio, and the scans made in it.

    ``scanner`` is a ``BleakScanner`` class bound to this air (bleak's classmethods
    construct the scanner themselves, so the air travels on the class).
    """

    def __init__(
        self, *devices: FakeStrap, advertising_interval: float = 0.005, os_filter: bool = True
    ) -> None:
        self.devices = list(devices)
        self.advertising_interval = advertising_interval
        # False: a backend that hands over every advertisement despite service_uuids (the
        # OS filter is best-effort, and not every bleak release re-checks it), to show
        # that the code under test checks the service itself.
        self.os_filter = os_filter
        self.powered = True  # False: the adapter is off, and scans fail as bleak's do
        self.scans: list[list[str] | None] = []  # the service_uuids of each scan
        air = self

        class _BoundScanner(FakeScanner):
            pass

        _BoundScanner.air = air
        self.scanner: type[FakeScanner] = _BoundScanner


class FakeScanner(BleakScanner):
    """bleak's ``BleakScanner`` over the fake radio of ``air`` (see ``FakeAir.scanner``)."""

    air: ClassVar[FakeAir]

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None = None,
        service_uuids: list[str] | None = None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            detection_callback,
            service_uuids,
            scanning_mode,
            backend=_FakeScannerBackend,
            air=self.air,
            **kwargs,
        )


class FakeClient(BleakClient):
    """bleak's ``BleakClient`` over the fake radio: connects to ``BLEDevice.details``."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        disconnected_callback: Callable[[BleakClient], None] | None = None,
        services: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback,
            services,
            backend=_FakeClientBackend,
            **kwargs,
        )


class _FakeScannerBackend(BaseBleakScanner):
    """Hears the air's advertisements every ``advertising_interval`` while started."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        air: FakeAir,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._air = air
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self._air.powered:
            raise BleakBluetoothNotAvailableError(
                "Bluetooth is turned off", BleakBluetoothNotAvailableReason.POWERED_OFF
            )
        self.seen_devices = {}
        self._air.scans.append(self._service_uuids)
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _listen(self) -> None:
        while True:
            for strap in self._air.devices:
                if not strap.advertising:
                    continue
                advertisement = strap.advertisement()
                # As bleak's real backends do: the OS filter is best-effort.
                if self._air.os_filter and not self.is_allowed_uuid(advertisement.service_uuids):
                    continue
                device = self.create_or_update_device(
                    strap.address, strap.address, strap.name, strap, advertisement
                )
                self.call_detection_callbacks(device, advertisement)
            await asyncio.sleep(self._air.advertising_interval)


class _FakeClientBackend(BaseBleakClient):
    """A GATT connection to a ``FakeStrap`` (the ``details`` of the ``BLEDevice``)."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        services: set[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        details = (
            address_or_ble_device.details if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._strap = details if isinstance(details, FakeStrap) else None
        self._connected = False

    @property
    def name(self) -> str:
        return (self._strap.name if self._strap else None) or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return 23

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._strap is None:
            # The real backends scan for a bare address; this fake only knows BLEDevices.
            raise BleakDeviceNotFoundError(self.address, f"Device {self.address} not found")
        await asyncio.sleep(0)  # a connection takes a round trip
        self._strap._attach(self)
        self._connected = True
        self.services = self._strap._gatt()

    async def disconnect(self) -> None:
        if self._connected:
            await asyncio.sleep(0)
            self.lost()

    def lost(self) -> None:
        """The link is gone: what BlueZ's ``_on_disconnected`` does."""
        if not self._connected:
            return
        self._connected = False
        self.services = None
        if self._strap is not None:
            self._strap._detach()
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    async def unpair(self) -> None:
        raise NotImplementedError

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        strap = self._require()
        await asyncio.sleep(0)
        return bytearray(strap._read(characteristic.uuid))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        raise BleakError("the fake strap has no readable descriptors")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        raise BleakError("the fake strap has no writable characteristics")

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        raise BleakError("the fake strap has no writable descriptors")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        strap = self._require()
        await asyncio.sleep(0)
        strap._subscribe(characteristic.uuid, callback)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        strap = self._require()
        strap._subscribe(characteristic.uuid, None)

    def _require(self) -> FakeStrap:
        if not self._connected or self._strap is None:
            raise BleakError("Not connected")
        return self._strap
