// A heart-rate strap over Web Bluetooth (Chromium: Chrome, Edge, Opera; desktop and
// Android), decoded exactly like telemetry/hrm.py. Browsers without Web Bluetooth
// (Firefox, Safari, any page over plain http) use `pulseroom hr-bridge` instead.

const RR_UNITS_PER_SECOND = 1024;
const BACKOFF_S = [1, 2, 4, 8, 15, 30];

/** Whether this page can talk to a strap itself. */
export function hasWebBluetooth() {
  return Boolean(window.isSecureContext && navigator.bluetooth && typeof navigator.bluetooth.requestDevice === 'function');
}

/**
 * Decode a Heart Rate Measurement (0x2A37) notification, little-endian:
 * flags (bit 0: uint16 value; bits 1-2: sensor contact; bit 3: energy uint16 kJ;
 * bit 4: RR intervals, uint16 each in 1/1024 s), heart rate, energy, RR intervals.
 * Throws Error for a value that does not decode as specified.
 */
export function decodeHeartRateMeasurement(view) {
  const size = view.byteLength;
  if (size < 2) throw new Error(`heart rate measurement too short: ${size} byte(s)`);
  const flags = view.getUint8(0);
  const wide = Boolean(flags & 0x01);
  let offset;
  let bpm;
  if (wide) {
    if (size < 3) throw new Error('16-bit heart rate value truncated');
    bpm = view.getUint16(1, true);
    offset = 3;
  } else {
    bpm = view.getUint8(1);
    offset = 2;
  }
  const contact = flags & 0x04 ? Boolean(flags & 0x02) : null;
  let energy = null;
  if (flags & 0x08) {
    if (size < offset + 2) throw new Error('energy expended field truncated');
    energy = view.getUint16(offset, true);
    offset += 2;
  }
  const rr = [];
  if (flags & 0x10) {
    const remaining = size - offset;
    if (remaining % 2) throw new Error(`RR intervals take an odd ${remaining} bytes`);
    for (let i = 0; i < remaining; i += 2) rr.push(view.getUint16(offset + i, true));
  } else if (size !== offset) {
    throw new Error(`${size - offset} byte(s) after the last field the flags announce (flags 0x${flags.toString(16).padStart(2, '0')})`);
  }
  return {
    bpm, contact, energy_kj: energy, rr, wide,
    rr_ms: rr.map((value) => (value * 1000) / RR_UNITS_PER_SECOND),
  };
}

/** What to tell a person when pairing or connecting failed. */
export function bluetoothErrorMessage(error) {
  const name = error && error.name;
  const message = (error && error.message) || '';
  if (name === 'NotFoundError' && /cancel/i.test(message)) return 'Pairing cancelled: no strap was chosen.';
  if (name === 'NotFoundError' && /adapter/i.test(message)) return 'Bluetooth is off, or this device has no Bluetooth adapter. Turn it on and try again.';
  if (name === 'NotFoundError') return 'No heart-rate strap was found. Wear it (straps sleep when dry) and try again.';
  if (name === 'SecurityError') return 'This page may not use Bluetooth (it needs https). Use the heart-rate bridge instead.';
  if (name === 'NotAllowedError') return 'Bluetooth access was blocked. Allow it in the site settings, or use the heart-rate bridge.';
  if (name === 'NetworkError') return 'The strap could not be reached. Bring it closer and try again.';
  if (name === 'NotSupportedError') return 'This strap does not offer the standard heart-rate service.';
  return `The strap could not be used: ${message || name || 'unknown error'}`;
}

/**
 * One paired strap: notifications in, `onReading(measurement)` out. Reconnects with
 * backoff when the strap drops (out of range, battery, taken off) until `disconnect()`.
 * onStatus({state, text}) with state: pairing | connecting | connected | reconnecting | idle | error.
 */
export class Strap {
  constructor({ onReading, onStatus }) {
    this.onReading = onReading;
    this.onStatus = onStatus;
    this.device = null;
    this.characteristic = null;
    this.stopped = true;
    this.attempt = 0;
    this.timer = null;
    this.battery = null;
    this.malformed = 0;
    this.handleValue = (event) => this.value(event.target.value);
    this.handleDisconnect = () => this.dropped();
  }

  get name() {
    return (this.device && this.device.name) || 'heart-rate strap';
  }

  get connected() {
    return Boolean(this.device && this.device.gatt && this.device.gatt.connected && this.characteristic);
  }

  status(state, text) {
    this.state = state;
    this.onStatus({ state, text });
  }

  /** Ask the browser's chooser for a strap (must run in a click handler), then connect. */
  async pair() {
    this.status('pairing', 'Choose your strap in the browser’s list…');
    let device;
    try {
      device = await navigator.bluetooth.requestDevice({
        filters: [{ services: ['heart_rate'] }],
        optionalServices: ['battery_service'],
      });
    } catch (error) {
      this.status('error', bluetoothErrorMessage(error));
      throw error;
    }
    if (this.device && this.device !== device) await this.disconnect();
    this.device = device;
    device.addEventListener('gattserverdisconnected', this.handleDisconnect);
    this.stopped = false;
    this.attempt = 0;
    await this.connect();
  }

  async connect() {
    clearTimeout(this.timer);
    if (this.stopped || !this.device) return;
    this.status('connecting', `Connecting to ${this.name}…`);
    try {
      const server = await this.device.gatt.connect();
      const service = await server.getPrimaryService('heart_rate');
      const characteristic = await service.getCharacteristic('heart_rate_measurement');
      if (this.characteristic) this.characteristic.removeEventListener('characteristicvaluechanged', this.handleValue);
      characteristic.addEventListener('characteristicvaluechanged', this.handleValue);
      await characteristic.startNotifications();
      if (this.stopped) return;
      this.characteristic = characteristic;
      this.attempt = 0;
      await this.readBattery(server);
      this.status('connected', this.describe());
    } catch (error) {
      if (this.stopped) return;
      console.warn('strap connection failed', error);
      this.retry(bluetoothErrorMessage(error));
    }
  }

  async readBattery(server) {
    try {
      const service = await server.getPrimaryService('battery_service');
      const level = await (await service.getCharacteristic('battery_level')).readValue();
      this.battery = level.getUint8(0);
    } catch {
      this.battery = null; // optional: many straps do not say
    }
  }

  describe() {
    return `${this.name} connected${this.battery != null ? ` · battery ${this.battery}%` : ''}`;
  }

  value(view) {
    let measurement;
    try {
      measurement = decodeHeartRateMeasurement(view);
    } catch (error) {
      this.malformed += 1;
      console.warn('malformed heart-rate notification', error.message);
      return;
    }
    this.onReading(measurement);
  }

  dropped() {
    this.characteristic = null;
    if (this.stopped) return;
    this.retry(`${this.name} disconnected.`);
  }

  retry(why) {
    if (this.stopped) return;
    const delay = BACKOFF_S[Math.min(this.attempt, BACKOFF_S.length - 1)];
    this.attempt += 1;
    this.status('reconnecting', `${why} Reconnecting in ${delay} s…`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay * 1000);
  }

  /** Stop for good (the person unpaired it, left or the class ended). */
  async disconnect() {
    this.stopped = true;
    clearTimeout(this.timer);
    const device = this.device;
    const characteristic = this.characteristic;
    this.characteristic = null;
    if (characteristic) {
      characteristic.removeEventListener('characteristicvaluechanged', this.handleValue);
      try { await characteristic.stopNotifications(); } catch { /* already gone */ }
    }
    if (device) {
      device.removeEventListener('gattserverdisconnected', this.handleDisconnect);
      if (device.gatt && device.gatt.connected) device.gatt.disconnect();
    }
    this.device = null;
    this.status('idle', 'No strap paired.');
  }
}
