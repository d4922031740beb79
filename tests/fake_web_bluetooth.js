// A heart-rate strap behind the Web Bluetooth API, for headless Chromium (added with
// page.add_init_script). It implements what web/bluetooth.js uses — requestDevice →
// BluetoothDevice (gatt.connect, gattserverdisconnected) → getPrimaryService('heart_rate')
// → getCharacteristic('heart_rate_measurement') → startNotifications, dispatching
// `characteristicvaluechanged` whose target.value is a DataView of real 0x2A37 bytes —
// plus the battery service. Only the radio is fake: every byte goes through the page's
// real decoder.
//
// window.__fakeStrap: sent (every bpm notified, in order), bytes (hex of each), stop()
// (no more notifications, still connected), drop() (out of range: disconnects; the page
// reconnects), cancelNext (the next chooser is cancelled), intervalMs.
(() => {
  const HEART_RATE = ['heart_rate', 0x180d, '0000180d-0000-1000-8000-00805f9b34fb'];
  const MEASUREMENT = ['heart_rate_measurement', 0x2a37, '00002a37-0000-1000-8000-00805f9b34fb'];
  const BATTERY = ['battery_service', 0x180f, '0000180f-0000-1000-8000-00805f9b34fb'];
  const BATTERY_LEVEL = ['battery_level', 0x2a19, '00002a19-0000-1000-8000-00805f9b34fb'];

  const strap = {
    sent: [],
    bytes: [],
    intervalMs: 200,
    cancelNext: false,
    stopped: false,
    connects: 0,
    index: 0,
  };

  /** Notification i: varying bpm (uint8, every 5th as uint16), contact, RR, sometimes energy. */
  function measurement(i) {
    const bpm = 125 + Math.round(35 * Math.sin(i / 6)) + (i % 4); // 90..163
    const wide = i % 5 === 4;
    const energy = i % 10 === 0 ? 200 + i : null;
    const rr = [Math.round((60 / bpm) * 1024), Math.round((60 / bpm) * 1024) + (i % 7)];
    const bytes = [0x06 | 0x10 | (wide ? 0x01 : 0) | (energy !== null ? 0x08 : 0)];
    if (wide) bytes.push(bpm & 0xff, bpm >> 8);
    else bytes.push(bpm);
    if (energy !== null) bytes.push(energy & 0xff, energy >> 8);
    for (const value of rr) bytes.push(value & 0xff, value >> 8);
    return { bpm, data: new Uint8Array(bytes) };
  }

  const matches = (name, known) => known.includes(typeof name === 'string' ? name.toLowerCase() : name);

  class Characteristic extends EventTarget {
    constructor(service, uuid) {
      super();
      this.service = service;
      this.uuid = uuid;
      this.value = null;
      this.timer = null;
    }

    async startNotifications() {
      if (!this.service.device.gatt.connected) throw new DOMException('GATT Server is disconnected.', 'NetworkError');
      clearInterval(this.timer);
      this.timer = setInterval(() => this.notify(), strap.intervalMs);
      return this;
    }

    async stopNotifications() {
      clearInterval(this.timer);
      this.timer = null;
      return this;
    }

    notify() {
      if (strap.stopped || !this.service.device.gatt.connected) return;
      const { bpm, data } = measurement(strap.index);
      strap.index += 1;
      strap.sent.push(bpm);
      strap.bytes.push([...data].map((b) => b.toString(16).padStart(2, '0')).join(''));
      this.value = new DataView(data.buffer);
      this.dispatchEvent(new Event('characteristicvaluechanged'));
    }

    async readValue() {
      return new DataView(new Uint8Array([87]).buffer); // battery level, %
    }
  }

  class Service {
    constructor(device, uuid) {
      this.device = device;
      this.uuid = uuid;
      this.isPrimary = true;
    }

    async getCharacteristic(name) {
      if (matches(name, MEASUREMENT) && matches(this.uuid, HEART_RATE)) {
        if (!this.device.measurement) this.device.measurement = new Characteristic(this, MEASUREMENT[2]);
        return this.device.measurement;
      }
      if (matches(name, BATTERY_LEVEL) && matches(this.uuid, BATTERY)) return new Characteristic(this, BATTERY_LEVEL[2]);
      throw new DOMException(`No Characteristics matching UUID ${name} found in Service.`, 'NotFoundError');
    }
  }

  class Gatt {
    constructor(device) {
      this.device = device;
      this.connected = false;
    }

    async connect() {
      await new Promise((resolve) => setTimeout(resolve, 20));
      this.connected = true;
      strap.connects += 1;
      return this;
    }

    disconnect() {
      if (!this.connected) return;
      this.connected = false;
      if (this.device.measurement) this.device.measurement.stopNotifications();
      this.device.measurement = null;
      this.device.dispatchEvent(new Event('gattserverdisconnected'));
    }

    async getPrimaryService(name) {
      if (!this.connected) throw new DOMException('GATT Server is disconnected.', 'NetworkError');
      if (matches(name, HEART_RATE)) return new Service(this.device, HEART_RATE[2]);
      if (matches(name, BATTERY)) return new Service(this.device, BATTERY[2]);
      throw new DOMException(`No Services matching UUID ${name} found in Device.`, 'NotFoundError');
    }
  }

  class Device extends EventTarget {
    constructor() {
      super();
      this.id = 'fake-strap-1';
      this.name = 'Fake HRM 4711';
      this.gatt = new Gatt(this);
      this.measurement = null;
    }
  }

  const device = new Device();
  const bluetooth = {
    async getAvailability() {
      return true;
    },
    async requestDevice(options) {
      const filters = (options && options.filters) || [];
      const wantsHeartRate = filters.some((f) => (f.services || []).some((s) => matches(s, HEART_RATE)));
      if (!wantsHeartRate) throw new TypeError('fake strap: the page must filter on the heart_rate service');
      if (strap.cancelNext) {
        strap.cancelNext = false;
        throw new DOMException('User cancelled the requestDevice() chooser.', 'NotFoundError');
      }
      strap.options = JSON.parse(JSON.stringify(options));
      return device;
    },
  };

  strap.stop = () => { strap.stopped = true; };
  strap.drop = () => device.gatt.disconnect();
  strap.device = device;
  window.__fakeStrap = strap;
  Object.defineProperty(Navigator.prototype, 'bluetooth', { configurable: true, get: () => bluetooth });
})();
